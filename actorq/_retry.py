"""Retry policies and the two exceptions a handler raises to steer its own retries.

A failed attempt is retried while the task's `RetryPolicy` allows it; the delay before the next
attempt comes from its `Backoff`. Attempts are counted durably (JetStream's delivery count plus
the attempts carried in the message), so a crash counts as an attempt and a poison message still
reaches the dead-letter queue after restarts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import attrs

from ._errors import ActorqError


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen
class Backoff:
    """How long to wait before retry number *n* (1 = the retry after the first attempt).

    Build one with `Backoff.constant`, `Backoff.exponential` or `Backoff.sequence`.
    """

    base: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    cap: float | None = attrs.field(default=60.0)
    jitter: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    """Fraction of the delay drawn at random and subtracted (0.1 = up to 10% earlier), so many
    tasks failing together do not retry in lockstep."""
    steps: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    """Explicit delays for the first retries; after the last one, it repeats."""

    @cap.validator
    def _check_cap(self, attribute: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"cap must be a finite number >= 0 or None, got {value!r}")

    @steps.validator
    def _check_steps(
        self, attribute: attrs.Attribute[tuple[float, ...]], value: tuple[float, ...]
    ) -> None:
        for step in value:
            if not (step >= 0 and math.isfinite(step)):
                raise ValueError(f"backoff steps must be finite numbers >= 0, got {value!r}")

    @classmethod
    def constant(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        """The same delay before every retry."""
        return cls(base=delay, factor=1.0, cap=None, jitter=jitter)

    @classmethod
    def exponential(
        cls, base: float, *, factor: float = 2.0, cap: float | None = 60.0, jitter: float = 0.0
    ) -> Backoff:
        """``base``, ``base * factor``, ``base * factor**2`` ... up to ``cap`` seconds."""
        return cls(base=base, factor=factor, cap=cap, jitter=jitter)

    @classmethod
    def sequence(cls, delays: Sequence[float], *, jitter: float = 0.0) -> Backoff:
        """The given delays in order; the last one repeats."""
        if not delays:
            raise ValueError("Backoff.sequence needs at least one delay")
        return cls(base=delays[-1], factor=1.0, cap=None, jitter=jitter, steps=tuple(delays))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (>= 1)."""
        if retry < 1:
            return 0.0
        if self.steps:
            raw = self.steps[min(retry, len(self.steps)) - 1]
        else:
            # factor ** (retry - 1) overflows for absurd retry counts; the cap still applies.
            try:
                raw = self.base * self.factor ** (retry - 1)
            except OverflowError:
                raw = math.inf
            if self.cap is not None:
                raw = min(raw, self.cap)
            if not math.isfinite(raw):
                raw = self.cap if self.cap is not None else 365 * 24 * 3600.0
        if self.jitter:
            raw -= raw * self.jitter * random.random()
        return raw


@attrs.frozen
class RetryPolicy:
    """When a failed task is tried again, and after how long.

    Args:
        max_attempts: Total attempts including the first (1 = never retry); None = unlimited.
        backoff: Delay before each retry.
        non_retryable: Exception types that fail the task at once, whatever the attempt.
    """

    max_attempts: int | None = attrs.field(default=5)
    backoff: Backoff = attrs.field(factory=lambda: Backoff.exponential(1.0, cap=60.0))
    non_retryable: tuple[type[BaseException] | str, ...] = attrs.field(default=(), converter=tuple)
    """Exception types, or their qualified names (``"myapp.errors.Invalid"``), that fail the
    task at once; names also match subclasses, and survive the trip to a worker."""

    @max_attempts.validator
    def _check_max_attempts(
        self, attribute: attrs.Attribute[int | None], value: int | None
    ) -> None:
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {value!r}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt only."""
        return cls(max_attempts=1)

    def allows_retry(self, attempt: int, error: BaseException | None = None) -> bool:
        """May attempt number ``attempt`` (which just failed with ``error``) be retried?"""
        if error is not None and self.is_non_retryable(error):
            return False
        return self.max_attempts is None or attempt < self.max_attempts

    def is_non_retryable(self, error: BaseException) -> bool:
        if not self.non_retryable:
            return False
        names = {qualified_name(cls) for cls in type(error).__mro__}
        return any(
            (entry in names) if isinstance(entry, str) else isinstance(error, entry)
            for entry in self.non_retryable
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` failed."""
        return self.backoff.delay(attempt)


DEFAULT_RETRY = RetryPolicy()


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class; builtins are named without their module."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Retry(ActorqError):
    """Raised by a handler to ask for another attempt after ``delay`` seconds.

    The attempt counts like any failed one, so the task's ``max_attempts`` still bounds it;
    ``delay=None`` uses the policy's backoff.
    """

    def __init__(self, delay: float | None = None, *, reason: str = "") -> None:
        if delay is not None and not (delay >= 0 and math.isfinite(delay)):
            raise ValueError(f"Retry delay must be a finite number >= 0, got {delay!r}")
        super().__init__(reason or (f"retry requested in {delay}s" if delay else "retry requested"))
        self.delay = delay
        self.reason = reason


class NoRetry(ActorqError):
    """Raised by a handler (``raise NoRetry(exc)``) to fail the task at once, without retries."""

    def __init__(self, error: BaseException | str) -> None:
        super().__init__(str(error))
        self.error = error
