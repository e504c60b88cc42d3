"""The CancelWatch: a worker's live view of the app's cancellation marks.

``handle.cancel()`` writes a mark into the app's ``cancel`` bucket. Every worker watches that
bucket (existing marks, then live ones), so checking whether a task was cancelled costs no
round trip, and a mark that arrives while the task runs cancels the handler's cancel scope at
once — on whichever worker runs it.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from ..broker import Broker, CaughtUp, KvOperation

if TYPE_CHECKING:
    from types import TracebackType

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

    def running(self, task_id: str, deadline: float = math.inf) -> _Running:
        """A cancel scope for one run of ``task_id``, cancelled when a mark arrives (and at
        ``deadline``, so one scope serves a run's timeout too)."""
        return _Running(self, task_id, deadline)

    async def run(
        self, *, task_status: trio.TaskStatus[CancelWatch] = trio.TASK_STATUS_IGNORED
    ) -> None:
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


class _Running:
    """`CancelWatch.running`: the run's scope, registered while it is entered. A class rather
    than a generator-based context manager: it is entered once per task."""

    __slots__ = ("_scope", "_task_id", "_watch")

    def __init__(self, watch: CancelWatch, task_id: str, deadline: float) -> None:
        self._watch = watch
        self._task_id = task_id
        self._scope = trio.CancelScope(deadline=deadline)

    def __enter__(self) -> trio.CancelScope:
        scope = self._scope.__enter__()
        if self._task_id in self._watch._marked:
            scope.cancel()
        self._watch._running[self._task_id] = scope
        return scope

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        running = self._watch._running
        if running.get(self._task_id) is self._scope:
            del running[self._task_id]
        return self._scope.__exit__(kind, error, traceback)
