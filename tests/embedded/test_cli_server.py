"""``actorq server``: the foreground node as a real subprocess, and the local-node commands."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import trio
from click.testing import CliRunner

from actorq._cli import cli
from actorq._embedded_base import probe_nats
from actorq._local_node import stop_local_node

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("nats://").rpartition(":")
    return host, int(port)


@pytest.mark.parametrize("extra", [[], ["--cluster", "3"]], ids=["node", "cluster"])
async def test_the_foreground_server_prints_its_urls_answers_and_exits_0_on_sigint(
    extra: list[str],
) -> None:
    with trio.fail_after(20):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actorq", "server", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert process.stdout is not None
            line = await read_line(process.stdout)
            urls = line.strip().split(",")
            assert len(urls) == (3 if extra else 1)
            for url in urls:
                assert await trio.to_thread.run_sync(probe_nats, *host_port(url)) is not None
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
            # The server went with it: nothing answers on its ports any more.
            for url in urls:
                assert await trio.to_thread.run_sync(probe_nats, *host_port(url)) is None
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()


def test_a_taken_port_is_one_clear_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["server", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot start nats-server: port {port} on 127.0.0.1 is already in use (its "
        "client port); choose another port or stop the process listening there"
    ]


def test_bad_input_is_refused_without_a_traceback() -> None:
    result = CliRunner().invoke(cli, ["server", "--cluster", "1"])
    assert result.exit_code == 2
    assert "1 is not in the range x>=2" in result.output
    result = CliRunner().invoke(cli, ["server", "--port", "4222", "status"])
    assert result.exit_code == 2
    assert "--port is for the foreground server, not for `actorq server status`" in result.output


def test_start_status_stop_manage_the_local_node(tmp_path: Path) -> None:
    directory = tmp_path / ".actorq"
    runner = CliRunner()
    try:
        assert runner.invoke(cli, ["server", "status", "--dir", str(directory)]).exit_code == 1

        started = runner.invoke(cli, ["server", "start", "--dir", str(directory)])
        assert started.exit_code == 0, started.output
        url = started.stdout.strip()
        assert url.startswith("nats://127.0.0.1:")
        assert "started the local node" in started.stderr

        again = runner.invoke(cli, ["server", "start", "--dir", str(directory)])
        assert again.stdout.strip() == url
        assert "already running" in again.stderr

        status = runner.invoke(cli, ["server", "status", "--dir", str(directory)])
        assert status.exit_code == 0
        assert status.stdout.startswith(url)

        stopped = runner.invoke(cli, ["server", "stop", "--dir", str(directory)])
        assert stopped.exit_code == 0
        assert "stopped the local node" in stopped.stdout
        assert probe_nats(*host_port(url), timeout=0.5) is None
        assert runner.invoke(cli, ["server", "status", "--dir", str(directory)]).exit_code == 1
    finally:
        stop_local_node(directory)
