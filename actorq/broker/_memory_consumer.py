"""A durable pull consumer on a memory stream: deliveries, acks, redelivery and pull requests.

The bookkeeping is JetStream's: a cursor over the stream for new messages and its count of
matching messages not yet delivered (``num_pending``); a *pending* entry per delivered and
unacknowledged message, which holds one ``max_ack_pending`` slot until it is acked or
terminated — also while it waits out a nak delay or an expired ack wait (measured: a naked
delivery keeps its slot). Redeliveries go before new messages and are not limited by
``max_ack_pending``; a message that already had ``max_deliver`` deliveries is dropped when its
turn to be redelivered comes. Waiting pull requests are served round-robin, one message at a
time, as the server's wait queue does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Literal

import attrs

from . import _subjects
from ._protocol import ConsumerConfig, ConsumerInfo, DeliverPolicy, Delivery

if TYPE_CHECKING:
    from ._memory_stream import MemStream, StoredMsg
    from ._memory_time import Waker


@attrs.define(eq=False)
class _Pending:
    deliveries: int
    consumer_seq: int = 0
    generation: int = 0
    state: Literal["out", "delayed", "due"] = "out"
    """out: waiting for its ack; delayed: naked with a delay; due: waiting for redelivery."""


@attrs.define(eq=False)
class PullRequest:
    """One outstanding pull: up to ``remaining`` more messages go to ``delivered``."""

    remaining: int
    waker: Waker
    delivered: list[Delivery] = attrs.field(factory=list)
    queued: bool = False


@attrs.frozen(eq=False)
class AckToken:
    """What a memory `Delivery` carries to be acknowledged."""

    consumer: MemConsumer
    seq: int


class MemConsumer:
    """A durable pull consumer with explicit acks."""

    def __init__(self, stream: MemStream, config: ConsumerConfig) -> None:
        self.stream = stream
        self.engine = stream.engine
        self.config = config
        self.deleted = False
        self.pending: dict[int, _Pending] = {}
        self.waiting: deque[PullRequest] = deque()
        self._due: dict[int, None] = {}
        self._initial: dict[int, None] = {}
        self._consumer_seq = 0
        self._last_active = self.engine.now()
        if config.deliver_policy is DeliverPolicy.NEW:
            self.cursor = stream.last_seq + 1
        elif config.deliver_policy is DeliverPolicy.LAST_PER_SUBJECT:
            self.cursor = stream.last_seq + 1
            lasts = (next(reversed(seqs)) for subject, seqs in stream.by_subject.items()
                     if self.wants(subject))  # fmt: skip
            self._initial = dict.fromkeys(sorted(lasts))
        else:
            self.cursor = max(stream.first_seq, 1)
        self.num_pending = len(self._initial) + sum(
            1 for seq, msg in stream.messages.items()
            if seq >= self.cursor and self.wants(msg.subject)
        )  # fmt: skip
        self._arm_inactivity()

    @property
    def name(self) -> str:
        return self.config.name

    def wants(self, subject: str) -> bool:
        return _subjects.matches_any(self.config.filter_subjects, subject)

    def reconfigure(self, config: ConsumerConfig) -> None:
        filters_changed = config.filter_subjects != self.config.filter_subjects
        self.config = config
        if filters_changed:
            self.num_pending = sum(
                1 for seq, msg in self.stream.messages.items()
                if seq >= self.cursor and self.wants(msg.subject)
            )  # fmt: skip
        self._arm_inactivity()
        self.dispatch()

    def info(self) -> ConsumerInfo:
        return ConsumerInfo(
            stream=self.stream.config.name,
            name=self.name,
            num_pending=self.num_pending,
            num_ack_pending=len(self.pending),
            num_redelivered=sum(1 for p in self.pending.values() if p.deliveries > 1),
            num_waiting=sum(1 for r in self.waiting if r.remaining > 0),
        )

    # --- the stream tells us --------------------------------------------------------------

    def on_store(self, msg: StoredMsg) -> None:
        if msg.seq >= self.cursor and self.wants(msg.subject):
            self.num_pending += 1
            self.dispatch()

    def on_remove(self, msg: StoredMsg) -> None:
        if msg.seq in self._initial or (msg.seq >= self.cursor and self.wants(msg.subject)):
            self._initial.pop(msg.seq, None)
            self.num_pending -= 1
        if self.pending.pop(msg.seq, None) is not None:
            self._due.pop(msg.seq, None)
            self.engine.cancel_timer((self, "ack", msg.seq))
            self.dispatch()  # a max_ack_pending slot is free

    def still_needs(self, msg: StoredMsg) -> bool:
        """Interest retention: will this consumer still deliver or wait for an ack of ``msg``?"""
        return (
            msg.seq in self.pending
            or msg.seq in self._initial
            or (msg.seq >= self.cursor and self.wants(msg.subject))
        )

    # --- pull requests --------------------------------------------------------------------

    def add_request(self, request: PullRequest) -> None:
        self.touch()
        if not request.queued and request.remaining > 0:
            request.queued = True
            self.waiting.append(request)
        self.dispatch()

    def remove_request(self, request: PullRequest) -> None:
        if request.queued:
            request.queued = False
            self.waiting.remove(request)
        self.touch()

    def dispatch(self) -> None:
        """Hand available messages to waiting requests (paused while disconnected)."""
        if self.deleted or not self.engine.connected:
            return
        while self.waiting:
            request = self.waiting.popleft()
            if request.remaining <= 0:
                request.queued = False
                continue
            found = self._next()
            if found is None:
                self.waiting.appendleft(request)
                return
            request.delivered.append(self._deliver(*found))
            request.remaining -= 1
            request.waker.wake()
            if request.remaining > 0:
                self.waiting.append(request)  # round-robin, like the server's wait queue
            else:
                request.queued = False

    def _next(self) -> tuple[StoredMsg, _Pending | None] | None:
        messages = self.stream.messages
        for seq in list(self._due):
            pending = self.pending[seq]
            del self._due[seq]
            max_deliver = self.config.max_deliver
            if seq not in messages or (max_deliver > 0 and pending.deliveries >= max_deliver):
                del self.pending[seq]
                continue
            return messages[seq], pending
        max_ack_pending = self.config.max_ack_pending
        if max_ack_pending > 0 and len(self.pending) >= max_ack_pending:
            return None
        while self._initial:
            seq = next(iter(self._initial))
            del self._initial[seq]
            self.num_pending -= 1
            if seq in messages:
                return messages[seq], None
        self.cursor = max(self.cursor, self.stream.first_seq)
        while self.cursor <= self.stream.last_seq:
            msg = messages.get(self.cursor)
            self.cursor += 1
            if msg is not None and self.wants(msg.subject):
                self.num_pending -= 1
                return msg, None
        return None

    def _deliver(self, msg: StoredMsg, pending: _Pending | None) -> Delivery:
        if pending is None:
            pending = self.pending[msg.seq] = _Pending(deliveries=1)
        else:
            pending.deliveries += 1
        self._consumer_seq += 1
        pending.consumer_seq = self._consumer_seq
        self._arm(msg.seq, pending, "out", self.engine.now() + self.config.ack_wait)
        return Delivery(
            subject=msg.subject,
            data=msg.data,
            headers=msg.headers,
            stream=self.stream.config.name,
            consumer=self.name,
            stream_seq=msg.seq,
            consumer_seq=self._consumer_seq,
            num_delivered=pending.deliveries,
            num_pending=self.num_pending,
            timestamp=msg.timestamp,
            token=AckToken(self, msg.seq),
        )

    def _arm(
        self, seq: int, pending: _Pending, state: Literal["out", "delayed"], at: float
    ) -> None:
        """Wait until ``at`` (the ack deadline, or the end of a nak delay), then redeliver."""
        pending.state = state
        pending.generation += 1
        generation = pending.generation

        def expired(_when: float) -> None:
            if self.pending.get(seq) is pending and pending.generation == generation:
                pending.state = "due"
                self._due[seq] = None
                self.dispatch()

        self.engine.set_timer((self, "ack", seq), at, expired)

    # --- acknowledgements -----------------------------------------------------------------

    def ack(self, seq: int) -> None:
        """Acknowledge (or terminate: on the server both end the message for this consumer)."""
        self.touch()
        if self.pending.pop(seq, None) is None:
            return
        self._due.pop(seq, None)
        self.engine.cancel_timer((self, "ack", seq))
        self.stream.acknowledged(seq, self)
        self.dispatch()

    def nak(self, seq: int, delay: float | None) -> None:
        self.touch()
        pending = self.pending.get(seq)
        if pending is None:
            return
        if delay is not None and delay > 0:
            self._arm(seq, pending, "delayed", self.engine.now() + delay)
            return
        pending.state, pending.generation = "due", pending.generation + 1
        self.engine.cancel_timer((self, "ack", seq))
        self._due[seq] = None
        self.dispatch()

    def in_progress(self, seq: int) -> None:
        """Restart the ack wait. Measured on the server: this also replaces a nak delay (the
        message is redelivered an ack wait from now), and does nothing for a delivery whose
        ack wait already expired (it is redelivered at the next pull)."""
        self.touch()
        pending = self.pending.get(seq)
        if pending is not None and pending.state != "due":
            self._arm(seq, pending, "out", self.engine.now() + self.config.ack_wait)

    # --- lifecycle ------------------------------------------------------------------------

    def touch(self) -> None:
        self._last_active = self.engine.now()

    def _arm_inactivity(self) -> None:
        threshold = self.config.inactive_threshold
        key = (self, "inactive")
        if threshold is None or threshold <= 0:
            self.engine.cancel_timer(key)
            return

        def check(when: float) -> None:
            if self.deleted:
                return
            idle_since = self._last_active
            if any(r.remaining > 0 for r in self.waiting):
                idle_since = when  # a waiting pull request is activity
            if when - idle_since >= threshold:
                self.delete()
            else:
                self.engine.set_timer(key, idle_since + threshold, check)

        self.engine.set_timer(key, self._last_active + threshold, check)

    def delete(self) -> None:
        """Remove the consumer from its stream; its waiting requests are woken."""
        if self.deleted:
            return
        self.deleted = True
        if self.stream.consumers.get(self.name) is self:
            del self.stream.consumers[self.name]
        for request in self.waiting:
            request.queued = False
            request.waker.wake()
        self.waiting.clear()
        self.engine.cancel_timer((self, "inactive"))
        for seq in self.pending:
            self.engine.cancel_timer((self, "ack", seq))
