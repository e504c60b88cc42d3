"""Task options: everything about *how* a task is enqueued and run, never *what* it gets.

Options are a frozen attrs class, validated when they are set (``task.options(...)`` raises
at the call site, not on a worker), and travel to workers as message headers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import attrs

from ._names import validate_queue, validate_step_id
from ._retry import RetryPolicy
from .kv._ratelimit import parse_rate

PRIORITY_LEVELS = 4
"""Priorities run from 0 (the default) to 3 (the most urgent)."""


def _optional_seconds(name: str) -> Callable[[Any, Any, float | None], None]:
    def check(instance: Any, attribute: Any, value: float | None) -> None:
        if value is not None and not (
            isinstance(value, int | float) and value > 0 and math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")

    return check


def _aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None:
        raise ValueError(
            f"{name} must be timezone-aware (e.g. datetime.now(UTC) + timedelta(...)), got"
            f" {value!r}"
        )


def _check_delay(instance: Any, attribute: Any, value: float | dt.timedelta | None) -> None:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if seconds is not None and not (
        isinstance(seconds, int | float) and seconds >= 0 and math.isfinite(seconds)
    ):
        raise ValueError(f"delay must be seconds >= 0 or a timedelta, got {value!r}")


def _check_at(instance: Any, attribute: Any, value: dt.datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime):
        raise ValueError(f"at must be a timezone-aware datetime, got {value!r}")
    _aware("at", value)


def _check_key(instance: Any, attribute: Any, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > 256 or not value.isprintable():
        raise ValueError(
            f"{attribute.name} must be a non-empty printable string of at most 256 characters,"
            f" got {value!r}"
        )


def _check_rate(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None:
        parse_rate(value)  # raises ValueError naming the bad rate


def _check_priority(instance: Any, attribute: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < PRIORITY_LEVELS:
        raise ValueError(
            f"priority must be an int from 0 (default) to {PRIORITY_LEVELS - 1} (most urgent),"
            f" got {value!r}"
        )


def _check_deadline(
    instance: Any, attribute: Any, value: dt.datetime | dt.timedelta | None
) -> None:
    if isinstance(value, dt.datetime):
        _aware("deadline", value)
    if value is not None and not isinstance(value, dt.datetime | dt.timedelta):
        raise ValueError(f"deadline must be a datetime or a timedelta, got {value!r}")


def _check_step_id(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None:
        validate_step_id(value)


def _step_refs(value: Any) -> tuple[Any, ...]:
    """``after``/``after_any``: one step or several, each a step handle or a step id."""
    items = (value,) if isinstance(value, str) or _is_step(value) else tuple(value)
    for item in items:
        if isinstance(item, str):
            validate_step_id(item)
        elif not _is_step(item):
            raise ValueError(
                f"after/after_any take steps (from dag.step(...)) or step ids, got {item!r}"
            )
    return items


def _is_step(value: Any) -> bool:
    # A step handle of actorq.dag (not imported here: the DAG layer builds on tasks).
    return isinstance(getattr(value, "id", None), str) and callable(
        getattr(value, "or_default", None)
    )


DAG_OPTIONS = ("step_id", "optional", "after", "after_any")
"""Options that only mean something for a step of a DAG (``dag.step(task.options(...))``)."""


@attrs.frozen(kw_only=True)
class TaskOptions:
    """How a task is enqueued and run. Change them with ``task.options(...)``.

    Attributes:
        queue: The queue (and so the workers) the task goes to.
        retry: Retry policy; None uses the app's default.
        timeout: Seconds one attempt may run before it is cancelled (kind ``timeout``).
        deadline: An aware datetime after which the task fails without running (kind
            ``deadline``), or a timedelta counted from the moment it is enqueued.
        store_result: Keep the result in the results stream so late awaiters and other
            processes can read it; False sends it only to live awaiters.
        result_ttl: Seconds a stored result is kept; None uses the app's default.
        delay: Run no sooner than this many seconds (or this timedelta) after enqueue; the
            NATS server holds the task meanwhile (a schedule), not the worker.
        at: Run no sooner than this aware datetime (exclusive with ``delay``).
        dedupe_key: Enqueues with the same key inside the app's dedupe window (2 minutes)
            are stored once; they all get the same task id and so the same result.
        idempotency_key: Like ``dedupe_key``, and beyond the window too: a task whose key
            already succeeded is not run again; its first result is returned (kept for the
            app's ``idempotency_ttl``).
        priority: 0 (default) to 3: a worker takes higher priorities first, without starving
            lower ones.
        concurrency_key: At most ``concurrency_limit`` tasks with this key run at once,
            across all workers (a held slot is released by TTL if its worker crashes).
        concurrency_limit: See ``concurrency_key``.
        rate_limit: At most this many starts of the task per period across all workers,
            e.g. ``"100/s"``, ``"20/m"``, ``"5/h"`` (a sliding window in KV; tasks over the
            limit wait for their turn without holding a worker slot).
        step_id: In a DAG: the step's id (default: the task's name, then ``-2``, ``-3``...).
        optional: In a DAG: the step's failure does not fail the run.
        after: In a DAG: steps (or step ids) this step runs after, without their results; it
            is skipped if one of them fails or is skipped.
        after_any: In a DAG: steps this step runs after whatever their outcome.
    """

    queue: str = attrs.field(default="default", converter=validate_queue)
    retry: RetryPolicy | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(RetryPolicy))
    )
    timeout: float | None = attrs.field(default=None, validator=_optional_seconds("timeout"))
    deadline: dt.datetime | dt.timedelta | None = attrs.field(
        default=None, validator=_check_deadline
    )
    store_result: bool = True
    result_ttl: float | None = attrs.field(default=None, validator=_optional_seconds("result_ttl"))
    delay: float | dt.timedelta | None = attrs.field(default=None, validator=_check_delay)
    at: dt.datetime | None = attrs.field(default=None, validator=_check_at)
    dedupe_key: str | None = attrs.field(default=None, validator=_check_key)
    idempotency_key: str | None = attrs.field(default=None, validator=_check_key)
    priority: int = attrs.field(default=0, validator=_check_priority)
    concurrency_key: str | None = attrs.field(default=None, validator=_check_key)
    concurrency_limit: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    rate_limit: str | None = attrs.field(default=None, validator=_check_rate)
    step_id: str | None = attrs.field(default=None, validator=_check_step_id)
    optional: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    after: tuple[Any, ...] = attrs.field(default=(), converter=_step_refs)
    after_any: tuple[Any, ...] = attrs.field(default=(), converter=_step_refs)

    def __attrs_post_init__(self) -> None:
        if self.delay is not None and self.at is not None:
            raise ValueError("give either delay or at, not both")

    def dag_options(self) -> list[str]:
        """The DAG-only options (see `DAG_OPTIONS`) set to something other than their default."""
        defaults = _DAG_DEFAULTS
        return [name for name in DAG_OPTIONS if getattr(self, name) != defaults[name]]

    def without_dag_options(self) -> TaskOptions:
        """These options with every DAG-only option back at its default."""
        return attrs.evolve(self, **_DAG_DEFAULTS)

    def run_at(self, now: float) -> float | None:
        """When a task enqueued at ``now`` may run (None: at once)."""
        if self.at is not None:
            when = self.at.timestamp()
        elif self.delay is not None:
            seconds = (
                self.delay.total_seconds() if isinstance(self.delay, dt.timedelta) else self.delay
            )
            when = now + seconds
        else:
            return None
        return when if when > now else None


OPTION_NAMES = frozenset(a.name for a in attrs.fields(TaskOptions))
_DAG_DEFAULTS: dict[str, Any] = {name: getattr(TaskOptions(), name) for name in DAG_OPTIONS}


def evolve_options(options: TaskOptions, changes: dict[str, Any]) -> TaskOptions:
    unknown = sorted(set(changes) - OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown task option(s) {', '.join(map(repr, unknown))}; valid options are"
            f" {', '.join(sorted(OPTION_NAMES))}"
        )
    return attrs.evolve(options, **changes)
