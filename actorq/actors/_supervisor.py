"""`Supervisor`: a fixed, ordered set of children restarted by an OTP strategy.

The children are declared up front as `ChildSpec` values, started in that order and stopped in
reverse order. When one ends and its restart type says it must be restarted, the strategy
names the siblings that go with it: none (``one_for_one``), all (``one_for_all``) or the ones
started after it (``rest_for_one``). The control loop itself lives in `_supervision`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._child import Child
from ._policy import ChildSpec, Strategy, SupervisorPolicy
from ._supervision import SupervisorBase

if TYPE_CHECKING:
    from collections.abc import Iterable


class Supervisor(SupervisorBase):
    """Starts, watches, restarts and stops a fixed list of child actors (an OTP supervisor).

    Run it from any nursery: ``sup = await nursery.start(Supervisor("app", specs).run)``;
    ``start`` returns once every child has called ``task_status.started()``. A supervisor can
    be the child of another one (give it ``shutdown=Shutdown.infinity()``). See `run` for how it
    ends, and `SupervisorPolicy` for strategies and restart intensity.

    Example::

        sup = Supervisor(
            "app",
            [ChildSpec("db", db.run), ChildSpec("api", api.run, restart=Restart.TRANSIENT)],
            policy=SupervisorPolicy(strategy=Strategy.REST_FOR_ONE),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            api_ref = await sup.wait_child_running("api")

    Args:
        name: For logs, statistics and errors.
        children: The child specifications, in start order; ids must be unique.
        policy: Strategy and restart intensity (default: one_for_one, 3 restarts in 5 s).

    Raises:
        ValueError: Two children share an id.
    """

    def __init__(
        self,
        name: str,
        children: Iterable[ChildSpec],
        *,
        policy: SupervisorPolicy = SupervisorPolicy(),  # noqa: B008 - frozen value
    ) -> None:
        super().__init__(name, policy)
        self._specs = tuple(children)
        ids = [spec.id for spec in self._specs]
        duplicates = sorted({id for id in ids if ids.count(id) > 1})
        if duplicates:
            raise ValueError(f"supervisor {name!r}: duplicate child ids {duplicates}")

    @property
    def specs(self) -> tuple[ChildSpec, ...]:
        """The child specifications, in start order."""
        return self._specs

    def _initial_children(self) -> list[Child]:
        return [Child(spec) for spec in self._specs]

    def _affected_by(self, failed: Child) -> list[Child]:
        strategy = self.policy.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return []
        if strategy is Strategy.ONE_FOR_ALL:
            return [c for c in self._children if c is not failed and c.running]
        later = self._children[self._children.index(failed) + 1 :]
        return [c for c in later if c.running]

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.policy.strategy.value}>"
