"""Middleware: code that wraps every enqueue and every task execution of an app.

A middleware is an object with up to three hooks (subclass `Middleware` and override what you
need); ``app.use(middleware)`` adds it, the first added being the outermost:

- ``dispatch(dispatch, call_next)`` wraps an enqueue on the producer: it may add headers
  (they travel with the message and a handler sees them in ``current_task().headers``),
  reroute the task to another queue, or drop it by not calling ``call_next``;
- ``process(task, call_next)`` wraps a handler call on the worker: it may time, trace or
  short-circuit it (return a value without calling ``call_next``); exceptions propagate to
  the retry policy as usual;
- ``settled(task, outcome)`` is told how an attempt ended — succeeded, retried, failed (dead
  lettered) or cancelled — once the outcome is stored.

Logging, OpenTelemetry and Prometheus are all built on these hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._task import BoundCall
from ._wire import task_message

if TYPE_CHECKING:
    from ._app import App
    from ._context import TaskContext
    from ._task import Task
    from ._wire import ErrorInfo
    from .broker import Message

logger = logging.getLogger("actorq.task")


@attrs.define(eq=False)
class Dispatch:
    """A task about to be enqueued, as dispatch middleware sees (and may change) it.

    Attributes:
        task: The task and its options.
        task_id: The id it will have.
        queue: Where it goes; set it to reroute.
        headers: Extra message headers (actorq's own headers cannot be overridden).
    """

    task: Task[Any, Any]
    task_id: str
    queue: str
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Settled:
    """How one attempt of a task ended.

    Attributes:
        status: ``succeeded``, ``retried``, ``failed`` (dead-lettered), ``cancelled`` or
            ``skipped`` (an idempotency key that already succeeded).
        duration: Seconds the handler ran (0 when it did not run).
        error: What went wrong, for every status but ``succeeded`` and ``skipped``.
        retry_delay: Seconds until the next attempt, for ``retried``.
    """

    status: str
    duration: float
    error: ErrorInfo | None = None
    retry_delay: float | None = None


DispatchNext = Callable[[Dispatch], Awaitable[None]]
ProcessNext = Callable[[], Awaitable[Any]]


class Middleware:
    """Base class: every hook passes straight through. Override the ones you need."""

    async def dispatch(self, dispatch: Dispatch, call_next: DispatchNext) -> None:
        """Wrap an enqueue; call ``await call_next(dispatch)`` to go on (or not, to drop)."""
        await call_next(dispatch)

    async def process(self, task: TaskContext, call_next: ProcessNext) -> Any:
        """Wrap a handler call; ``return await call_next()`` runs it."""
        return await call_next()

    def settled(self, task: TaskContext, outcome: Settled) -> None:
        """Called once an attempt's outcome is stored (must not block)."""


def chain_dispatch(middleware: Sequence[Middleware], terminal: DispatchNext) -> DispatchNext:
    """``terminal`` wrapped by every middleware, the first outermost."""
    call = terminal
    for layer in reversed(middleware):
        if type(layer).dispatch is Middleware.dispatch:
            continue  # a pass-through costs nothing

        def wrapped(
            d: Dispatch, layer: Middleware = layer, inner: DispatchNext = call
        ) -> Awaitable[None]:
            return layer.dispatch(d, inner)

        call = wrapped
    return call


async def dispatch_message(
    app: App, call: BoundCall[Any], task_id: str, *, now: float
) -> Message | None:
    """The message that enqueues ``call`` after the app's dispatch middleware; None if one
    dropped it.

    Every kind of producer calls this — the trio client, `actorq.aio` and `actorq.sync` — so
    dispatch middleware sees every enqueue alike. It runs on the caller's event loop (trio
    for the client, asyncio for the producers): dispatch hooks should use neither library.
    """
    middleware = [m for m in app.middleware if type(m).dispatch is not Middleware.dispatch]
    if not middleware:
        return task_message(app.layout, call, task_id, now=now)
    outcome: list[Dispatch] = []

    async def accept(dispatch: Dispatch) -> None:
        outcome.append(dispatch)

    await chain_dispatch(middleware, accept)(Dispatch(call.task, task_id, call.task.queue, {}))
    if not outcome:
        return None
    dispatch = outcome[-1]
    if dispatch.queue != call.task.queue:
        call = BoundCall(call.task.options(queue=dispatch.queue), call.payload)
    message = task_message(app.layout, call, task_id, now=now)
    if dispatch.headers:
        message = attrs.evolve(message, headers={**dispatch.headers, **message.headers})
    return message


def chain_process(
    middleware: Sequence[Middleware], task: TaskContext, terminal: ProcessNext
) -> ProcessNext:
    """``terminal`` (the handler call) wrapped by every middleware, the first outermost."""
    call = terminal
    for layer in reversed(middleware):
        if type(layer).process is Middleware.process:
            continue

        def wrapped(layer: Middleware = layer, inner: ProcessNext = call) -> Awaitable[Any]:
            return layer.process(task, inner)

        call = wrapped
    return call


def notify_settled(middleware: Sequence[Middleware], task: TaskContext, outcome: Settled) -> None:
    for layer in middleware:
        if type(layer).settled is Middleware.settled:
            continue
        try:
            layer.settled(task, outcome)
        except Exception:  # observers must not break task handling
            logger.exception("middleware %r failed in settled()", layer)


class LoggingMiddleware(Middleware):
    """Logs one line per attempt outcome (logger ``actorq.task``), with the task id, name,
    attempt and duration also as structured ``extra`` fields (``task_id``, ``task``,
    ``attempt``, ``duration``, ``status``). Installed by default on every `App`."""

    def settled(self, task: TaskContext, outcome: Settled) -> None:
        level = {
            "succeeded": logging.INFO,
            "skipped": logging.INFO,
            "retried": logging.WARNING,
            "cancelled": logging.WARNING,
        }.get(outcome.status, logging.ERROR)
        if not logger.isEnabledFor(level):
            return
        extra = {
            "task_id": task.id,
            "task": task.name,
            "attempt": task.attempt,
            "duration": outcome.duration,
            "status": outcome.status,
        }
        error = outcome.error
        if error is None:
            logger.log(
                level,
                "task %s %s attempt %d %s in %.3fs",
                task.name,
                task.id,
                task.attempt,
                outcome.status,
                outcome.duration,
                extra=extra,
            )
        elif outcome.status == "retried":
            logger.log(
                level,
                "task %s %s attempt %d failed in %.3fs, retrying in %.3gs: [%s] %s",
                task.name,
                task.id,
                task.attempt,
                outcome.duration,
                outcome.retry_delay,
                error.kind,
                error.message,
                extra=extra,
            )
        else:
            logger.log(
                level,
                "task %s %s attempt %d %s in %.3fs: [%s] %s",
                task.name,
                task.id,
                task.attempt,
                outcome.status,
                outcome.duration,
                error.kind,
                error.message,
                extra=extra,
            )
