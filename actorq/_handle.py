"""`TaskHandle`: the promise of one task's result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import trio

from ._errors import ResultTimeout
from ._wire import ResultRecord, result_value

if TYPE_CHECKING:
    from .actors._results import PendingResult, ResultRouter

R = TypeVar("R")


@final
class TaskHandle(Generic[R]):
    """A task that was enqueued: await its result from here.

    Handles come from ``client.enqueue`` (and ``enqueue_many``), or from ``client.handle(id,
    task)`` in any process that knows the id. Several handles of one task may wait at once.
    """

    __slots__ = ("_cancel", "_pending", "_return_type", "_router", "id", "task")

    def __init__(
        self,
        router: ResultRouter,
        pending: PendingResult,
        task: str,
        return_type: Any,
        *,
        cancel: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self._router = router
        self._pending = pending
        self._return_type = return_type
        self._cancel = cancel
        self.id: str = pending.task_id
        """The task id (32 hex characters)."""
        self.task: str = task
        """The task's registered name."""

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task} {self.id}>"

    @property
    def done(self) -> bool:
        """Whether the outcome has arrived here (without waiting or asking the server)."""
        return self._pending.record is not None

    async def cancel(self) -> bool:
        """Cancel the task, wherever it is.

        A task still queued (or waiting for its delay) will never run; a running one has its
        handler's cancel scope cancelled on whichever worker runs it (a plain ``def`` handler
        runs to its end in its thread, but its result is discarded); it is not retried.
        Awaiting the result raises `TaskCancelled` from now on.

        Returns:
            True if the cancellation is the task's outcome; False if it had already finished
            (or been cancelled) — its outcome stands.
        """
        if self._cancel is None:
            raise TypeError("this handle cannot cancel its task (it has no client)")
        return await self._cancel(self.id, self.task)

    async def outcome(self, *, timeout: float | None = None) -> ResultRecord:  # noqa: ASYNC109
        """The raw outcome record (status, value or error, attempts), without raising for
        failures.

        Raises:
            ResultTimeout: no outcome within ``timeout`` seconds.
        """
        if timeout is None:  # no cancel scope to enter and leave on the common path
            return await self._router.wait(self._pending)
        with trio.move_on_after(timeout):
            return await self._router.wait(self._pending)
        raise ResultTimeout(f"no result for task {self.task} ({self.id}) within {timeout} s")

    async def result(self, *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Wait for the task's result, structured to its return annotation.

        Args:
            timeout: Seconds to wait; None waits until the result arrives. A timeout does not
                affect the task, which may still run.

        Raises:
            TaskFailed: the task failed for good (kind, message, remote traceback, attempts).
            TaskCancelled: the task was cancelled.
            ResultTimeout: no result within ``timeout``.
        """
        record = await self.outcome(timeout=timeout)
        value: R = result_value(
            record, task_id=self.id, task=self.task, return_type=self._return_type
        )
        return value
