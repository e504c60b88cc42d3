"""`DagActor`: the scheduler's actor for one live run.

It follows its run through one KV watch of the run's keys (a snapshot, then every change as
it is written: a step a worker finished, a signal, a pause, a step added by a running step),
and after each batch of changes it plans (`_plan.plan`) and carries the plan out: skips,
dispatches, the run's final status. No polling: the watch is the event stream. Every
``sweep_interval`` it reads the run afresh (a new watch) and looks for phantom-running steps,
which repairs anything a lost event or a crashed writer left behind.

Writes are compare-and-set on the revisions the watch delivered; a lost race is simply
dropped, because the fresher record is on its way through the watch and the next plan uses
it. The run's status (paused, done, failed) is written fenced by the scheduler's leadership,
so a scheduler that lost its lease cannot finalize a run its successor now follows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import BrokerError, FencedOut, KeyExists, WrongRevision
from ..actors import current_stop_signal
from ..broker import CaughtUp, WatchEvent, take_ready
from ._dispatch import Dispatch, Dispatched, dispatch
from ._model import (
    RunInfo,
    RunStatus,
    StepError,
    StepState,
    StepStatus,
    meta_key,
    outcome_key,
    run_keys,
)
from ._phantom import MAX_LOST, PhantomWatch
from ._plan import NotResolvable, Plan, payload_of, plan
from ._state import Loaded, Unchanged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..actors._leader import LeaderElector
    from ._settings import DagSettings
    from ._state import DagStore

logger = logging.getLogger("actorq.dag")

RETRY_DELAY = 1.0
"""Seconds before following a run again after its watch failed (doubling on repeats, up to
the sweep interval)."""
MAX_ROUNDS = 8
"""Plans carried out one after the other on one batch of changes (each may enable the next)."""


@attrs.frozen
class SchedulerContext:
    """What every DagActor of one scheduler shares."""

    store: DagStore
    elector: LeaderElector
    settings: DagSettings


class DagActor:
    """Drives one run to its end while its scheduler leads (see the module docstring)."""

    def __init__(self, context: SchedulerContext, run_id: str) -> None:
        self.context = context
        self.store = context.store
        self.run_id = run_id
        settings = context.settings
        self.phantoms = PhantomWatch(
            self.store, run_id, after=settings.phantom_after, scan_limit=settings.phantom_scan_limit
        )

    def __repr__(self) -> str:
        return f"<DagActor {self.run_id}>"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the run until it ends (or the actor is stopped)."""
        task_status.started(self.run_id)
        delay = RETRY_DELAY
        with current_stop_signal().move_on():
            while True:
                try:
                    if await self._follow():
                        return
                    delay = RETRY_DELAY
                    continue
                except (BrokerError, FencedOut) as exc:
                    logger.warning("run %s: following it failed, again in %ss: %s", self.run_id,
                                   delay, exc)  # fmt: skip
                except Exception:
                    # One broken run must not take the scheduler (and its worker) down.
                    logger.exception("run %s: scheduling it failed, again in %ss", self.run_id,
                                     delay)  # fmt: skip
                await trio.sleep(delay)
                delay = min(delay * 2, self.context.settings.sweep_interval)

    async def _follow(self) -> bool:
        """One sweep period: a fresh snapshot, then changes. True once the run has ended."""
        loaded = Loaded(self.run_id)
        async with self.store.watch(run_keys(self.run_id)) as events:
            return await self._process(loaded, events)

    async def _process(self, loaded: Loaded, events: AsyncIterator[WatchEvent]) -> bool:
        caught_up = False
        sweep_at = trio.current_time() + self.context.settings.sweep_interval
        while True:
            event: WatchEvent | None = None
            with trio.move_on_at(sweep_at):
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    raise BrokerError(f"the watch of run {self.run_id} ended") from None
            if event is None:  # time for a sweep
                if caught_up:
                    await self._recover_phantoms(loaded)
                return False
            # A burst of changes (a fan-out's outcomes) is taken in as one batch and planned
            # once: a plan is a function of the records, so the plans in between add nothing.
            changed = False
            for item in (event, *take_ready(events)):
                if isinstance(item, CaughtUp):
                    caught_up = changed = True
                elif loaded.apply(item):  # False for the echo of our own writes
                    changed = True
            if caught_up and changed:
                if loaded.meta is None:
                    return True  # deleted
                if await self._reconcile(loaded):
                    return True

    # --- carrying out plans ---------------------------------------------------------------

    async def _reconcile(self, loaded: Loaded) -> bool:
        """Plan and write until there is nothing to do; True once the run has ended.

        Each plan looks at the steps that changed since the last one (and their dependents);
        a fresh snapshot plans them all.
        """
        for _ in range(MAX_ROUNDS):
            assert loaded.meta is not None
            if loaded.meta.status in (RunStatus.DONE, RunStatus.FAILED):
                return True
            candidates = loaded.take_dirty()
            todo = plan(loaded.view(), now=self.store.broker.now(), candidates=candidates)
            if not todo:
                return loaded.meta.status is RunStatus.CANCELLED
            if not await self._carry_out(loaded, todo):
                return False  # a race lost: the fresher records come through the watch
        return False

    async def _carry_out(self, loaded: Loaded, todo: Plan) -> bool:
        """Write one plan; False if a write lost a race (nothing more is done then)."""
        now = self.store.broker.now()
        changes: list[tuple[str, StepState]] = []
        for step_id in todo.cancel:
            state = loaded.state_of(step_id)[0]
            changes.append(
                (step_id, attrs.evolve(state, status=StepStatus.CANCELLED, finished_at=now))
            )
        for step_id, upstream in todo.skip:
            state = loaded.state_of(step_id)[0]
            error = StepError("skipped", upstream)
            skipped = attrs.evolve(state, status=StepStatus.SKIPPED, error=error, finished_at=now)
            changes.append((step_id, skipped))
        for step_id in todo.release_holds:
            state = loaded.state_of(step_id)[0]
            changes.append((step_id, attrs.evolve(state, held=False, held_at=None)))
        complete = await self._write_steps(loaded, changes)
        if todo.dispatch:
            complete = await self._dispatch(loaded, todo.dispatch) and complete
        if todo.status is not None and complete:
            complete = await self._set_status(loaded, todo.status)
        return complete

    async def _write_steps(self, loaded: Loaded, changes: list[tuple[str, StepState]]) -> bool:
        keys = [loaded.step_keys[step_id] for step_id, _ in changes]
        results = await self.store.write_many(
            [
                (key, new, loaded.state_of(new.id)[1])
                for key, (_, new) in zip(keys, changes, strict=True)
            ]
        )
        complete = True
        for key, (_, new), result in zip(keys, changes, results, strict=True):
            if isinstance(result, (WrongRevision, KeyExists)):
                complete = False
            elif isinstance(result, Exception):
                raise result
            else:
                loaded.put(key, new, result)
        return complete

    async def _dispatch(
        self, loaded: Loaded, step_ids: tuple[str, ...], *, lost: bool = False
    ) -> bool:
        view = loaded.view()
        batch = []
        for step_id in step_ids:
            try:
                payload = payload_of(view, view.steps[step_id])
            except NotResolvable as exc:
                logger.error("run %s: %s", self.run_id, exc)
                continue
            state, revision = loaded.state_of(step_id)
            spec = loaded.specs[step_id]
            batch.append(Dispatch(spec, loaded.step_keys[step_id], state, revision, payload))
        results = await dispatch(
            self.store, self.run_id, batch, now=self.store.broker.now(), lost=lost
        )
        complete = True
        for result in results:
            if isinstance(result, Dispatched):
                loaded.put(result.key, result.state, result.revision)
                self.phantoms.dispatched(result.state.id, result.state.generation, result.seq)
            elif isinstance(result, (WrongRevision, KeyExists)):
                complete = False
            else:
                raise result
        return complete

    async def _set_status(self, loaded: Loaded, status: RunStatus) -> bool:
        assert loaded.meta is not None
        seen = loaded.meta.status
        now = self.store.broker.now()

        def change(meta: RunInfo) -> RunInfo:
            if meta.status is not seen:
                raise Unchanged  # someone else moved it (a cancel, a resume...)
            if status is RunStatus.PAUSED:
                return attrs.evolve(meta, status=status)
            return attrs.evolve(meta, status=status, finished_at=now)

        written = await self.store.update_meta(
            self.run_id, change, fence=self.context.elector.fence
        )
        if written is None:
            return False
        loaded.put(meta_key(self.run_id), *written)
        if status.terminal:
            logger.info("run %s: %s", self.run_id, status)
        return True

    # --- recovery --------------------------------------------------------------------------

    async def _recover_phantoms(self, loaded: Loaded) -> None:
        now = self.store.broker.now()
        found = await self.phantoms.phantoms(loaded.steps, now)
        for step_id in found:
            # Read afresh: an outcome that just arrived, or another dispatch, clears it.
            key = loaded.step_keys[step_id]
            fresh = await self.store.get(key)
            outcome = await self.store.get(outcome_key(self.run_id, step_id))
            if fresh is None or outcome is not None:
                if outcome is not None:
                    loaded.put(outcome_key(self.run_id, step_id), *outcome)
                continue
            step, revision = fresh
            old = loaded.state_of(step_id)[0]
            if step.status is not StepStatus.RUNNING or step.generation != old.generation:
                continue
            loaded.put(key, step, revision)
            if step.lost >= MAX_LOST:
                logger.error("run %s: step %s lost its task message %d times; failing it",
                             self.run_id, step_id, step.lost + 1)  # fmt: skip
                message = f"its task message disappeared {step.lost + 1} times"
                failed = attrs.evolve(
                    step, status=StepStatus.FAILED, error=StepError("lost", message),
                    finished_at=now,
                )  # fmt: skip
                await self._write_steps(loaded, [(step_id, failed)])
                continue
            logger.warning("run %s: step %s (generation %d) has no task message; enqueueing it"
                           " again", self.run_id, step_id, step.generation)  # fmt: skip
            await self._dispatch(loaded, (step_id,), lost=True)
        if found:
            await self._reconcile(loaded)
