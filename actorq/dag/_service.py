"""The DAG parts of a Worker: the step-outcome hook, ``current_dag`` and the scheduler.

A Worker builds one `WorkerDags` and uses three things from it: `outcomes` (its Executor's
step hook, always on, so any worker can run DAG steps), `children` (the LeaderElector and the
DagScheduler, added to its supervisor tree when the worker schedules), and `install` (makes
``current_dag()`` work in the tasks it runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..actors import ChildSpec, Shutdown
from ._scheduler import SCHEDULER_ROLE, DagScheduler
from ._settings import DagSettings
from ._state import DagStore
from ._steps import DagRuntime, StepOutcomes, install_runtime

if TYPE_CHECKING:
    from .._client import Client


class WorkerDags:
    """What a worker needs to run DAG steps and, optionally, to schedule DAG runs."""

    def __init__(self, client: Client, worker_id: str, settings: DagSettings | bool = True) -> None:
        if isinstance(settings, bool):
            settings = DagSettings(schedule=settings)
        if not isinstance(settings, DagSettings):
            raise TypeError(f"dags must be a bool or an actorq.DagSettings, got {settings!r}")
        self.settings = settings
        app = client.app
        self.store = DagStore(client.broker, app.layout)
        self.outcomes = StepOutcomes(self.store, worker_id=worker_id)
        self._runtime = DagRuntime(self.store, app)
        self.scheduler: DagScheduler | None = None
        self._children: list[ChildSpec] = []
        if settings.schedule:
            elector = client.leader(SCHEDULER_ROLE, ttl=settings.leader_ttl, holder=worker_id)
            self.scheduler = DagScheduler(self.store, elector, settings)
            self._children = [
                ChildSpec("dag-leader", elector.run, shutdown=Shutdown.after(6.0)),
                ChildSpec("dag-scheduler", self.scheduler.run, shutdown=Shutdown.after(5.0)),
            ]

    def children(self) -> list[ChildSpec]:
        """Child specs for the worker's supervisor (none when it does not schedule)."""
        return list(self._children)

    def install(self) -> None:
        """Let the tasks started from the calling task use ``current_dag()``."""
        install_runtime(self._runtime)
