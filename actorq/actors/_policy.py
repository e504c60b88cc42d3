"""Supervision policies: what to restart, how often, and how to stop a child.

The vocabulary is Erlang/OTP's (``one_for_one``, ``permanent``, ``brutal_kill``, intensity and
period), so the OTP design principles apply as written. Every policy is a frozen attrs value:
build one, share it, and ``attrs.evolve`` it to change a field.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them has to be restarted.

    ``ONE_FOR_ONE``
        Only that child (OTP's default). For independent children.
    ``ONE_FOR_ALL``
        Stop every other running child (reverse start order), then start them all again (start
        order). For children that cannot work without each other.
    ``REST_FOR_ONE``
        Stop the running children started after it (reverse order), then start it and them
        again (start order). For a chain where later children depend on earlier ones.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    """When a child is restarted after it ends.

    ``PERMANENT``
        Always: after a crash and after a normal return (OTP's default).
    ``TRANSIENT``
        Only after a crash (an exception); a normal return ends it for good.
    ``TEMPORARY``
        Never, not even when a sibling's restart stopped it; it is removed once it ends.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


def _check_grace(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"grace must be >= 0 seconds or None, not {value!r}")


@attrs.frozen
class Shutdown:
    """How a supervisor stops a child.

    The supervisor first requests a graceful stop (the child's `StopSignal` fires), waits up to
    ``grace`` seconds for it to return, then cancels it. Build one with `brutal`, `after` or
    `infinity` (OTP's ``brutal_kill``, a timeout, ``infinity``).

    Cancellation in trio is cooperative: a cancelled child still runs its ``finally`` blocks
    and shielded cleanup; nothing is killed mid-instruction.

    Attributes:
        grace: Seconds between the stop request and cancellation; ``0`` cancels at once,
            ``None`` never cancels (waits for the child to return).
    """

    grace: float | None = attrs.field(validator=_check_grace)

    @classmethod
    def brutal(cls) -> Shutdown:
        """Cancel the child at once (OTP ``brutal_kill``)."""
        return cls(0.0)

    @classmethod
    def after(cls, seconds: float) -> Shutdown:
        """Request a stop, wait up to ``seconds`` for the child to return, then cancel it."""
        return cls(float(seconds))

    @classmethod
    def infinity(cls) -> Shutdown:
        """Request a stop and wait however long it takes (for child supervisors).

        A supervisor child needs this to stop its own children in order; any grace shorter
        than theirs could cut that short.
        """
        return cls(None)

    @property
    def is_brutal(self) -> bool:
        """Whether the child is cancelled without a grace period."""
        return self.grace == 0

    def cancel_at(self, requested_at: float) -> float:
        """The trio time at which a child asked to stop at ``requested_at`` is cancelled."""
        return math.inf if self.grace is None else requested_at + self.grace


def _as_tuple(args: Iterable[object]) -> tuple[object, ...]:
    return tuple(args)


def _check_id(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a child id must be a non-empty string, not {value!r}")


@attrs.frozen
class ChildSpec:
    """How to start, restart and stop one child of a supervisor (OTP's child specification).

    ``start`` is a ``run``-shaped callable: the supervisor calls
    ``await start(*args, task_status=status)`` through ``nursery.start``, and the child calls
    ``task_status.started(value)`` once it is ready (typically with its `ActorRef`). The value
    is what `Supervisor.which_children` reports and `Supervisor.wait_child_running` returns.

    Attributes:
        id: Unique among the supervisor's children; names the child in logs and calls.
        start: The child's ``run``; it must accept a ``task_status`` keyword.
        args: Positional arguments for ``start``.
        restart: When the child is restarted (default ``PERMANENT``, as in OTP).
        shutdown: How it is stopped (default ``Shutdown.after(5.0)``, OTP's 5000 ms for
            workers; give child supervisors ``Shutdown.infinity()``).
    """

    id: str = attrs.field(validator=_check_id)
    start: Callable[..., Awaitable[object]]
    args: tuple[object, ...] = attrs.field(default=(), converter=_as_tuple)
    restart: Restart = attrs.field(default=Restart.PERMANENT, kw_only=True)
    shutdown: Shutdown = attrs.field(factory=lambda: Shutdown.after(5.0), kw_only=True)


@attrs.frozen
class SupervisorPolicy:
    """A supervisor's restart strategy and restart intensity.

    If more than ``intensity`` restarts happen within any ``period`` seconds (measured on
    ``trio.current_time()``, so a test clock drives it), the supervisor stops all of its
    children in reverse order and raises `SupervisorGaveUp`, letting its own parent decide.

    Defaults: actorq allows 3 restarts in 5 seconds (as Elixir does); OTP's defaults are
    ``intensity=1, period=5``. Mind that nested supervisors multiply: a child supervisor that
    allows 3 restarts under a parent that allows 3 means up to 16 starts of a grandchild before
    the parent gives up.

    Attributes:
        strategy: Which children a restart affects (default ``ONE_FOR_ONE``).
        intensity: Restarts allowed within ``period`` (``0``: the first crash gives up).
        period: The sliding window, in seconds.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    period: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
