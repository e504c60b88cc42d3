"""The local node under ``.actorq/``: detached, recorded, reused, and kept across restarts.

These are plain (sync) tests: everything in `actorq._local_node` blocks by design.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from natsio import count, put

from actorq._embedded_base import probe_nats
from actorq._local_node import ensure_local_node, read_local_node, stop_local_node

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The node is not our child; once it exits, init reaps it (a zombie until then).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def node_processes(store_dir: Path) -> list[int]:
    """Pids of live nats-server processes using ``store_dir`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(store_dir).encode() in argv and pid_exists(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / ".actorq"
    try:
        yield directory
    finally:
        stop_local_node(directory)  # a detached node would outlive the test otherwise


def test_the_first_call_starts_a_detached_node_and_the_second_reuses_it(folder: Path) -> None:
    url = ensure_local_node(folder, timeout=10)
    node = read_local_node(folder)
    assert node is not None
    assert node.url == url
    assert pid_exists(node.pid)
    assert json.loads((folder / "server.json").read_text())["pid"] == node.pid
    assert node.store_dir == folder.resolve() / "store"
    assert (folder / ".gitignore").read_text() == "*\n"
    info = probe_nats(node.host, node.port)
    assert info is not None
    assert info["server_name"] == node.name

    assert ensure_local_node(folder, timeout=10) == url
    again = read_local_node(folder)
    assert again is not None
    assert again.pid == node.pid
    assert node_processes(node.store_dir) == [node.pid]  # no second process


def test_two_processes_starting_at_once_meet_on_one_node(folder: Path) -> None:
    script = (
        "import sys; from actorq._local_node import ensure_local_node as e; print(e(sys.argv[1]))"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    urls = [starter.communicate(timeout=20)[0].strip() for starter in starters]
    assert all(starter.returncode == 0 for starter in starters)
    assert urls[0] == urls[1] != ""
    node = read_local_node(folder)
    assert node is not None
    assert node.url == urls[0]
    assert node_processes(node.store_dir) == [node.pid]


def test_a_restart_keeps_the_store(folder: Path) -> None:
    url = ensure_local_node(folder, timeout=10)
    asyncio.run(put([url], "QUEUED", [b"a", b"b"]))
    first = stop_local_node(folder)
    assert first is not None
    assert not pid_exists(first.pid)
    assert read_local_node(folder) is None
    assert probe_nats(first.host, first.port, timeout=0.5) is None

    url = ensure_local_node(folder, timeout=10)
    second = read_local_node(folder)
    assert second is not None
    assert second.pid != first.pid
    assert asyncio.run(count([url], "QUEUED")) == 2


def test_a_crashed_node_is_replaced_on_its_old_port(folder: Path) -> None:
    ensure_local_node(folder, timeout=10)
    crashed = read_local_node(folder)
    assert crashed is not None
    os.kill(crashed.pid, signal.SIGKILL)
    url = ensure_local_node(folder, timeout=10)
    replacement = read_local_node(folder)
    assert replacement is not None
    assert replacement.pid != crashed.pid
    # The old port was free again, so the URL a client may have cached still works.
    assert url == crashed.url


def test_stop_without_a_node_is_a_no_op(tmp_path: Path) -> None:
    assert stop_local_node(tmp_path / "nothing-here") is None
