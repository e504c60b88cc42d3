"""Settling a delivery: the only place a worker acks, naks, terms or publishes an outcome.

The order of effects is what makes the queue safe (see docs/architecture.md):

- success: store the result, then ack — a crash in between runs the task again, never loses
  it (`succeed_later` keeps that order without a task waiting: the broker acks when the
  result's PubAck arrives). Results are stored with "no result on this subject yet" as an
  expectation, so the first outcome of a task wins: a re-run after such a crash, or a worker
  finishing a task that was just cancelled, cannot overwrite it;
- retry: a short delay naks with that delay; a long one acks and republishes the message as a
  server-side schedule carrying the attempt count, so a waiting retry never holds a place in
  ``max_ack_pending``. Deferring (a busy concurrency key, a rate limit) republishes the same
  way without counting an attempt;
- failure for good: store the dead letter (under a new message id), then the failed result,
  then term; if the dead letter cannot be stored the message is naked, never dropped.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING

import attrs

from . import _codec
from ._errors import WrongLastSequence
from ._wire import (
    H_ATTEMPT,
    H_ID,
    H_STATUS,
    H_TASK,
    DeadLetter,
    ErrorInfo,
    ResultRecord,
    TaskEnvelope,
    encode_payload_text,
    queue_of_subject,
    schedule_at,
)
from .broker import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
    SCHEDULE,
    SCHEDULE_TARGET,
    TTL,
    Broker,
    Delivery,
    Message,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._names import Layout

logger = logging.getLogger("actorq.worker")

SETTLE_RETRY_DELAY = 1.0
"""Seconds before a task whose outcome could not be stored is delivered again."""


@attrs.define
class ExecutionStatistics:
    """Counters of one worker's executions."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    skipped: int = 0
    """Tasks whose idempotency key had already succeeded."""
    deferred: int = 0
    """Tasks put back for later by a busy concurrency key or a rate limit."""
    overrunning_threads: int = 0
    """Plain-``def`` handlers still running in their thread after their timeout."""


