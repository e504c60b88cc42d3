"""Running one delivered task message, from decoding to its ack, retry or dead letter.

This is the worker's hot path, used by every Slot. The order of effects is what makes the queue
safe (see "Retry semantics" in docs/architecture.md):

- success: publish the result, then ack — a crash in between re-runs the task, never loses it;
- retry: a short delay naks with that delay; a long one acks and republishes the message as a
  server-side schedule carrying the attempt count, so a waiting retry never holds a slot of
  ``max_ack_pending``;
- failure for good: publish the dead letter (a new message id), then the failed result, then
  term; if the dead letter cannot be stored the message is naked, never dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import traceback
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio

from . import _codec
from ._app import App
from ._context import TaskContext, set_current_task
from ._retry import NoRetry, Retry, RetryPolicy, qualified_name
from ._task import Task
from ._wire import (
    H_ATTEMPT,
    H_ID,
    H_STATUS,
    H_TASK,
    DeadLetter,
    ErrorInfo,
    Kind,
    MalformedMessage,
    ResultRecord,
    TaskEnvelope,
    encode_payload_text,
    parse_task_message,
    schedule_at,
    queue_of_subject,
)
from .broker import MSG_ID, SCHEDULE, SCHEDULE_TARGET, TTL, Broker, Delivery, Message

logger = logging.getLogger("actorq.worker")

MAX_TRACEBACK = 16 * 1024
"""Characters of a remote traceback kept in results and dead letters."""
SETTLE_RETRY_DELAY = 1.0
"""Seconds before a message whose outcome could not be stored is delivered again."""


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


Outcome = Succeeded | Failed


@attrs.define
class ExecutionStatistics:
    """Counters of one worker's executions."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    overrunning_threads: int = 0
    """Plain-``def`` handlers still running in their thread after their timeout."""


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
        on_start: Callable[[Delivery], None] = lambda delivery: None,
        on_end: Callable[[Delivery], None] = lambda delivery: None,
    ) -> None:
        self.app = app
        self.broker = broker
        self.layout = app.layout
        self.worker_id = worker_id
        self.nak_threshold = nak_threshold
        self.thread_limiter = thread_limiter
        self.statistics = ExecutionStatistics()
        self._on_start = on_start
        self._on_end = on_end

    async def execute(self, delivery: Delivery) -> None:
        """Run one delivery to its end: ack, nak, schedule a retry, or dead-letter it.

        Never raises `Exception` (a failure to settle leaves the message to be redelivered);
        `trio.Cancelled` (worker shutdown past its grace) naks the message for immediate
        redelivery and propagates.
        """
        try:
            envelope = parse_task_message(delivery.headers, delivery.data)
        except MalformedMessage as error:
            await self._settle_malformed(delivery, str(error))
            return
        self._on_start(delivery)
        try:
            await self._execute(delivery, envelope)
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
            self._on_end(delivery)

    async def _execute(self, delivery: Delivery, envelope: TaskEnvelope) -> None:
        attempt = envelope.attempts_before + delivery.num_delivered
        task = self.app.lookup(envelope.task)
        if task is None:
            policy = envelope.retry or self.app.default_retry
            error = ErrorInfo(
                kind=Kind.UNKNOWN_TASK,
                message=(
                    f"no task named {envelope.task!r} is registered on worker"
                    f" {self.worker_id} (app {self.app.namespace!r})"
                ),
            )
            delay = policy.delay(attempt) if policy.allows_retry(attempt) else None
            await self._settle(delivery, envelope, attempt, Failed(error, delay), started=None)
            return
        if envelope.deadline is not None and self.broker.now() >= envelope.deadline:
            error = ErrorInfo(
                kind=Kind.DEADLINE,
                message=f"deadline {_iso(envelope.deadline)} passed before the task could run",
            )
            await self._settle(delivery, envelope, attempt, Failed(error, None), started=None)
            return
        try:
            args, kwargs = task.decode_arguments(envelope.payload)
        except (ValueError, TypeError) as decode_error:
            error = ErrorInfo(kind=Kind.DECODE, message=str(decode_error))
            await self._settle(delivery, envelope, attempt, Failed(error, None), started=None)
            return
        policy = envelope.retry or self.app.retry_policy(task)
        started = self.broker.now()
        context = TaskContext(
            id=envelope.id,
            name=task.name,
            queue=queue_of_subject(self.layout, delivery.subject),
            attempt=attempt,
            headers=delivery.headers,
            deadline=_datetime(envelope.deadline),
            enqueued_at=_datetime(envelope.enqueued_at) or dt.datetime.now(dt.UTC),
        )
        timeout = _effective_timeout(
            envelope.timeout or task.settings.timeout, envelope.deadline, started
        )
        await self._run(delivery, envelope, task, policy, context, args, kwargs, timeout, started)

    async def _run(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        task: Task[Any, Any],
        policy: RetryPolicy,
        context: TaskContext,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float,
        started: float,
    ) -> None:
        attempt = context.attempt
        if task.is_async:
            with trio.move_on_after(timeout) as scope:
                outcome = await self._call_async(task, context, args, kwargs, policy, attempt)
            if scope.cancelled_caught:
                outcome = self._timed_out(policy, attempt, timeout)
            await self._settle(delivery, envelope, attempt, outcome, started=started)
            return
        # A thread cannot be cancelled: on timeout the outcome is settled at once, but the slot
        # stays taken until the thread returns (the nursery waits for it).
        finished = trio.Event()
        box: list[Outcome] = []

        async def in_thread() -> None:
            box.append(await self._call_sync(task, context, args, kwargs, policy, attempt))
            finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread)
            with trio.move_on_after(timeout):
                await finished.wait()
            if finished.is_set():
                await self._settle(delivery, envelope, attempt, box[0], started=started)
            else:
                self.statistics.overrunning_threads += 1
                try:
                    timed_out = self._timed_out(policy, attempt, timeout)
                    await self._settle(delivery, envelope, attempt, timed_out, started=started)
                finally:
                    await finished.wait()
                    self.statistics.overrunning_threads -= 1

    async def _call_async(
        self,
        task: Task[Any, Any],
        context: TaskContext,
        args: list[Any],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        attempt: int,
    ) -> Outcome:
        set_current_task(context)
        assert task.fn is not None
        try:
            return Succeeded(await task.fn(*args, **kwargs))
        except Exception as error:
            return self._failed(error, policy, attempt)

    async def _call_sync(
        self,
        task: Task[Any, Any],
        context: TaskContext,
        args: list[Any],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        attempt: int,
    ) -> Outcome:
        set_current_task(context)  # the thread runs in a copy of this task's context
        assert task.fn is not None
        try:
            value = await trio.to_thread.run_sync(
                partial(task.fn, *args, **kwargs), limiter=self.thread_limiter
            )
        except Exception as error:
            return self._failed(error, policy, attempt)
        return Succeeded(value)

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

    def _timed_out(self, policy: RetryPolicy, attempt: int, timeout: float) -> Failed:
        info = ErrorInfo(kind=Kind.TIMEOUT, message=f"attempt {attempt} timed out after {timeout}s")
        delay = policy.delay(attempt) if policy.allows_retry(attempt) else None
        return Failed(info, delay)

    # --- settling: the only place that acks, naks, terms or publishes --------------------

    async def _settle(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        attempt: int,
        outcome: Outcome,
        *,
        started: float | None,
    ) -> None:
        elapsed = self.broker.now() - started if started is not None else 0.0
        if isinstance(outcome, Succeeded):
            await self._succeed(delivery, envelope, attempt, outcome.value)
            self.statistics.succeeded += 1
            logger.info(
                "task %s %s attempt %d succeeded in %.3fs",
                envelope.task, envelope.id, attempt, elapsed,
            )
        elif outcome.retry_delay is not None:
            await self._retry(delivery, envelope, attempt, outcome.retry_delay)
            self.statistics.retried += 1
            logger.warning(
                "task %s %s attempt %d failed in %.3fs, retrying in %.3gs: [%s] %s",
                envelope.task, envelope.id, attempt, elapsed, outcome.retry_delay,
                outcome.error.kind, outcome.error.message,
            )
        else:
            await self._fail(delivery, envelope, attempt, outcome.error)
            self.statistics.failed += 1
            logger.error(
                "task %s %s attempt %d failed for good in %.3fs: [%s] %s",
                envelope.task, envelope.id, attempt, elapsed,
                outcome.error.kind, outcome.error.message,
            )

    async def _succeed(
        self, delivery: Delivery, envelope: TaskEnvelope, attempt: int, value: Any
    ) -> None:
        record = ResultRecord(
            id=envelope.id,
            task=envelope.task,
            status="succeeded",
            value=value,
            attempts=attempt,
            finished_at=self.broker.now(),
            worker=self.worker_id,
        )
        try:
            data = _codec.dumps(record)
        except Exception as error:
            info = ErrorInfo(
                kind=Kind.ENCODE,
                message=f"the result cannot be encoded as JSON: {type(error).__name__}: {error}",
            )
            await self._fail(delivery, envelope, attempt, info)
            return
        if len(data) > self.app.max_result_size:
            info = ErrorInfo(
                kind=Kind.RESULT_TOO_LARGE,
                message=(
                    f"the result is {len(data)} bytes encoded, more than the app's"
                    f" max_result_size of {self.app.max_result_size}"
                ),
            )
            await self._fail(delivery, envelope, attempt, info)
            return
        await self._publish_result(envelope, data, "succeeded")
        await self.broker.ack(delivery)

    async def _publish_result(self, envelope: TaskEnvelope, data: bytes, status: str) -> None:
        headers = {H_ID: envelope.id, H_TASK: envelope.task, H_STATUS: status}
        message = Message(self.layout.result_subject(envelope.id), data, headers)
        if not envelope.store_result:
            await self.broker.publish_core(message)
            return
        if envelope.result_ttl is not None:
            headers[TTL] = f"{max(1, math.ceil(envelope.result_ttl))}s"
        await self.broker.publish(message)

    async def _retry(
        self, delivery: Delivery, envelope: TaskEnvelope, attempt: int, delay: float
    ) -> None:
        if delay <= self.nak_threshold:
            await self.broker.nak(delivery, delay=delay)
            return
        # Ack and republish as a server-fired schedule: a long wait must not hold a slot of
        # max_ack_pending. The schedule subject is unique so it replaces no other schedule.
        schedule_id = uuid.uuid4().hex
        headers = dict(delivery.headers)
        headers[H_ATTEMPT] = str(attempt)
        headers[SCHEDULE] = schedule_at(self.broker.now() + delay)
        headers[SCHEDULE_TARGET] = delivery.subject
        headers[MSG_ID] = f"retry:{envelope.id}:{attempt}"
        await self.broker.publish(
            Message(self.layout.schedule_subject(schedule_id), delivery.data, headers)
        )
        await self.broker.ack(delivery)

    async def _fail(
        self, delivery: Delivery, envelope: TaskEnvelope, attempt: int, error: ErrorInfo
    ) -> None:
        queue = queue_of_subject(self.layout, delivery.subject)
        await self._dead_letter(delivery, envelope.id, envelope.task, queue, attempt, error)
        record = ResultRecord(
            id=envelope.id,
            task=envelope.task,
            status="failed",
            error=error,
            attempts=attempt,
            finished_at=self.broker.now(),
            worker=self.worker_id,
        )
        await self._publish_result(envelope, _codec.dumps(record), "failed")
        await self.broker.term(delivery)

    async def _dead_letter(
        self,
        delivery: Delivery,
        task_id: str,
        task_name: str,
        queue: str,
        attempt: int,
        error: ErrorInfo,
    ) -> None:
        payload, encoding = encode_payload_text(delivery.data)
        letter = DeadLetter(
            task_id=task_id,
            task=task_name,
            queue=queue,
            subject=delivery.subject,
            headers=dict(delivery.headers),
            payload=payload,
            payload_encoding=encoding,
            attempts=attempt,
            error=error,
            failed_at=self.broker.now(),
            worker=self.worker_id,
        )
        subject = self.layout.dlq_subject(queue or "unknown", task_name or "unknown")
        headers = {MSG_ID: f"dlq:{uuid.uuid4().hex}", H_TASK: task_name, H_ID: task_id}
        await self.broker.publish(Message(subject, _codec.dumps(letter), headers))
        self.statistics.dead_lettered += 1

    async def _settle_malformed(self, delivery: Delivery, reason: str) -> None:
        """A message actorq cannot read goes to the dead-letter queue at once, with the reason."""
        logger.error("malformed task message on %s: %s", delivery.subject, reason)
        headers = delivery.headers
        task_id = headers.get(H_ID, "")
        task_name = headers.get(H_TASK, "")
        queue = queue_of_subject(self.layout, delivery.subject)
        error = ErrorInfo(kind=Kind.DECODE, message=f"malformed task message: {reason}")
        try:
            await self._dead_letter(
                delivery, task_id, task_name, queue, delivery.num_delivered, error
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
