"""`current_task()`: what a running handler knows about itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextvars import ContextVar

import attrs


@attrs.frozen
class TaskContext:
    """The task a handler is running for.

    Attributes:
        id: The task id (the same on every attempt).
        name: The registered task name.
        queue: The queue it came from.
        attempt: 1 on the first attempt, 2 on the first retry, ...
        headers: The message headers (including any set by dispatch middleware).
        deadline: When the task must be done by, if a deadline was set.
        enqueued_at: When it was enqueued.
    """

    id: str
    name: str
    queue: str
    attempt: int
    headers: Mapping[str, str]
    deadline: dt.datetime | None
    enqueued_at: dt.datetime


_current: ContextVar[TaskContext] = ContextVar("actorq_current_task")


def current_task() -> TaskContext:
    """The `TaskContext` of the task running in this handler (async or thread).

    Raises:
        RuntimeError: called outside a task handler.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("actorq.current_task() called outside a task handler") from None


def set_current_task(context: TaskContext) -> None:
    _current.set(context)
