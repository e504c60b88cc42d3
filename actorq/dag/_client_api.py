"""The DAG methods of a `Client` (mixed into `actorq.Client`): submit runs, reach them by id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..broker import CaughtUp, KvOperation
from ._control import submit_run
from ._model import RunInfo, decode
from ._run import DagRun
from ._state import DagStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._app import App
    from ..broker import Broker
    from ._builder import DAG


class DagApi:
    """Methods of `actorq.Client` for DAG workflows."""

    app: App
    broker: Broker

    @property
    def _dags(self) -> DagStore:
        store: DagStore | None = self.__dict__.get("_dag_store")
        if store is None:
            store = DagStore(self.broker, self.app.layout)
            self.__dict__["_dag_store"] = store
        return store

    async def submit(self, dag: DAG, *, breakpoints: Iterable[str] = ()) -> DagRun:
        """Start a run of ``dag``; returns once its records are stored and its first steps
        enqueued. A worker elected DAG scheduler drives it from there.

        Args:
            dag: The DAG (a DAG object is submitted once).
            breakpoints: The breakpoint labels to arm for this run (see `DAG.breakpoint`).

        Raises:
            ValueError: an empty DAG, an unknown step, a cycle, a DAG already submitted.
            KeyExists: a run with the DAG's (pinned) id exists.
        """
        meta = await submit_run(self._dags, dag, breakpoints=breakpoints)
        return DagRun(self._dags, self.app, meta.id)

    def dag_run(self, run_id: str) -> DagRun:
        """A handle on the run ``run_id`` — submitted here or anywhere, before or after now."""
        return DagRun(self._dags, self.app, run_id)

    async def dag_runs(self) -> list[RunInfo]:
        """Every run of the app that still has records, newest first."""
        runs: list[RunInfo] = []
        async with self._dags.watch("*.meta") as events:
            async for event in events:
                if isinstance(event, CaughtUp):
                    break
                if event.operation is KvOperation.PUT:
                    meta = decode(event.key, event.value)
                    if isinstance(meta, RunInfo):
                        runs.append(meta)
        return sorted(runs, key=lambda meta: meta.created_at, reverse=True)
