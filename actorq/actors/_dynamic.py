"""`DynamicSupervisor`: children added at run time (OTP's ``simple_one_for_one``).

For populations that come and go: task slots, one actor per live DAG run, a user's sessions.
Each child is restarted on its own (``one_for_one``) by its restart type; a child that ends for
good is removed. On shutdown all children are asked to stop at once and waited for together,
so N draining children take one grace period, not N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._child import Child
from ._control import StartChild
from ._policy import ChildSpec, Strategy, SupervisorPolicy
from ._supervision import SupervisorBase

if TYPE_CHECKING:
    from ._reply import Reply


class DynamicSupervisor(SupervisorBase):
    """A supervisor that starts with no children and gets them from `start_child`.

    Restart types and intensity work as in `Supervisor`; the strategy is always
    ``ONE_FOR_ONE``. Children that end without being restarted (a ``TEMPORARY`` child, a
    ``TRANSIENT`` one that returned, a terminated one) are removed. Children are lost when the
    supervisor itself restarts, as in OTP.

    Example::

        slots = DynamicSupervisor("slots")
        await nursery.start(slots.run)
        ref = await slots.start_child(ChildSpec("slot-1", Slot().run))

    Args:
        name: For logs, statistics and errors.
        policy: Restart intensity (the strategy must be ``ONE_FOR_ONE``).

    Raises:
        ValueError: The policy names another strategy.
    """

    _concurrent_shutdown = True

    def __init__(
        self,
        name: str,
        *,
        policy: SupervisorPolicy = SupervisorPolicy(),  # noqa: B008 - frozen value
    ) -> None:
        if policy.strategy is not Strategy.ONE_FOR_ONE:
            raise ValueError("a DynamicSupervisor restarts children one_for_one only")
        super().__init__(name, policy)

    async def start_child(self, spec: ChildSpec) -> object:
        """Start a new child and return the value it passed to ``task_status.started()``.

        Returns once the child is running. A child that fails before ``started()`` makes this
        call raise its error; the supervisor and its other children are not affected and the
        restart intensity is not charged.

        Raises:
            ValueError: A child with the same id is already supervised.
            Exception: The child's own error before ``started()``.
            ActorGone: The supervisor is not running, or is shutting down.
        """

        def request(reply: Reply[Any]) -> StartChild:
            return StartChild(spec, reply)

        return await self._ask(request)

    def _initial_children(self) -> list[Child]:
        return []

    def _forget(self, child: Child) -> None:
        if child in self._children:
            self._children.remove(child)

    async def _start_new(self, spec: ChildSpec) -> object:
        if any(child.id == spec.id for child in self._children):
            raise ValueError(f"supervisor {self.name!r} already has a child {spec.id!r}")
        child = Child(spec)
        self._children.append(child)
        error = await self._start(child)
        if error is not None:
            self._forget(child)
            raise error
        return child.value

    def __repr__(self) -> str:
        return f"<DynamicSupervisor {self.name!r}>"