class Settler:
    """Publishes outcomes and settles deliveries for one worker."""

    def __init__(
        self,
        broker: Broker,
        layout: Layout,
        *,
        worker_id: str,
        nak_threshold: float,
        statistics: ExecutionStatistics,
    ) -> None:
        self.broker = broker
        self.layout = layout
        self.worker_id = worker_id
        self.nak_threshold = nak_threshold
        self.statistics = statistics

    def record(
        self,
        envelope: TaskEnvelope,
        attempt: int,
        status: str,
        *,
        value: object = None,
        error: ErrorInfo | None = None,
    ) -> ResultRecord:
        return ResultRecord(
            id=envelope.id,
            task=envelope.task,
            status=status,
            value=value,
            error=error,
            attempts=attempt,
            finished_at=self.broker.now(),
            worker=self.worker_id,
        )

    async def publish_result(self, envelope: TaskEnvelope, data: bytes, status: str) -> None:
        """Store an outcome unless the task already has one (the first outcome wins)."""
        if not envelope.publish_result:
            return  # kept elsewhere: a DAG step's outcome is in its run's state
        message = self.result_message(envelope, data, status)
        if not envelope.store_result:
            await self.broker.publish_core(message)
            return
        try:
            await self.broker.publish(message)
        except WrongLastSequence:
            logger.debug("task %s already has an outcome; %s not stored", envelope.id, status)

    def result_message(
        self, envelope: TaskEnvelope, data: bytes, status: str = "succeeded"
    ) -> Message:
        """The publish that stores an outcome (the first one wins, when stored)."""
        headers = {H_ID: envelope.id, H_TASK: envelope.task, H_STATUS: status}
        if envelope.store_result:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = "0"
            if envelope.result_ttl is not None:
                headers[TTL] = f"{max(1, math.ceil(envelope.result_ttl))}s"
        return Message(self.layout.result_subject(envelope.id), data, headers)

    async def succeed(self, delivery: Delivery, envelope: TaskEnvelope, data: bytes) -> None:
        await self.publish_result(envelope, data, "succeeded")
        await self.broker.ack(delivery)
        self.statistics.succeeded += 1

    @staticmethod
    def can_succeed_later(envelope: TaskEnvelope) -> bool:
        """Whether a result may be settled by `succeed_later`: it is stored in the results
        stream (not a result only pushed to live awaiters, not a DAG step's)."""
        return envelope.publish_result and envelope.store_result

    def succeed_later(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        message: Message,
        done: Callable[[bool], None],
    ) -> None:
        """`succeed` without waiting for the server: publish ``message`` (the stored result,
        or a DAG step's outcome record; both written only if none is there yet) and let the
        broker ack once it is stored or an outcome was there already, or nak for another
        try if it cannot be stored. ``done(acked)`` runs after, on the trio thread, between
        tasks."""

        def settled(error: BaseException | None) -> None:
            if error is not None and not isinstance(error, WrongLastSequence):
                logger.error(
                    "task %s (%s): could not store its result (%s); it will be delivered again",
                    envelope.task,
                    envelope.id,
                    error,
                )
                done(False)
                return
            if error is not None:
                logger.debug("task %s already has an outcome; succeeded not stored", envelope.id)
            self.statistics.succeeded += 1
            done(True)

        self.broker.publish_then_settle(message, delivery, settled, retry_delay=SETTLE_RETRY_DELAY)

    async def cancelled(self, delivery: Delivery, envelope: TaskEnvelope, attempt: int) -> None:
        record = self.record(envelope, attempt, "cancelled")
        await self.publish_result(envelope, _codec.dumps(record), "cancelled")
        await self.broker.term(delivery)
        self.statistics.cancelled += 1

    async def retry(
        self, delivery: Delivery, envelope: TaskEnvelope, attempt: int, delay: float
    ) -> None:
        """Try again after ``delay`` seconds; attempt number ``attempt`` counts as made."""
        if delay <= self.nak_threshold:
            await self.broker.nak(delivery, delay=delay)
        else:
            await self.republish(delivery, envelope, attempts_made=attempt, delay=delay)
        self.statistics.retried += 1

    async def defer(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        attempt: int,
        delay: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Put the task back for ``delay`` seconds without counting this attempt, adding
        ``headers`` to its message."""
        await self.republish(
            delivery, envelope, attempts_made=attempt - 1, delay=delay, extra=headers
        )
        self.statistics.deferred += 1

    async def republish(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        *,
        attempts_made: int,
        delay: float,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Ack and republish as a server-fired schedule carrying the attempts made.

        The schedule subject is unique, so it replaces no other schedule; its message id makes
        a republish retried after a crash land once.
        """
        headers = dict(delivery.headers)
        if extra:
            headers.update(extra)
        headers[H_ATTEMPT] = str(attempts_made)
        headers[SCHEDULE] = schedule_at(self.broker.now() + delay)
        headers[SCHEDULE_TARGET] = delivery.subject
        headers[MSG_ID] = f"again:{envelope.id}:{delivery.stream}:{delivery.stream_seq}"
        subject = self.layout.schedule_subject(uuid.uuid4().hex)
        await self.broker.publish(Message(subject, delivery.data, headers))
        await self.broker.ack(delivery)

    async def fail(
        self, delivery: Delivery, envelope: TaskEnvelope, attempt: int, error: ErrorInfo
    ) -> None:
        queue = queue_of_subject(self.layout, delivery.subject)
        await self.dead_letter(delivery, envelope.id, envelope.task, queue, attempt, error)
        record = self.record(envelope, attempt, "failed", error=error)
        await self.publish_result(envelope, _codec.dumps(record), "failed")
        await self.broker.term(delivery)
        self.statistics.failed += 1

    async def dead_letter(
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
