"""Synchronous twins of `start_server` and `start_cluster`, for code that is not async.

pytest-trio's async fixtures are function-scoped, so the server shared by a whole test
session has to come from a plain synchronous fixture. Rather than a second process manager
written with threads and ``subprocess``, the trio implementation itself runs in a background
thread with its own trio loop (a "portal"): the same start, readiness, log draining and
shielded stop, reached through blocking calls. The handles returned here mirror
`EmbeddedServer` and `EmbeddedCluster` with blocking methods.

The blocking methods may be called from any thread, including from inside a trio test (they
block that test's loop for the duration, which a test can afford); async code that cannot
should wrap them in ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import trio

from ._embedded import EmbeddedServer, start_server
from ._embedded_cluster import EmbeddedCluster, start_cluster

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

T = TypeVar("T")
R = TypeVar("R")

_CALL_TIMEOUT = 120.0


class _Portal(Generic[T]):
    """Hosts one async context manager in a trio loop on a daemon thread until `close`."""

    def __init__(self, open_cm: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        self._open_cm = open_cm
        self._entered: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._calls: trio.Nursery | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="actorq-embedded", daemon=True)

    def open(self) -> T:
        self._thread.start()
        try:
            return self._entered.result()
        except BaseException:
            self._thread.join()
            raise

    def call(self, afn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run ``afn(*args)`` in the portal's loop and block for its outcome."""
        assert self._token is not None
        assert self._calls is not None
        done: concurrent.futures.Future[R] = concurrent.futures.Future()
        calls = self._calls

        async def runner() -> None:
            try:
                done.set_result(await afn(*args))
            except BaseException as exc:  # handed to the calling thread, which re-raises
                done.set_exception(exc)

        self._token.run_sync_soon(calls.start_soon, runner)
        return done.result(timeout=_CALL_TIMEOUT)

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            try:
                self._token.run_sync_soon(self._stop.set)
            except trio.RunFinishedError:
                pass
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            if self._entered.done():
                self._failure = exc  # e.g. a failed shutdown: reported by close()
            else:
                self._entered.set_exception(exc)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with self._open_cm() as value, trio.open_nursery() as calls:
            self._calls = calls
            self._entered.set_result(value)
            await self._stop.wait()
            calls.cancel_scope.cancel()


@final
class SyncServer:
    """Blocking handle on a nats-server run by `run_server`."""

    def __init__(self, portal: _Portal[EmbeddedServer], server: EmbeddedServer) -> None:
        self._portal = portal
        self._server = server

    def __repr__(self) -> str:
        return repr(self._server).replace("EmbeddedServer", "SyncServer", 1)

    @property
    def url(self) -> str:
        """The client URL."""
        return self._server.url

    @property
    def port(self) -> int:
        """The client port."""
        return self._server.port

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory."""
        return self._server.store_dir

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) process."""
        return self._server.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._server.running

    @property
    def server(self) -> EmbeddedServer:
        """The async handle (usable only from the portal's own loop)."""
        return self._server

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged."""
        return self._server.log_tail(lines)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, grace, SIGKILL)."""
        self._portal.call(self._server.stop)

    def kill(self) -> None:
        """SIGKILL the server and wait for it to exit."""
        self._portal.call(self._server.kill)

    def restart(self) -> None:
        """Start the server again on the same port and store; returns once it is ready."""
        self._portal.call(self._server.restart)


@final
class SyncCluster:
    """Blocking handle on a cluster run by `run_cluster`."""

    def __init__(self, portal: _Portal[EmbeddedCluster], cluster: EmbeddedCluster) -> None:
        self._portal = portal
        self._cluster = cluster

    def __repr__(self) -> str:
        return repr(self._cluster).replace("EmbeddedCluster", "SyncCluster", 1)

    def __len__(self) -> int:
        return len(self._cluster)

    @property
    def urls(self) -> tuple[str, ...]:
        """The client URL of every node."""
        return self._cluster.urls

    @property
    def url(self) -> str:
        """All client URLs joined by commas."""
        return self._cluster.url

    @property
    def pids(self) -> tuple[int | None, ...]:
        """The process id of every node's current (or last) process."""
        return tuple(server.pid for server in self._cluster.servers)

    @property
    def cluster(self) -> EmbeddedCluster:
        """The async handle (usable only from the portal's own loop)."""
        return self._cluster

    def meta_leader(self) -> int | None:
        """The index of the JetStream meta leader, or None."""
        return self._portal.call(self._cluster.meta_leader)

    def stream_leader(self, stream: str) -> int | None:
        """The index of the node leading ``stream``, or None."""
        return self._portal.call(self._cluster.stream_leader, stream)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` and wait for it to exit."""
        self._portal.call(self._cluster.kill, index)

    def restart(self, index: int) -> None:
        """Start node ``index`` again and wait until it has rejoined."""
        self._portal.call(self._cluster.restart, index)

    def wait_ready(self) -> None:
        """Wait until the running nodes have one meta leader that sees them all current."""
        self._portal.call(self._cluster.wait_ready)


@contextmanager
def run_server(**options: Any) -> Iterator[SyncServer]:
    """`start_server` for synchronous code: same keyword options, a blocking handle.

    The server is stopped when the ``with`` block ends.
    """
    portal: _Portal[EmbeddedServer] = _Portal(lambda: start_server(**options))
    server = portal.open()
    try:
        yield SyncServer(portal, server)
    finally:
        portal.close()


@contextmanager
def run_cluster(n: int = 3, **options: Any) -> Iterator[SyncCluster]:
    """`start_cluster` for synchronous code: same options, a blocking handle.

    Every node is stopped when the ``with`` block ends.
    """
    portal: _Portal[EmbeddedCluster] = _Portal(lambda: start_cluster(n, **options))
    cluster = portal.open()
    try:
        yield SyncCluster(portal, cluster)
    finally:
        portal.close()
