"""What a publish's headers ask of a memory stream, checked the way nats-server checks them.

JetStream reads a few ``Nats-*`` headers on every stored publish: a message id for dedupe,
expectations on the last sequence, a per-message TTL, a rollup, and a schedule with its target.
`plan_publish` validates them against the stream in the server's order and returns what storing
the message must do; a refusal carries the server's own description (what a JetStream client
sees) and, where useful, a more precise reason (which part of a cron expression is wrong).
Measured against nats-server 2.15.1: a schedule turns on rollups (the server sets
``allow_rollup_hdrs`` with ``allow_msg_schedules``) and gets ``Nats-Rollup: sub``, so a second
schedule on a subject replaces the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._errors import WrongLastSequence
from . import _subjects
from ._protocol import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
    ROLLUP,
    SCHEDULE,
    SCHEDULE_TARGET,
    SCHEDULE_TTL,
    TTL,
)
from ._schedule import InvalidSchedule, InvalidTimeZone, Schedule, parse_schedule, parse_ttl

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._memory_stream import MemStream

EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
SCHEDULE_SOURCE = "Nats-Schedule-Source"
SCHEDULE_TIME_ZONE = "Nats-Schedule-Time-Zone"
SCHEDULE_ROLLUP = "Nats-Schedule-Rollup"
SCHEDULER = "Nats-Scheduler"
SCHEDULE_NEXT = "Nats-Schedule-Next"
MARKER_REASON = "Nats-Marker-Reason"


class SequenceMismatch(WrongLastSequence):
    """A publish's ``Nats-Expected-Last-*-Sequence`` did not hold."""

    last_seq: int
    """The sequence the stream (or the subject) actually has."""


class Refused(Exception):
    """The stream refuses a publish. ``str()`` is the server's description plus our detail."""

    def __init__(self, description: str, detail: str = "", *, last_seq: int | None = None):
        super().__init__(f"{description}: {detail}" if detail else description)
        self.description = description
        self.last_seq = last_seq
        """For a wrong-last-sequence refusal: the sequence the stream actually has."""


@attrs.frozen
class PublishPlan:
    """What storing one accepted message involves."""

    headers: Mapping[str, str]
    msg_id: str | None = None
    ttl: float | None = None
    """Seconds the message lives (its ``Nats-TTL``), or None."""
    never_expires: bool = False
    """``Nats-TTL: never``: not even the stream's max age removes it."""
    rollup: str | None = None
    """``sub``: the message replaces every earlier one on its subject; ``all``: the stream."""
    schedule: Schedule | None = None


def header_size(headers: Mapping[str, str]) -> int:
    """Bytes of the headers on the wire (``NATS/1.0`` block), as limits count them."""
    if not headers:
        return 0
    return 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())


def plan_publish(
    stream: MemStream, subject: str, data: bytes, headers: Mapping[str, str], wall: float
) -> PublishPlan:
    """Check a publish to ``stream`` (after dedupe) and say how to store it.

    Raises:
        Refused: the server would refuse it.
    """
    config = stream.config
    expected = headers.get(EXPECTED_STREAM)
    if expected is not None and expected != config.name:
        raise Refused("expected stream does not match", f"expected {expected!r}")
    expected = headers.get(EXPECTED_LAST_SEQUENCE)
    if expected is not None and _int(expected) != stream.last_seq:
        raise Refused(f"wrong last sequence: {stream.last_seq}", last_seq=stream.last_seq)
    expected = headers.get(EXPECTED_LAST_SUBJECT_SEQUENCE)
    if expected is not None:
        last = stream.last_seq_on(subject)
        if _int(expected) != last:
            raise Refused(
                f"wrong last sequence: {last}",
                f"expected {expected} on {subject!r}",
                last_seq=last,
            )

    ttl, never = None, False
    if TTL in headers:
        if not config.allow_msg_ttl:
            raise Refused("per-message TTL is disabled", "the stream has no allow_msg_ttl")
        try:
            ttl = parse_ttl(headers[TTL].strip())
        except ValueError as exc:
            raise Refused("invalid per-message TTL", str(exc)) from None
        never = ttl is None

    schedule = None
    new_headers = dict(headers)
    pattern = headers.get(SCHEDULE, "").strip()
    if pattern:
        schedule = _plan_schedule(stream, subject, headers, pattern, wall)
        if ROLLUP not in headers:
            new_headers[ROLLUP] = "sub"
        elif headers[ROLLUP] != "sub":
            raise Refused("message schedules invalid rollup", "a schedule may only roll up 'sub'")

    rollup = new_headers.get(ROLLUP)
    if rollup is not None:
        if not (config.allow_rollup or config.allow_msg_schedules):
            raise Refused("rollup not permitted", "the stream has no allow_rollup")
        if rollup not in ("sub", "all"):
            raise Refused(f"rollup value invalid: {rollup!r}")

    if config.max_msg_size is not None and config.max_msg_size >= 0:
        if len(data) + header_size(new_headers) > config.max_msg_size:
            raise Refused(
                "message size exceeds maximum allowed", f"the limit is {config.max_msg_size}"
            )
    return PublishPlan(
        headers=new_headers,
        msg_id=headers.get(MSG_ID) or None,
        ttl=ttl,
        never_expires=never,
        rollup=rollup,
        schedule=schedule,
    )


