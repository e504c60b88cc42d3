"""The CancelWatch: a worker's live view of the app's cancellation marks.

``handle.cancel()`` writes a mark into the app's ``cancel`` bucket. Every worker watches that
bucket (existing marks, then live ones), so checking whether a task was cancelled costs no
round trip, and a mark that arrives while the task runs cancels the handler's cancel scope at
once — on whichever worker runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ..broker import Broker, CaughtUp, KvOperation

logger = logging.getLogger("actorq.worker")


class CancelWatch:
    """Knows which task ids are cancelled and cancels the running ones."""

    def __init__(self, broker: Broker, bucket: str) -> None:
        self.broker = broker
        self.bucket = bucket
        self._marked: set[str] = set()
        self._running: dict[str, trio.CancelScope] = {}

    def is_cancelled(self, task_id: str) -> bool:
        return task_id in self._marked

    @contextmanager
    def running(self, task_id: str) -> Iterator[trio.CancelScope]:
        """A cancel scope for one run of ``task_id``, cancelled when a mark arrives."""
        with trio.CancelScope() as scope:
            if task_id in self._marked:
                scope.cancel()
            self._running[task_id] = scope
            try:
                yield scope
            finally:
                if self._running.get(task_id) is scope:
                    del self._running[task_id]

    async def run(self, *, task_status: trio.TaskStatus[CancelWatch] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        async with self.broker.kv_watch(self.bucket) as events:
            async for event in events:
                if isinstance(event, CaughtUp):
                    if not started:
                        started = True
                        task_status.started(self)
                elif event.operation is KvOperation.PUT:
                    self._marked.add(event.key)
                    scope = self._running.get(event.key)
                    if scope is not None:
                        logger.info("task %s cancelled while running", event.key)
                        scope.cancel()
                else:
                    self._marked.discard(event.key)
