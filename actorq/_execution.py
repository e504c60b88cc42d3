"""Running one delivered task message: decode, check, run the handler, decide the outcome.

This is the worker's hot path, used by every Slot. What happens to the message afterwards
(ack, retry, dead letter) is the `Settler`'s job; see `_settle.py` for why in that order.

Before a handler runs, the task must pass its guards, in this order: not cancelled (the
worker's `CancelWatch`); known to this worker (else retried for a rolling deploy, then
dead-lettered); its deadline not passed; its idempotency key not already succeeded; its
arguments decodable; a slot of its concurrency key free (else deferred, not counted as an
attempt).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import traceback
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from . import _codec
from ._context import TaskContext, set_current_task
from ._guards import ConcurrencySlots, IdempotencyRecords
from ._middleware import Settled, chain_process, notify_settled
from ._names import keyed_task_id
from ._periodic import H_PERIODIC
from ._retry import NoRetry, Retry, RetryPolicy, qualified_name
from ._settle import SETTLE_RETRY_DELAY, ExecutionStatistics, Settler
from ._wire import (
    H_ID,
    H_RATE_SLOT,
    H_TASK,
    ErrorInfo,
    Kind,
    MalformedMessage,
    TaskEnvelope,
    parse_task_message,
    queue_of_subject,
)
from .broker import KvConfig
from .kv._ratelimit import RateLimiter

if TYPE_CHECKING:
    from ._app import App
    from ._task import Task
    from .actors._cancel import CancelWatch
    from .broker import Broker, Delivery, Message

logger = logging.getLogger("actorq.worker")

MAX_TRACEBACK = 16 * 1024
"""Characters of a remote traceback kept in results and dead letters."""
DEFER_DELAY = 1.0
"""Seconds a task waits for a busy concurrency key before it is tried again."""
RATE_WAIT_IN_SLOT = 1.0
"""A task whose rate-limited turn is at most this many seconds away waits in its slot; one
whose turn is later is put back until then."""
CONCURRENCY_TTL = 30.0
"""Seconds a concurrency slot outlives a worker that crashed while holding it."""


def format_traceback(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= MAX_TRACEBACK else "...\n" + text[-MAX_TRACEBACK:]


def error_info(kind: str, error: BaseException) -> ErrorInfo:
    return ErrorInfo(
        kind=kind,
        message=f"{type(error).__name__}: {error}",
        type=qualified_name(type(error)),
        traceback=format_traceback(error),
    )


@attrs.frozen
class Succeeded:
    value: Any


@attrs.frozen
class Failed:
    """An attempt failed; ``retry_delay`` is None when it must not be retried."""

    error: ErrorInfo
    retry_delay: float | None


@attrs.frozen
class Cancelled:
    """``handle.cancel()`` reached the task."""


Outcome = Succeeded | Failed | Cancelled


class StepHook(Protocol):
    """Where a DAG step's outcome goes before its message is settled (see ``actorq.dag``)."""

    def is_step(self, envelope: TaskEnvelope) -> bool: ...

    async def settle(self, envelope: TaskEnvelope, attempt: int, outcome: Outcome) -> None:
        """Record the outcome in the step's run; raising leaves the message to come again."""

    def success_message(self, envelope: TaskEnvelope, attempt: int, value: Any) -> Message | None:
        """The publish recording a success (first outcome wins), to settle the message by its
        PubAck; None to record it through `settle`."""


