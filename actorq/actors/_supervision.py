"""The machinery shared by `Supervisor` and `DynamicSupervisor`.

A supervisor is itself an actor: one control loop owns every decision (start, restart, stop,
give up) and reads a control mailbox fed by the child runners ("this child ended") and by
callers (``terminate_child``, ``restart_child``, ``start_child``). Decisions are therefore
taken one at a time, in arrival order, as in an OTP supervisor process.

Shutdown has two flavours. *Graceful*: each child's `StopSignal` fires and it is cancelled when
its `Shutdown` grace runs out. *Hard*: children are cancelled at once. A supervisor asked to
stop by its own parent, or one giving up, shuts down gracefully and can be interrupted by a
cancellation (its parent's grace ran out), which turns the rest hard. A supervisor cancelled
from outside without a stop request (the user cancelled the nursery it runs in) still drains
gracefully, shielded from that cancellation, then lets it proceed: cancelling a tree drains it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Self

import trio

from .._errors import ActorGone, SupervisorGaveUp
from ._child import (
    Child,
    ChildExited,
    ChildInfo,
    ChildState,
    Incarnation,
    request_stop,
    run_incarnation,
)
from ._control import (
    RestartChild,
    StartChild,
    StopRequested,
    SupervisorStatistics,
    TerminateChild,
)
from ._mailbox import ActorRef, Inbox, open_mailbox
from ._policy import ChildSpec, Restart, SupervisorPolicy
from ._stop import StopSignal, current_stop_signal

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._reply import Reply

logger = logging.getLogger("actorq.actors")


class SupervisorBase:
    """Control loop, restart log and shutdown; subclasses choose children and strategy."""

    #: Stop all children at once (dynamic) rather than one by one in reverse order (static).
    _concurrent_shutdown = False

    def __init__(self, name: str, policy: SupervisorPolicy) -> None:
        self.name = name
        self.policy = policy
        self._children: list[Child] = []
        self._control: ActorRef[Any] | None = None
        self._nursery: trio.Nursery | None = None
        self._restart_log: deque[float] = deque()
        self._total_restarts = 0
        self._running = False
        self._stopping = False
        # Set and replaced on every change of a child's state; `wait_child_running` waits on it.
        self._changed = trio.Event()

    # --- hooks for subclasses ---------------------------------------------------------------

    def _initial_children(self) -> list[Child]:
        raise NotImplementedError

    def _affected_by(self, failed: Child) -> list[Child]:
        """Running siblings a restart of ``failed`` stops and restarts, in start order."""
        return []

    def _forget(self, child: Child) -> None:
        """Drop a child that ended for good, if its kind of supervisor does that."""
        if child.spec.restart is Restart.TEMPORARY:
            self._children.remove(child)

    # --- public surface ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the supervisor: ``await nursery.start(supervisor.run)``.

        Starts the children in order, each with ``nursery.start``, then hands the supervisor
        itself to ``task_status.started()``, so ``start`` returns once every child is ready.
        It then restarts children by its policy until it is stopped.

        How it ends:

        - asked to stop by its own supervisor (its `StopSignal`): stops its children by their
          `Shutdown` and returns;
        - cancelled from outside: still stops its children gracefully, shielded from the
          cancellation until each child's grace runs out, then lets the cancellation go on;
          a cancellation after a stop request cancels the remaining children at once;
        - restart intensity exceeded: stops all children, raises `SupervisorGaveUp` whose
          ``__cause__`` is the child's last error.

        A supervisor can be run again after it ended (that is how its parent restarts it);
        children added at run time are not kept across runs.

        Raises:
            Exception: A child failed before calling ``started()``: the supervisor stops the
                children already started (reverse order) and re-raises that error.
            SupervisorGaveUp: Too many restarts within the policy's period.
            RuntimeError: The supervisor is already running.
        """
        if self._control is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        stop = current_stop_signal()
        self._children = self._initial_children()
        self._restart_log.clear()
        self._total_restarts = 0
        self._stopping = False
        failure: BaseException | None = None
        try:
            async with open_mailbox[Any](math.inf, name=f"{self.name} control") as (control, inbox):
                self._control = control
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    failure = await self._supervise(stop, inbox, task_status)
        finally:
            self._control = self._nursery = None
            self._running = False
            for child in self._children:
                child.state, child.value, child.current = ChildState.STOPPED, None, None
            self._bump()
        if failure is not None:
            raise failure

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of the supervisor and its children (see `SupervisorStatistics`)."""
        period = self.policy.period
        horizon = trio.current_time() - period
        return SupervisorStatistics(
            name=self.name,
            strategy=self.policy.strategy,
            intensity=self.policy.intensity,
            period=period,
            children=self.which_children(),
            restarts_in_period=sum(1 for stamp in self._restart_log if stamp > horizon),
            total_restarts=self._total_restarts,
            running=self._running,
            stopping=self._stopping,
        )

    def which_children(self) -> tuple[ChildInfo, ...]:
        """Every child in start order, with its state, started value and restart count."""
        return tuple(child.info() for child in self._children)

    async def wait_child_running(self, id: str) -> object:
        """Wait until the child ``id`` is running; return the value it passed to ``started()``.

        After a restart a child has a new mailbox, so fetch its fresh `ActorRef` this way.
        Waits through restarts, and until the supervisor runs.
        """

        while True:
            for child in self._children:
                if child.id == id and child.state is ChildState.RUNNING:
                    await trio.lowlevel.checkpoint()
                    return child.value
            await self._changed.wait()

    async def terminate_child(self, id: str) -> None:
        """Stop the child ``id`` by its `Shutdown`, without restarting it or its siblings.

        The child stays listed as ``STOPPED`` (a ``TEMPORARY`` child, or any child of a
        `DynamicSupervisor`, is removed). Does not count against the restart intensity.

        Raises:
            KeyError: No such child.
            ActorGone: The supervisor is not running, or is shutting down.
        """
        await self._ask(lambda reply: TerminateChild(id, reply))

    async def restart_child(self, id: str) -> object:
        """Stop the child ``id`` if it is running, start it again, and return its new value.

        Unlike OTP's ``restart_child`` this also restarts a running child. Siblings are not
        touched and the restart intensity is not charged.

        Raises:
            KeyError: No such child.
            Exception: The child failed before calling ``started()`` (it is left stopped).
            ActorGone: The supervisor is not running, or is shutting down.
        """
        return await self._ask(lambda reply: RestartChild(id, reply))

    # --- the control loop -------------------------------------------------------------------

    async def _ask(self, make_request: Callable[[Reply[Any]], object]) -> Any:
        control = self._control
        if control is None or self._stopping:
            raise ActorGone(f"supervisor {self.name!r} is not running")
        return await control.ask(make_request)

    async def _supervise(
        self, stop: StopSignal, inbox: Inbox[Any], task_status: trio.TaskStatus[Self]
    ) -> BaseException | None:
        assert self._nursery is not None
        assert self._control is not None
        watcher = trio.CancelScope()
        try:
            error = await self._start_initial()
            if error is not None:
                return error
            self._running = True
            task_status.started(self)
            self._nursery.start_soon(self._forward_stop, stop, self._control, watcher)
            return await self._loop(inbox)
        except BaseException as exc:
            # A cancellation without a stop request comes from outside (the user cancelled
            # the nursery): drain gracefully, shielded. After a stop request, or on any other
            # error, the grace is over: cancel what is left.
            hard = not isinstance(exc, trio.Cancelled) or stop.is_set() or self._stopping
            with trio.CancelScope(shield=True):
                await self._shutdown(hard=hard)
            raise
        finally:
            watcher.cancel()

    @staticmethod
    async def _forward_stop(
        stop: StopSignal, control: ActorRef[Any], scope: trio.CancelScope
    ) -> None:
        with scope:
            await stop.wait()
            control.send_nowait(StopRequested())

    async def _start_initial(self) -> Exception | None:
        for child in list(self._children):
            error = await self._start(child)
            if error is not None:
                error.add_note(f"while starting child {child.id!r} of supervisor {self.name!r}")
                self._log(
                    logging.ERROR, "child %r failed to start: %r", child.id, error, error=error
                )
                await self._shutdown(hard=False)
                return error
        return None

    async def _loop(self, inbox: Inbox[Any]) -> BaseException | None:
        async for message in inbox:
            if isinstance(message, ChildExited):
                failure = await self._child_exited(message.incarnation)
                if failure is not None:
                    return failure
            elif isinstance(message, StopRequested):
                await self._shutdown(hard=False)
                return None
            else:
                try:
                    result = await self._perform(message)
                except Exception as exc:
                    message.reply.fail(exc)
                else:
                    message.reply.send(result)
        raise AssertionError("the control mailbox never ends while the supervisor runs")

    async def _perform(self, command: object) -> object:
        if isinstance(command, TerminateChild):
            child = self._find(command.id)
            if child.current is not None:
                await self._stop(child.current, hard=False)
            self._forget(child)
            return None
        if isinstance(command, RestartChild):
            child = self._find(command.id)
            if child.current is not None:
                await self._stop(child.current, hard=False)
            error = await self._start(child)
            if error is not None:
                self._forget(child)
                raise error
            return child.value
        if isinstance(command, StartChild):
            return await self._start_new(command.spec)
        raise TypeError(f"unknown supervisor command {command!r}")

    async def _start_new(self, spec: ChildSpec) -> object:
        raise TypeError(f"supervisor {self.name!r} has a fixed set of children")

    # --- children ---------------------------------------------------------------------------

    def _find(self, id: str) -> Child:
        for child in self._children:
            if child.id == id:
                return child
        raise KeyError(f"supervisor {self.name!r} has no child {id!r}")

    def _log(
        self, level: int, message: str, *args: object, error: BaseException | None = None
    ) -> None:
        # The error's traceback goes with the message, as in an OTP crash report.
        logger.log(level, "supervisor %r: " + message, self.name, *args, exc_info=error)

    def _bump(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _start(self, child: Child) -> Exception | None:
        """Start one incarnation of ``child``; return the error if it failed before started()."""
        assert self._nursery is not None
        assert self._control is not None
        inc = Incarnation(child)
        child.current, child.state = inc, ChildState.STARTING
        self._bump()
        try:
            await self._nursery.start(run_incarnation, inc, self._control)
        except Exception as exc:
            return exc
        finally:
            if not inc.started:
                child.current, child.state, child.value = None, ChildState.STOPPED, None
            self._bump()
        return None

    async def _stop(self, inc: Incarnation, *, hard: bool) -> None:
        request_stop(inc, inc.child.spec.shutdown.grace, hard=hard)
        self._bump()
        await inc.done.wait()
        self._ended(inc)

    def _ended(self, inc: Incarnation) -> None:
        child = inc.child
        if child.current is inc:
            child.current, child.state, child.value = None, ChildState.STOPPED, None
            self._bump()
        if inc.error is not None:
            self._log(
                logging.INFO,
                "child %r raised while stopping: %r",
                child.id,
                inc.error,
                error=inc.error,
            )

    async def _shutdown(self, *, hard: bool) -> None:
        """Stop every running child: in reverse start order, or all at once (dynamic)."""
        self._stopping = True
        running = [c.current for c in reversed(self._children) if c.current is not None]
        if self._concurrent_shutdown:
            for inc in running:
                request_stop(inc, inc.child.spec.shutdown.grace, hard=hard)
            self._bump()
            for inc in running:
                await inc.done.wait()
                self._ended(inc)
        else:
            for inc in running:
                await self._stop(inc, hard=hard)

    async def _child_exited(self, inc: Incarnation) -> BaseException | None:
        child = inc.child
        if child.current is not inc:
            return None  # stopped on purpose; already accounted for
        child.current, child.value = None, None
        restart = child.spec.restart
        wanted = restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and inc.crashed)
        if inc.error is not None:
            self._log(logging.ERROR, "child %r crashed: %r", child.id, inc.error, error=inc.error)
        else:
            self._log(logging.INFO, "child %r exited normally", child.id)
        if not wanted:
            child.state = ChildState.STOPPED
            self._forget(child)
            self._bump()
            return None
        return await self._restart(child, inc.error)

    def _restart_allowed(self) -> bool:
        now = trio.current_time()
        log = self._restart_log
        log.append(now)
        while log[0] <= now - self.policy.period:
            log.popleft()
        self._total_restarts += 1
        return len(log) <= self.policy.intensity

    async def _restart(self, failed: Child, cause: Exception | None) -> BaseException | None:
        """Restart ``failed`` and the siblings its strategy names, or give up."""
        while True:
            if not self._restart_allowed():
                return await self._give_up(failed, cause)
            affected = self._affected_by(failed)
            for sibling in reversed(affected):
                if sibling.current is not None:
                    await self._stop(sibling.current, hard=False)
            for sibling in affected:
                if sibling.spec.restart is Restart.TEMPORARY:
                    self._forget(sibling)
                else:
                    sibling.state = ChildState.RESTARTING
            failed.state = ChildState.RESTARTING
            for child in [c for c in self._children if c.state is ChildState.RESTARTING]:
                child.restarts += 1
                self._log(
                    logging.WARNING, "restarting child %r (restart %d)", child.id, child.restarts
                )
                error = await self._start(child)
                if error is not None:
                    self._log(
                        logging.ERROR,
                        "child %r failed to restart: %r",
                        child.id,
                        error,
                        error=error,
                    )
                    child.state = ChildState.RESTARTING
                    failed, cause = child, error
                    break
            else:
                return None

    async def _give_up(self, failed: Child, cause: Exception | None) -> BaseException:
        what = f"{type(cause).__name__}: {cause}" if cause is not None else "a normal exit"
        failure = SupervisorGaveUp(
            f"supervisor {self.name!r} gave up: more than {self.policy.intensity} restarts "
            f"within {self.policy.period} s; the last was child {failed.id!r} after {what}"
        )
        failure.__cause__ = cause
        logger.error("%s", failure)
        await self._shutdown(hard=False)
        return failure
