"""Workers for tests: one in the test's own trio task tree, or one in a background thread.

`running_worker` runs a real `Worker` inside the calling trio code (with the memory broker and
``autojump_clock``, retries and delays take no real time). `worker_thread` runs one in a
background thread with its own trio loop, for code that is not trio: tests of asyncio or
blocking producers, of a FastAPI or Flask app, or a script that wants a worker beside it.
"""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, final

import trio

from .._client import connect
from .._embedded_sync import _Portal
from .._errors import InvalidUrl
from .._worker import Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from .._app import App
    from .._client import Client
    from .._worker import WorkerStatistics


@asynccontextmanager
async def running_worker(client: Client, **options: Any) -> AsyncIterator[Worker]:
    """A `Worker` of ``client`` running for the duration of the block, then stopped gracefully.

    ``options`` are `Worker`'s (``concurrency``, ``queues``, ``ack_wait``, ...); unlike a
    production worker it leaves the garbage collector alone (``freeze_gc=False``), since a
    test process starts many workers::

        async with actorq.connect(app, "memory://test") as client, running_worker(client):
            assert await client.call(add, 1, 2) == 3
    """
    options.setdefault("freeze_gc", False)
    worker = Worker(client, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        yield worker
        nursery.cancel_scope.cancel()


@final
class WorkerThread:
    """A worker running in a background thread (its own trio loop). From `worker_thread`."""

    def __init__(self, portal: _Portal[Worker], worker: Worker, app: App, url: str) -> None:
        self._portal = portal
        self._worker = worker
        self.app = app
        """The app whose tasks the worker runs."""
        self.url = url
        """The NATS URL the worker is connected to."""

    def __repr__(self) -> str:
        return f"<WorkerThread of app {self.app.namespace!r} on {self.url}>"

    def statistics(self) -> WorkerStatistics:
        """The worker's counters (slots, outcomes, renewals), read in its own thread."""

        async def read() -> WorkerStatistics:
            return self._worker.statistics()

        return self._portal.call(read)

    def wait_idle(self) -> None:
        """Block until no task runs on the worker."""
        self._portal.call(self._worker.wait_idle)


@contextmanager
def worker_thread(app: App, url: str, **options: Any) -> Iterator[WorkerThread]:
    """A real `Worker` of ``app`` on ``url`` in a background thread, for the ``with`` block.

    Returns once the worker takes work; leaving the block stops it gracefully (running tasks
    finish within the worker's ``shutdown_grace``). ``options`` are `Worker`'s::

        with worker_thread(app, nats_url, concurrency=4):
            with actorq.sync.connect(app, nats_url) as producer:
                assert producer.call(add, 1, 2) == 3

    Raises:
        InvalidUrl: ``url`` is a ``memory://`` URL: a memory broker belongs to one trio run,
            so nothing outside the worker's thread could reach it.
    """
    if url.startswith("memory:"):
        raise InvalidUrl(
            f"worker_thread needs a NATS URL, got {url!r}: a memory broker lives in one trio"
            " run (use running_worker inside your trio code instead)"
        )

    @asynccontextmanager
    async def hosted() -> AsyncIterator[Worker]:
        async with connect(app, url) as client, running_worker(client, **options) as worker:
            yield worker

    portal: _Portal[Worker] = _Portal(hosted)
    worker = portal.open()
    try:
        yield WorkerThread(portal, worker, app, url)
    finally:
        portal.close()
