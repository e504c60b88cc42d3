"""One memory stream: storage, limits, dedupe, expiry and schedules, as JetStream keeps them.

Messages live in a dict in sequence order, with an index per subject (for the last message on
a subject, per-subject limits, rollups and expectations). Everything that removes a message —
an ack on a work queue, a limit, a rollup, a purge, ``max_age`` or ``Nats-TTL`` expiry, a
one-shot schedule that fired — goes through `MemStream.remove`, which tells the consumers.
A stream with a subject-delete-marker TTL (KV buckets with per-key TTL) leaves a marker when
expiry empties a subject, so watchers see the key go, as on the server.

Schedules fire on the engine's timers: the message a schedule publishes is stored directly in
the stream (exactly like the server, which stores it without routing it through core NATS, so
plain subscribers never see it), and a one-shot schedule's own message is removed after it fired.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

import attrs

from . import _subjects
from ._memory_counter import apply_increment
from ._memory_headers import (
    MARKER_REASON,
    SCHEDULE_SOURCE,
    PublishPlan,
    Refused,
    fired_headers,
    header_size,
    plan_publish,
)
from ._protocol import MSG_ID, SCHEDULE_TARGET, TTL, Retention, StoredMessage, StreamConfig
from ._schedule import Schedule, format_rfc3339

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._memory_consumer import MemConsumer
    from ._memory_time import Engine

DEFAULT_DUPLICATE_WINDOW = 120.0


@attrs.define(eq=False)
class StoredMsg:
    """A message in a memory stream."""

    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]
    at: float
    """Trio time it was stored."""
    timestamp: float
    """Wall time it was stored, seconds since the epoch."""
    size: int
    ttl: float | None = None
    never_expires: bool = False

    def stored(self) -> StoredMessage:
        return StoredMessage(self.subject, self.data, self.headers, self.seq, self.timestamp)


class StoreListener(Protocol):
    def on_store(self, msg: StoredMsg) -> None: ...

    def on_close(self) -> None:
        """The stream was deleted."""


@attrs.define(eq=False)
class _Scheduled:
    seq: int
    schedule: Schedule
    fire_wall: float


def effective_duplicate_window(config: StreamConfig) -> float:
    """The window a stream gets: 0 means two minutes (the server's default), and a window
    longer than the max age is cut to it (the server refuses it; both brokers cut it)."""
    window = config.duplicate_window or DEFAULT_DUPLICATE_WINDOW
    return min(window, config.max_age) if config.max_age else window


class MemStream:
    """A stream held in memory."""

    def __init__(self, engine: Engine, config: StreamConfig, *, marker_ttl: float | None) -> None:
        self.engine = engine
        self.config = config
        self.marker_ttl = marker_ttl
        """Seconds a subject delete marker lives; None: expiry leaves no marker."""
        self.messages: dict[int, StoredMsg] = {}
        self.by_subject: dict[str, dict[int, None]] = {}
        self.last_seq = 0
        self.bytes = 0
        self.consumers: dict[str, MemConsumer] = {}
        self.watchers: set[StoreListener] = set()
        """Told of every message stored (KV watches, which the server pushes to at once)."""
        self.deleted = False
        self._dedupe: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._schedules: dict[str, _Scheduled] = {}

    # --- reading --------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        if self.messages:
            return next(iter(self.messages))
        return self.last_seq + 1 if self.last_seq else 0

    def last_seq_on(self, subject: str) -> int:
        seqs = self.by_subject.get(subject)
        return next(reversed(seqs)) if seqs else 0

    def last_on(self, subject: str) -> StoredMsg | None:
        """The last message on ``subject`` (a filter: the last of every matching subject)."""
        if subject in self.by_subject:
            return self.messages[self.last_seq_on(subject)]
        if _subjects.is_valid_subject(subject):
            return None  # a literal subject with nothing stored
        seqs = [
            next(reversed(s)) for k, s in self.by_subject.items() if _subjects.matches(subject, k)
        ]
        return self.messages[max(seqs)] if seqs else None

    def next_from(self, seq: int, subject: str | None) -> StoredMsg | None:
        """The first message with a sequence >= ``seq`` (matching ``subject`` if given)."""
        for current in range(max(seq, self.first_seq, 1), self.last_seq + 1):
            msg = self.messages.get(current)
            if msg is not None and (subject is None or _subjects.matches(subject, msg.subject)):
                return msg
        return None

    @property
    def schedule_count(self) -> int:
        return len(self._schedules)

    # --- storing --------------------------------------------------------------------------

    def accept(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bool, int | None]:
        """Store a publish as the server would: ``(seq, duplicate, counter total)``.

        Raises:
            Refused: the stream refuses the message.
        """
        msg_id = headers.get(MSG_ID)
        if msg_id:
            self._prune_dedupe()
            seen = self._dedupe.get(msg_id)
            if seen is not None:
                return seen[0], True, None
        total = None
        counted = apply_increment(self, subject, data, headers)
        if counted is not None:
            data, total = counted
        plan = plan_publish(self, subject, data, headers, self.engine.wall())
        return self.store(subject, data, plan, self.engine.now()).seq, False, total

    def store(self, subject: str, data: bytes, plan: PublishPlan, at: float) -> StoredMsg:
        """Store an accepted message at trio time ``at`` and apply what it implies."""
        self.last_seq += 1
        headers = MappingProxyType(dict(plan.headers))
        size = len(subject) + header_size(headers) + len(data) + 16
        msg = StoredMsg(
            self.last_seq, subject, data, headers, at, self.engine.wall(at), size,
            plan.ttl, plan.never_expires,
        )  # fmt: skip
        self.messages[msg.seq] = msg
        self.by_subject.setdefault(subject, {})[msg.seq] = None
        self.bytes += size
        if plan.msg_id:
            self._dedupe[plan.msg_id] = (msg.seq, at)
        if plan.rollup == "sub":
            for seq in list(self.by_subject[subject])[:-1]:
                self.remove(seq, "rollup")
        elif plan.rollup == "all":
            for seq in list(self.messages)[:-1]:
                self.remove(seq, "rollup")
        limit = self.config.max_msgs_per_subject
        if limit is not None and limit > 0:
            while len(self.by_subject[subject]) > limit:
                self.remove(next(iter(self.by_subject[subject])), "limit")
        self._arm_expiry(msg)
        if plan.schedule is not None:
            self._register_schedule(msg, plan.schedule)
        for consumer in list(self.consumers.values()):
            consumer.on_store(msg)
        if self.config.retention is Retention.INTEREST and not self.interested(msg, None):
            self.remove(msg.seq, "interest")
        for watcher in list(self.watchers):
            watcher.on_store(msg)
        return msg

    def _prune_dedupe(self) -> None:
        horizon = self.engine.now() - effective_duplicate_window(self.config)
        while self._dedupe:
            _, (_, at) = next(iter(self._dedupe.items()))
            if at > horizon:
                break
            self._dedupe.popitem(last=False)

    # --- removing -------------------------------------------------------------------------

    def remove(self, seq: int, reason: str) -> StoredMsg | None:
        """Remove one message (``reason``: ack, limit, rollup, purge, delete, ttl, max_age...)."""
        msg = self.messages.pop(seq, None)
        if msg is None:
            return None
        seqs = self.by_subject[msg.subject]
        del seqs[seq]
        if not seqs:
            del self.by_subject[msg.subject]
        self.bytes -= msg.size
        self.engine.cancel_timer((self, "expire", seq))
        scheduled = self._schedules.get(msg.subject)
        if scheduled is not None and scheduled.seq == seq:
            del self._schedules[msg.subject]
            self.engine.cancel_timer((self, "schedule", msg.subject))
        for consumer in list(self.consumers.values()):
            consumer.on_remove(msg)
        if (
            reason in ("ttl", "max_age")
            and self.marker_ttl is not None
            and msg.subject not in self.by_subject
            and MARKER_REASON not in msg.headers
        ):
            # The server's subject delete marker: expiry of a key shows in watches as a purge.
            marker_headers = {MARKER_REASON: "MaxAge", TTL: f"{math.ceil(self.marker_ttl)}s"}
            plan = PublishPlan(headers=marker_headers, ttl=self.marker_ttl)
            self.store(msg.subject, b"", plan, self.engine.now())
        return msg

    def purge(self, subject: str | None) -> int:
        """Remove every message (on ``subject``, a filter, if given); returns the count."""
        if subject is None:
            seqs = list(self.messages)
        elif subject in self.by_subject:
            seqs = list(self.by_subject[subject])
        else:
            seqs = [s for s, m in self.messages.items() if _subjects.matches(subject, m.subject)]
        for seq in seqs:
            self.remove(seq, "purge")
        return len(seqs)

    def interested(self, msg: StoredMsg, besides: MemConsumer | None) -> bool:
        """Does any consumer (other than ``besides``) still need ``msg``? (Interest retention.)"""
        return any(
            consumer is not besides and consumer.still_needs(msg)
            for consumer in self.consumers.values()
        )

    def acknowledged(self, msg_seq: int, consumer: MemConsumer) -> None:
        """A consumer acked (or terminated) a message: retention may now remove it."""
        msg = self.messages.get(msg_seq)
        if msg is None:
            return
        if self.config.retention is Retention.WORK_QUEUE:
            self.remove(msg_seq, "ack")
        elif self.config.retention is Retention.INTEREST and not self.interested(msg, consumer):
            self.remove(msg_seq, "ack")

    # --- expiry ---------------------------------------------------------------------------

    def _arm_expiry(self, msg: StoredMsg) -> None:
        deadline, reason = math.inf, "ttl"
        if msg.ttl is not None:
            # A subject delete marker TTL is also the shortest TTL a message gets (measured).
            deadline = msg.at + max(msg.ttl, self.marker_ttl or 0.0)
        max_age = self.config.max_age
        if max_age and not msg.never_expires and msg.at + max_age < deadline:
            deadline, reason = msg.at + max_age, "max_age"
        key = (self, "expire", msg.seq)
        if deadline < math.inf:
            self.engine.set_timer(key, deadline, lambda _when: self._expire(msg.seq, reason))
        else:
            self.engine.cancel_timer(key)

    def _expire(self, seq: int, reason: str) -> None:
        if not self.deleted:
            self.remove(seq, reason)

    def reconfigure(self, config: StreamConfig) -> None:
        """Apply an updated config (limits and expiry are re-evaluated)."""
        self.config = config
        limit = config.max_msgs_per_subject
        for subject in list(self.by_subject):
            while limit is not None and limit > 0 and len(self.by_subject.get(subject, ())) > limit:
                self.remove(next(iter(self.by_subject[subject])), "limit")
        for msg in list(self.messages.values()):
            self._arm_expiry(msg)
        self.engine.advance()  # a shorter max age may have expired messages already

    # --- schedules ------------------------------------------------------------------------

    def _register_schedule(self, msg: StoredMsg, schedule: Schedule) -> None:
        fire = schedule.next_fire(msg.timestamp, msg.timestamp)
        if fire is None:
            return
        self._schedules[msg.subject] = _Scheduled(msg.seq, schedule, fire)
        self._arm_schedule(msg.subject, fire, msg.at)

    def _arm_schedule(self, subject: str, fire_wall: float, not_before: float) -> None:
        when = max(self.engine.at_wall(fire_wall), not_before)  # a time in the past: at once
        self.engine.set_timer(
            (self, "schedule", subject), when, lambda when: self._fire(subject, when)
        )

    def _fire(self, subject: str, when: float) -> None:
        scheduled = self._schedules.get(subject)
        msg = self.messages.get(scheduled.seq) if scheduled else None
        if self.deleted or scheduled is None or msg is None:
            return
        schedule, wall = scheduled.schedule, self.engine.wall(when)
        next_fire = schedule.next_fire(scheduled.fire_wall, wall) if schedule.repeating else None
        if schedule.repeating and next_fire is None:
            del self._schedules[subject]  # a cron expression that never fires again
            return
        content = msg
        source = msg.headers.get(SCHEDULE_SOURCE, "").strip()
        if source:
            content = self.last_on(source) or msg
        next_text = format_rfc3339(next_fire, schedule.tz) if next_fire is not None else None
        headers = fired_headers(subject, msg.headers, content.headers, next_text)
        target = msg.headers[SCHEDULE_TARGET].strip()
        try:
            plan = plan_publish(self, target, content.data, headers, wall)
        except Refused:
            pass  # e.g. the target left the stream's subjects: the server drops it too
        else:
            self.store(target, content.data, plan, when)
        if next_fire is None:
            for seq in list(self.by_subject.get(subject, ())):
                self.remove(seq, "schedule")
        else:
            scheduled.fire_wall = next_fire
            self._arm_schedule(subject, next_fire, when)
