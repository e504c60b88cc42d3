"""What flows into a supervisor's control loop, and what comes out of it as statistics.

Callers reach the loop only through these commands, each carrying a `Reply`, so every decision
about children is taken by the loop itself, one at a time (see `_supervision`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._child import ChildInfo
    from ._policy import ChildSpec, Strategy
    from ._reply import Reply


@attrs.frozen
class SupervisorStatistics:
    """A snapshot of a supervisor, from `Supervisor.statistics`.

    Attributes:
        name: The supervisor's name.
        strategy: Its restart strategy.
        intensity: Restarts allowed within ``period``.
        period: The restart-intensity window, in seconds.
        children: Every child, in start order.
        restarts_in_period: Restarts counted against the intensity right now.
        total_restarts: Restarts since the supervisor (last) started.
        running: Whether the supervisor is running (between ``started()`` and its end).
        stopping: Whether it is shutting down (it restarts nothing any more).
    """

    name: str
    strategy: Strategy
    intensity: int
    period: float
    children: tuple[ChildInfo, ...]
    restarts_in_period: int
    total_restarts: int
    running: bool
    stopping: bool


# --- commands (each answered through its reply) -------------------------------------------


@attrs.frozen
class TerminateChild:
    id: str
    reply: Reply[None]


@attrs.frozen
class RestartChild:
    id: str
    reply: Reply[object]


@attrs.frozen
class StartChild:
    spec: ChildSpec
    reply: Reply[object]


@attrs.frozen
class StopRequested:
    pass