class Executor:
    """Runs delivered task messages for one worker (shared by all its slots)."""

    def __init__(
        self,
        app: App,
        broker: Broker,
        *,
        worker_id: str,
        nak_threshold: float,
        thread_limiter: trio.CapacityLimiter,
        cancels: CancelWatch,
        on_start: Callable[[Delivery], None] = lambda delivery: None,
        on_end: Callable[[Delivery], None] = lambda delivery: None,
        steps: StepHook | None = None,
    ) -> None:
        self.app = app
        self.broker = broker
        self.layout = app.layout
        self.thread_limiter = thread_limiter
        self.statistics = ExecutionStatistics()
        self.settler = Settler(
            broker,
            app.layout,
            worker_id=worker_id,
            nak_threshold=nak_threshold,
            statistics=self.statistics,
        )
        self.cancels = cancels
        self.idempotency = IdempotencyRecords(
            broker, app.layout.idempotency_bucket, app.idempotency_ttl
        )
        self.concurrency = ConcurrencySlots(
            broker, app.layout.concurrency_bucket, owner=worker_id, ttl=CONCURRENCY_TTL
        )
        self._rate_limiters: dict[str, RateLimiter] = {}
        self._on_start = on_start
        self._on_end = on_end
        self.steps = steps

    async def execute(self, delivery: Delivery, finished: Callable[[], None] | None = None) -> bool:
        """Run one delivery to its end: ack, nak, schedule a retry, or dead-letter it.

        With ``finished``, a success may be settled later (`Settler.succeed_later`): then this
        returns True at once and ``finished()`` runs once the delivery is acked or naked; it
        returns False when the delivery is settled already.

        Never raises `Exception` (a failure to settle leaves the message to be redelivered);
        `trio.Cancelled` (worker shutdown past its grace) naks the message for immediate
        redelivery and propagates.
        """
        try:
            envelope = parse_task_message(delivery.headers, delivery.data)
        except MalformedMessage as error:
            await self._settle_malformed(delivery, str(error))
            return False
        self._on_start(delivery)
        later = False
        try:
            later = await self._execute(delivery, envelope, finished)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.broker.nak(delivery)
            raise
        except Exception:
            logger.exception(
                "task %s (%s): could not store its outcome; it will be delivered again",
                envelope.task,
                envelope.id,
            )
            with trio.move_on_after(5):
                await self.broker.nak(delivery, delay=SETTLE_RETRY_DELAY)
        finally:
            if not later:
                self._on_end(delivery)
        return later

    def _context(self, delivery: Delivery, envelope: TaskEnvelope, attempt: int) -> TaskContext:
        return TaskContext(
            id=envelope.id,
            name=envelope.task,
            queue=queue_of_subject(self.layout, delivery.subject),
            attempt=attempt,
            headers=delivery.headers,
            deadline=_datetime(envelope.deadline),
            enqueued_at=_datetime(envelope.enqueued_at) or dt.datetime.now(dt.UTC),
        )

    async def _execute(
        self, delivery: Delivery, envelope: TaskEnvelope, finished: Callable[[], None] | None
    ) -> bool:
        periodic = delivery.headers.get(H_PERIODIC)
        if periodic is not None:
            # Every tick of a periodic schedule is its own task.
            tick = f"{periodic}@{delivery.stream_seq}"
            task_id = keyed_task_id(self.layout.namespace, envelope.task, tick)
            envelope = attrs.evolve(envelope, id=task_id)
        attempt = envelope.attempts_before + delivery.num_delivered
        context = self._context(delivery, envelope, attempt)
        if self.cancels.is_cancelled(envelope.id):
            await self._settle(delivery, envelope, context, Cancelled(), duration=0.0)
            return False
        task = self.app.lookup(envelope.task)
        if task is None:
            policy = envelope.retry or self.app.default_retry
            error = ErrorInfo(
                kind=Kind.UNKNOWN_TASK,
                message=(
                    f"no task named {envelope.task!r} is registered on worker"
                    f" {self.settler.worker_id} (app {self.app.namespace!r})"
                ),
            )
            delay = policy.delay(attempt) if policy.allows_retry(attempt) else None
            await self._settle(delivery, envelope, context, Failed(error, delay), duration=0.0)
            return False
        if envelope.deadline is not None and self.broker.now() >= envelope.deadline:
            error = ErrorInfo(
                kind=Kind.DEADLINE,
                message=f"deadline {_iso(envelope.deadline)} passed before the task could run",
            )
            await self._settle(delivery, envelope, context, Failed(error, None), duration=0.0)
            return False
        if envelope.idempotency_key is not None:
            done = await self.idempotency.completed(envelope.id)
            if done is not None:
                await self.settler.publish_result(envelope, done, "succeeded")
                await self.broker.ack(delivery)
                self.statistics.skipped += 1
                notify_settled(self.app.middleware, context, Settled("skipped", 0.0))
                return False
        try:
            args, kwargs = task.decode_arguments(envelope.payload)
        except (ValueError, TypeError) as decode_error:
            error = ErrorInfo(kind=Kind.DECODE, message=str(decode_error))
            await self._settle(delivery, envelope, context, Failed(error, None), duration=0.0)
            return False
        if envelope.rate_limit is not None:
            limiter = self._rate_limiter(envelope.rate_limit)
            slot = envelope.rate_slot
            if slot is None or self.broker.now() - slot > limiter.guard / 2:
                # No turn yet, or it came back too late to use: using a late turn could crowd
                # the next window, so reserve a fresh one.
                slot = await limiter.reserve(envelope.task)
            wait = slot - self.broker.now()
            if wait > RATE_WAIT_IN_SLOT:
                # Its turn is far off: free the slot meanwhile, keeping the reservation, and
                # come back a little before the turn so it is not missed.
                extra = {H_RATE_SLOT: repr(slot)}
                back = wait - RATE_WAIT_IN_SLOT / 2
                await self.settler.defer(delivery, envelope, attempt, back, extra)
                return False
            if wait > 0:
                await trio.sleep(wait)
        if envelope.concurrency is None:
            return await self._run(delivery, envelope, task, context, args, kwargs, finished)
        limit, key = envelope.concurrency
        slot = await self.concurrency.try_acquire(key, limit)
        if slot is None:
            await self.settler.defer(delivery, envelope, attempt, DEFER_DELAY)
            return False
        async with self.concurrency.held(slot):
            await self._run(delivery, envelope, task, context, args, kwargs)
        return False

    def _rate_limiter(self, rate: str) -> RateLimiter:
        limiter = self._rate_limiters.get(rate)
        if limiter is None:
            bucket = self.layout.rate_limits_bucket
            config = KvConfig(bucket, replicas=self.app.replicas, allow_per_key_ttl=True)
            limiter = RateLimiter(self.broker, bucket, "tasks", rate, config=config)
            self._rate_limiters[rate] = limiter
        return limiter

    async def _run(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        task: Task[Any, Any],
        context: TaskContext,
        args: list[Any],
        kwargs: dict[str, Any],
        finished: Callable[[], None] | None = None,
    ) -> bool:
        """Run the handler and settle its outcome; True when the settling goes on after
        (see `execute`)."""
        policy = envelope.retry or self.app.retry_policy(task)
        started = self.broker.now()
        timeout = _effective_timeout(
            envelope.timeout or task.settings.timeout, envelope.deadline, started
        )
        thread_done = trio.Event()  # set when the handler (or its thread) has returned
        assert task.fn is not None
        if task.is_async:
            call: Callable[[], Any] = partial(task.fn, *args, **kwargs)
        else:
            call = partial(self._in_thread, task.fn, args, kwargs, thread_done)
        handler = chain_process(self.app.middleware, context, call)
        set_current_task(context)
        outcome: Outcome
        # One scope per run: cancelled by a cancellation mark, or at the run's deadline.
        with self.cancels.running(envelope.id, trio.current_time() + timeout) as scope:
            try:
                outcome = Succeeded(await handler())
            except Exception as error:
                outcome = self._failed(error, policy, context.attempt)
        if scope.cancelled_caught and self.cancels.is_cancelled(envelope.id):
            outcome = Cancelled()
        elif scope.cancelled_caught:  # the deadline: a timeout
            info = ErrorInfo(
                kind=Kind.TIMEOUT, message=f"attempt {context.attempt} timed out after {timeout}s"
            )
            retry = policy.allows_retry(context.attempt)
            outcome = Failed(info, policy.delay(context.attempt) if retry else None)
        if task.is_async:
            thread_done.set()
        duration = self.broker.now() - started
        if thread_done.is_set():
            return await self._settle(
                delivery, envelope, context, outcome, duration=duration, finished=finished
            )
        # A thread cannot be cancelled: its outcome is settled now, but the slot stays taken
        # until the thread returns.
        self.statistics.overrunning_threads += 1
        try:
            await self._settle(delivery, envelope, context, outcome, duration=duration)
        finally:
            with trio.CancelScope(shield=True):
                await thread_done.wait()
            self.statistics.overrunning_threads -= 1
        return False

    async def _in_thread(
        self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], finished: trio.Event
    ) -> Any:
        token = trio.lowlevel.current_trio_token()

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    token.run_sync_soon(finished.set)
                except trio.RunFinishedError:
                    pass

        # Abandoned on timeout or cancellation (a thread cannot be stopped); `finished` tells
        # when it really returned.
        return await trio.to_thread.run_sync(
            run, limiter=self.thread_limiter, abandon_on_cancel=True
        )

    def _failed(self, error: Exception, policy: RetryPolicy, attempt: int) -> Failed:
        if isinstance(error, NoRetry):
            inner = error.error
            if isinstance(inner, BaseException):
                return Failed(error_info(Kind.ERROR, inner), None)
            return Failed(ErrorInfo(kind=Kind.ERROR, message=str(inner)), None)
        info = error_info(Kind.ERROR, error)
        if not policy.allows_retry(attempt, error):
            return Failed(info, None)
        if isinstance(error, Retry) and error.delay is not None:
            return Failed(info, error.delay)
        return Failed(info, policy.delay(attempt))

    async def _settle(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        context: TaskContext,
        outcome: Outcome,
        *,
        duration: float,
        finished: Callable[[], None] | None = None,
    ) -> bool:
        """Settle an outcome; with ``finished``, a success may be settled later (True)."""
        settler = self.settler
        attempt = context.attempt
        data = b""
        if isinstance(outcome, Succeeded):
            data, problem = self._encode_result(envelope, attempt, outcome.value)
            if problem is not None:
                outcome = Failed(problem, None)
        steps = self.steps if self.steps is not None and self.steps.is_step(envelope) else None
        if isinstance(outcome, Succeeded) and finished is not None:
            message = self._success_message(steps, envelope, attempt, outcome.value, data)
            if message is not None:
                if envelope.idempotency_key is not None:
                    await self.idempotency.remember(envelope.id, data)
                settled = Settled("succeeded", duration)
                done = partial(self._succeeded_later, delivery, context, settled, finished)
                settler.succeed_later(delivery, envelope, message, done)
                return True
        if steps is not None:
            # A DAG step's outcome goes to its run's state before the message is settled: if
            # that write fails this raises, and `execute` naks the message (it comes again).
            await steps.settle(envelope, attempt, outcome)
        if isinstance(outcome, Succeeded):
            if envelope.idempotency_key is not None:
                await self.idempotency.remember(envelope.id, data)
            await settler.succeed(delivery, envelope, data)
            settled = Settled("succeeded", duration)
        elif isinstance(outcome, Cancelled):
            await settler.cancelled(delivery, envelope, attempt)
            error = ErrorInfo(kind=Kind.CANCELLED, message="cancelled")
            settled = Settled("cancelled", duration, error)
        elif outcome.retry_delay is not None:
            await settler.retry(delivery, envelope, attempt, outcome.retry_delay)
            settled = Settled("retried", duration, outcome.error, outcome.retry_delay)
        else:
            await settler.fail(delivery, envelope, attempt, outcome.error)
            settled = Settled("failed", duration, outcome.error)
        notify_settled(self.app.middleware, context, settled)
        return False

    def _success_message(
        self,
        steps: StepHook | None,
        envelope: TaskEnvelope,
        attempt: int,
        value: Any,
        data: bytes,
    ) -> Message | None:
        """The publish that records a success, when the delivery may be settled by its PubAck:
        a stored result, or a DAG step's outcome. (Not a step with an idempotency key: its
        key would be remembered before its outcome is recorded; nor one that also publishes a
        result, which the scheduler never dispatches.)"""
        if steps is not None:
            if envelope.idempotency_key is not None or envelope.publish_result:
                return None
            return steps.success_message(envelope, attempt, value)
        if not self.settler.can_succeed_later(envelope):
            return None
        return self.settler.result_message(envelope, data)

    def _succeeded_later(
        self,
        delivery: Delivery,
        context: TaskContext,
        settled: Settled,
        finished: Callable[[], None],
        acked: bool,
    ) -> None:
        self._on_end(delivery)
        finished()
        if acked:
            notify_settled(self.app.middleware, context, settled)

    def _encode_result(
        self, envelope: TaskEnvelope, attempt: int, value: Any
    ) -> tuple[bytes, ErrorInfo | None]:
        """The encoded result record, or why it cannot be stored."""
        record = self.settler.record(envelope, attempt, "succeeded", value=value)
        try:
            data = _codec.dumps(record)
        except Exception as error:
            return b"", ErrorInfo(
                kind=Kind.ENCODE,
                message=f"the result cannot be encoded as JSON: {type(error).__name__}: {error}",
            )
        if len(data) > self.app.max_result_size:
            return data, ErrorInfo(
                kind=Kind.RESULT_TOO_LARGE,
                message=(
                    f"the result is {len(data)} bytes encoded, more than the app's"
                    f" max_result_size of {self.app.max_result_size}"
                ),
            )
        return data, None

    async def _settle_malformed(self, delivery: Delivery, reason: str) -> None:
        """A message actorq cannot read goes to the dead-letter queue at once, with the reason."""
        logger.error("malformed task message on %s: %s", delivery.subject, reason)
        headers = delivery.headers
        error = ErrorInfo(kind=Kind.DECODE, message=f"malformed task message: {reason}")
        try:
            await self.settler.dead_letter(
                delivery,
                headers.get(H_ID, ""),
                headers.get(H_TASK, ""),
                queue_of_subject(self.layout, delivery.subject),
                delivery.num_delivered,
                error,
            )
        except Exception:
            logger.exception("could not dead-letter a malformed message; it will come again")
            with trio.move_on_after(5):
                await self.broker.nak(delivery, delay=SETTLE_RETRY_DELAY)
            return
        await self.broker.term(delivery)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def _datetime(timestamp: float | None) -> dt.datetime | None:
    return None if not timestamp else dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _effective_timeout(timeout: float | None, deadline: float | None, now: float) -> float:
    """The attempt's time budget: its timeout, cut short by the deadline."""
    budget = math.inf if timeout is None else timeout
    if deadline is not None:
        budget = min(budget, max(0.0, deadline - now))
    return budget
