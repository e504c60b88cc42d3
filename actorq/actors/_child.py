"""One supervised child: its record, the runner task around it, and how it is stopped.

The runner is what makes a trio nursery behave like an OTP supervisor. Each run of a child
(an *incarnation*) lives in its own cancel scope inside a runner task of the supervisor's
nursery. The runner turns the child's outcome into a report on the supervisor's control
mailbox instead of letting an exception cancel the nursery, so one crash does not cancel the
siblings. Once the child has called ``task_status.started()`` its scope is shielded: a
cancellation from outside the supervisor no longer reaches it directly, and only the supervisor
decides when it is asked to stop and when it is cancelled.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._stop import StopSignal, set_stop_signal

if TYPE_CHECKING:
    from ._mailbox import ActorRef
    from ._policy import ChildSpec, Restart


class ChildState(enum.Enum):
    """Where a supervised child is in its life.

    ``STARTING``: its ``start`` runs and has not called ``started()`` yet.
    ``RUNNING``: it has called ``started()``.
    ``STOPPING``: a stop was requested; it is draining or being cancelled.
    ``RESTARTING``: stopped by a restart in progress, waiting for its turn to start again.
    ``STOPPED``: not running and not going to be restarted (it returned as its restart type
    allows, was terminated with `Supervisor.terminate_child`, or failed to start).
    """

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@attrs.frozen
class ChildInfo:
    """A snapshot of one child, from `Supervisor.which_children` and `statistics`.

    Attributes:
        id: The child's id from its `ChildSpec`.
        state: Where it is in its life.
        restart: Its restart type.
        value: What it passed to ``task_status.started()`` (usually its `ActorRef`), or None
            when it is not running.
        restarts: How many times the supervisor has restarted it.
    """

    id: str
    state: ChildState
    restart: Restart
    value: object
    restarts: int


@attrs.define(eq=False)
class Incarnation:
    """One run of a child, from ``start`` to its end."""

    child: Child
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stop: StopSignal = attrs.field(factory=StopSignal)
    done: trio.Event = attrs.field(factory=trio.Event)
    started: bool = False
    error: Exception | None = None

    @property
    def crashed(self) -> bool:
        return self.error is not None


@attrs.define(eq=False)
class Child:
    """A supervisor's record of one child across its restarts."""

    spec: ChildSpec
    state: ChildState = ChildState.STOPPED
    value: object = None
    restarts: int = 0
    current: Incarnation | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def running(self) -> bool:
        return self.current is not None

    def info(self) -> ChildInfo:
        return ChildInfo(self.id, self.state, self.spec.restart, self.value, self.restarts)


@attrs.frozen
class ChildExited:
    """Control message: an incarnation ended after it had started."""

    incarnation: Incarnation


@attrs.define(eq=False)
class _ChildTaskStatus:
    """The ``task_status`` a child sees: shields the child and records its value on started()."""

    incarnation: Incarnation
    outer: trio.TaskStatus[Any]

    def started(self, value: object = None) -> None:
        inc = self.incarnation
        if inc.started:
            raise RuntimeError("called 'started' twice on the same task status")
        inc.started = True
        # From here on only the supervisor stops this child (graceful stop, then cancel).
        inc.scope.shield = True
        inc.child.state = ChildState.RUNNING
        inc.child.value = value
        self.outer.started(value)


async def run_incarnation(
    inc: Incarnation,
    control: ActorRef[Any],
    *,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one incarnation and report how it ended on the supervisor's ``control`` mailbox.

    An exception before ``started()`` is re-raised, so the supervisor's ``nursery.start``
    raises it (a failed start). After ``started()``, a return is a normal exit and an
    `Exception` (including an `ExceptionGroup` from the child's own nursery) a crash; both are
    reported, never raised. `trio.Cancelled` from outside and other `BaseException`s propagate.
    """
    spec = inc.child.spec
    set_stop_signal(inc.stop)
    try:
        with inc.scope:
            await spec.start(*spec.args, task_status=_ChildTaskStatus(inc, task_status))
    except Exception as exc:
        if not inc.started:
            raise
        inc.error = exc
    finally:
        inc.done.set()
    if inc.started:
        control.send_nowait(ChildExited(inc))


def request_stop(inc: Incarnation, grace: float | None, *, hard: bool) -> None:
    """Ask an incarnation to stop and arrange its cancellation when its grace runs out.

    The deadline goes on the child's own cancel scope, so trio cancels it on time even while
    the supervisor waits for something else; ``hard`` cancels at once (after a grace ran out,
    or for ``Shutdown.brutal``).
    """
    if inc.done.is_set():
        return
    inc.child.state = ChildState.STOPPING
    now = trio.current_time()
    if hard or grace == 0:
        inc.stop._request(now)
        inc.scope.cancel()
    elif grace is not None:
        inc.stop._request(now + grace)
        inc.scope.deadline = min(inc.scope.deadline, now + grace)
    else:
        inc.stop._request(inc.scope.deadline)
