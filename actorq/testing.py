"""Helpers for testing code that uses actorq (and for actorq's own tests).

Run tasks for real in tests: connect to the in-process memory broker (``memory://NAME``) and
start a worker in the test's own trio task tree. With pytest-trio's ``autojump_clock`` the
memory broker's delays, retries and schedules take no real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._worker import Worker

if TYPE_CHECKING:
    from ._client import Client


@asynccontextmanager
async def running_worker(client: Client, **options: Any) -> AsyncIterator[Worker]:
    """A `Worker` of ``client`` running for the duration of the block, then stopped gracefully.

    ``options`` are `Worker`'s (``concurrency``, ``queues``, ``ack_wait``, ...)::

        async with actorq.connect(app, "memory://test") as client, running_worker(client):
            assert await client.call(add, 1, 2) == 3
    """
    worker = Worker(client, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        yield worker
        nursery.cancel_scope.cancel()