def _plan_schedule(
    stream: MemStream, subject: str, headers: Mapping[str, str], pattern: str, wall: float
) -> Schedule:
    config = stream.config
    if not config.allow_msg_schedules:
        raise Refused("message schedules is disabled", "the stream has no allow_msg_schedules")
    try:
        schedule = parse_schedule(pattern, headers.get(SCHEDULE_TIME_ZONE), now=wall)
    except InvalidTimeZone as exc:
        raise Refused("message schedules time zone is invalid", str(exc)) from None
    except InvalidSchedule as exc:
        raise Refused("message schedules pattern is invalid", str(exc)) from None
    if SCHEDULE_TTL in headers:
        try:
            parse_ttl(headers[SCHEDULE_TTL].strip())
        except ValueError as exc:
            raise Refused("message schedules invalid per-message TTL", str(exc)) from None
        if not config.allow_msg_ttl:
            raise Refused("per-message TTL is disabled", "a schedule TTL needs allow_msg_ttl")
    target = headers.get(SCHEDULE_TARGET, "").strip()
    if (
        not target
        or not _subjects.is_valid_subject(target)
        or _subjects.collide(target, subject)
        or not any(_subjects.collide(s, target) for s in config.subjects)
    ):
        raise Refused(
            "message schedules target is invalid",
            f"{SCHEDULE_TARGET} {target!r} must be a literal subject of stream"
            f" {config.name!r} other than the schedule's own subject {subject!r}",
        )
    source = headers.get(SCHEDULE_SOURCE, "").strip()
    if source and (
        not _subjects.is_valid_subject(source)
        or source in (subject, target)
        or not any(_subjects.matches(s, source) for s in config.subjects)
    ):
        raise Refused(
            "message schedules source is invalid",
            f"{SCHEDULE_SOURCE} {source!r} must be another literal subject of the stream",
        )
    rollup = headers.get(SCHEDULE_ROLLUP)
    if rollup is not None and rollup != "sub":
        raise Refused("message schedules invalid rollup", f"{SCHEDULE_ROLLUP} must be 'sub'")
    return schedule


def fired_headers(
    schedule_subject: str,
    schedule_headers: Mapping[str, str],
    content_headers: Mapping[str, str],
    next_fire: str | None,
) -> dict[str, str]:
    """The headers of a message a schedule publishes: those of its content (the schedule
    message, or the last message on ``Nats-Schedule-Source``) minus the schedule-specific
    ones, plus ``Nats-Scheduler``, ``Nats-Schedule-Next`` (``purge`` for a one-shot schedule),
    and ``Nats-TTL`` / ``Nats-Rollup`` from the schedule's ``Nats-Schedule-TTL`` / ``-Rollup``."""
    out = {
        key: value
        for key, value in content_headers.items()
        if key != SCHEDULE
        and not key.startswith("Nats-Schedule-")
        and not key.startswith("Nats-Expected-")
        and key not in (MSG_ID, TTL, ROLLUP)
    }
    out[SCHEDULER] = schedule_subject
    out[SCHEDULE_NEXT] = next_fire if next_fire is not None else "purge"
    if SCHEDULE_TTL in schedule_headers:
        out[TTL] = schedule_headers[SCHEDULE_TTL].strip()
    if SCHEDULE_ROLLUP in schedule_headers:
        out[ROLLUP] = schedule_headers[SCHEDULE_ROLLUP]
    return out


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
