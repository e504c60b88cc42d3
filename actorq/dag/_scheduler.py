"""`DagScheduler`: the app's one DAG scheduler, gated by leader election.

Every worker with ``DagSettings.schedule`` runs a LeaderElector for the role ``dags`` and a
DagScheduler beside it. The scheduler idles until its elector leads; then it supervises one
`DagActor` per live run (a DynamicSupervisor: an actor that crashes is restarted, one whose
run ended is gone) and watches the runs' meta records (``*.meta``): the watch's snapshot is
the sweep on gaining leadership (every live run gets its actor, which reads the run and
dispatches whatever became ready while no one led), its live part brings new runs. Every
``sweep_interval`` it takes a fresh snapshot, so a run whose news was lost still gets its
actor. When the elector stops leading, the actors are stopped at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .._errors import BrokerError
from ..actors import (
    ChildSpec,
    DynamicSupervisor,
    Restart,
    Shutdown,
    SupervisorPolicy,
    current_stop_signal,
)
from ..broker import CaughtUp, KvOperation
from ._actor import DagActor, SchedulerContext
from ._model import LIVE_RUN, RunInfo, decode

if TYPE_CHECKING:
    from ..actors._leader import LeaderElector
    from ._settings import DagSettings
    from ._state import DagStore

logger = logging.getLogger("actorq.dag")

SCHEDULER_ROLE = "dags"
"""The leadership role of the app's DAG scheduler (a key of the app's leaders bucket)."""
RETRY_DELAY = 1.0


class DagScheduler:
    """Follows every live DAG run of an app while its elector leads (see the module docstring).

    Args:
        store: The app's DAG bucket.
        elector: The candidate whose leadership gates this scheduler (started separately).
        settings: Sweep interval and phantom detection.
    """

    def __init__(self, store: DagStore, elector: LeaderElector, settings: DagSettings) -> None:
        self.context = SchedulerContext(store, elector, settings)
        self.elector = elector
        self.sweeps = 0
        """Snapshots of the live runs taken while leading (one on every gain, then periodic)."""

    def __repr__(self) -> str:
        return f"<DagScheduler leading={self.elector.is_leader.value}>"

    async def run(
        self, *, task_status: trio.TaskStatus[DagScheduler] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Lead while elected, idle otherwise, until stopped."""
        task_status.started(self)
        with current_stop_signal().move_on():
            while True:
                await self.elector.is_leader.wait_value(True)
                try:
                    await self._lead()
                except Exception:
                    # Contained here: the worker's other actors must not restart for it.
                    logger.exception("DAG scheduler failed; leading again in %ss", RETRY_DELAY)
                    await trio.sleep(RETRY_DELAY)

    async def _lead(self) -> None:
        actors = DynamicSupervisor("dag-runs", policy=SupervisorPolicy(intensity=100, period=10.0))
        logger.info("DAG scheduler leading (token %s)", self.elector.token)
        async with trio.open_nursery() as nursery:
            await nursery.start(actors.run)
            nursery.start_soon(self._discover, actors)
            await self.elector.is_leader.wait_value(False)
            nursery.cancel_scope.cancel()
        logger.info("DAG scheduler no longer leading; its run actors stopped")

    async def _discover(self, actors: DynamicSupervisor) -> None:
        store = self.context.store
        interval = self.context.settings.sweep_interval
        while True:
            try:
                async with store.watch("*.meta") as events:
                    self.sweeps += 1
                    with trio.move_on_after(interval):
                        async for event in events:
                            if (
                                isinstance(event, CaughtUp)
                                or event.operation is not KvOperation.PUT
                            ):
                                continue
                            try:
                                meta = decode(event.key, event.value)
                            except ValueError as exc:
                                logger.warning("DAG scheduler skips %s: %s", event.key, exc)
                                continue
                            if isinstance(meta, RunInfo) and meta.status in LIVE_RUN:
                                await self._ensure_actor(actors, meta.id)
            except BrokerError as exc:
                logger.warning("DAG scheduler: watching runs failed, again in %ss: %s",
                               RETRY_DELAY, exc)  # fmt: skip
                await trio.sleep(RETRY_DELAY)

    async def _ensure_actor(self, actors: DynamicSupervisor, run_id: str) -> None:
        actor = DagActor(self.context, run_id)
        spec = ChildSpec(
            f"run:{run_id}", actor.run, restart=Restart.TRANSIENT, shutdown=Shutdown.after(2.0)
        )
        try:
            await actors.start_child(spec)
        except ValueError:
            pass  # it has its actor already
