"""Periodic tasks: schedules the NATS server fires, so there is no beat process to run.

``app.periodic("0 */5 * * * *", task, *args)`` registers a task to run on a cron or ``@every``
schedule. Workers install it at start as one schedule message on its own subject
(``actorq.<ns>.sched.periodic.<id>``); the server publishes the task's message onto the task
subject at every tick, and the queue's consumer hands each tick to exactly one worker —
however many workers run. Installing is idempotent; the schedule stays until removed
(``client.remove_periodic(id)``), and a worker of an app that still registers it puts it back.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import attrs

from ._names import Layout
from ._wire import H_ID, H_TASK, task_headers
from .broker import SCHEDULE, SCHEDULE_TARGET, Message, StoredMessage
from .broker._schedule import parse_schedule

if TYPE_CHECKING:
    from ._task import Task

H_PERIODIC = "Actorq-Periodic"
"""On a message fired by a periodic schedule: the schedule's id (each tick gets its own
task id, derived from it and the message's stream sequence)."""
TIME_ZONE = "Nats-Schedule-Time-Zone"


@attrs.frozen
class Schedule:
    """A recurring schedule: a six-field cron expression (``sec min hour dom month dow``),
    ``@every <duration>`` or an alias (``@hourly``, ``@daily``, ...), with an optional IANA
    time zone for cron expressions (default UTC).

    Raises:
        ValueError: an expression or time zone the NATS server would refuse (the message
            names it and the problem), or a one-shot ``@at`` (use the ``at`` task option).
    """

    expression: str
    time_zone: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.expression.strip().startswith("@at"):
            raise ValueError(
                f"{self.expression!r} fires once; for a one-shot task use"
                " task.options(at=...) or task.options(delay=...)"
            )
        parse_schedule(self.expression, self.time_zone, now=time.time())


@attrs.frozen
class Periodic:
    """A task registered to run on a `Schedule` (see ``App.periodic``)."""

    id: str
    schedule: Schedule
    task: Task[Any, Any]
    payload: bytes = attrs.field(repr=False)

    def message(self, layout: Layout, *, now: float) -> Message:
        """The schedule message that makes the server fire this task."""
        task = self.task
        headers = task_headers(task, self.id, now=now)
        headers[H_PERIODIC] = self.id
        headers[SCHEDULE] = self.schedule.expression
        if self.schedule.time_zone:
            headers[TIME_ZONE] = self.schedule.time_zone
        headers[SCHEDULE_TARGET] = layout.task_subject(
            task.settings.queue, task.name, task.settings.priority
        )
        return Message(layout.periodic_subject(self.id), self.payload, headers)


@attrs.frozen
class PeriodicInfo:
    """An installed periodic schedule, as stored on the server."""

    id: str
    task: str
    schedule: str
    time_zone: str | None
    target: str

    @classmethod
    def of(cls, stored: StoredMessage) -> PeriodicInfo:
        headers = stored.headers
        return cls(
            id=headers.get(H_PERIODIC, stored.subject.rsplit(".", 1)[-1]),
            task=headers.get(H_TASK, ""),
            schedule=headers.get(SCHEDULE, ""),
            time_zone=headers.get(TIME_ZONE),
            target=headers.get(SCHEDULE_TARGET, ""),
        )


def make_periodic(schedule: str | Schedule, task: Task[Any, Any], payload: bytes) -> Periodic:
    if isinstance(schedule, str):
        schedule = Schedule(schedule)
    digest = hashlib.sha256(
        b"\x00".join(
            (
                task.name.encode(),
                schedule.expression.encode(),
                (schedule.time_zone or "").encode(),
                payload,
            )
        )
    ).hexdigest()
    return Periodic(id=digest[:32], schedule=schedule, task=task, payload=payload)


def same_schedule(stored_headers: dict[str, str], stored_data: bytes, wanted: Message) -> bool:
    """Whether a stored schedule message already says what ``wanted`` says."""
    keys = (SCHEDULE, SCHEDULE_TARGET, TIME_ZONE, H_ID, H_PERIODIC)
    return stored_data == wanted.data and all(
        stored_headers.get(k) == wanted.headers.get(k) for k in keys
    )
