"""Submitting a run and steering it: cancel, pause, resume, signals, breakpoints.

All of it runs in the caller's process (any client), writes by compare-and-set, and is safe
to repeat: a control call that crashed half-way is finished by calling it again, and the
scheduler converges on whatever it finds. The three fences that can hold a step are
independent fields of its record — the pause hold (``held``), the breakpoint releases
(``released_before`` / ``released_after``) and the signals (records of their own) — so
releasing one never releases another.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from .._codec import to_json
from .._errors import KeyExists
from ._dispatch import Dispatch, dispatch
from ._model import (
    RunInfo,
    RunStatus,
    SignalInfo,
    StepState,
    StepStatus,
    encode_chunks,
    meta_key,
    signal_key,
    spec_key,
)
from ._plan import armed, blocked_before, payload_of, plan
from ._state import Loaded, Unchanged, gather

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._builder import DAG
    from ._state import DagStore

FENCE_PASSES = 5
"""Passes a pause makes over the pending steps (steps added meanwhile are held on the next)."""


async def submit_run(store: DagStore, dag: DAG, *, breakpoints: Iterable[str] = ()) -> RunInfo:
    """Write a new run of ``dag`` and dispatch its first steps.

    The steps (in spec chunks) are written first and the meta last: a run exists (for the
    scheduler, for awaiting) once its meta does, so a crash half-way leaves no half-run.

    Raises:
        ValueError: see `DAG.compile_run`.
        KeyExists: a run with this id exists (a pinned id is submitted once).
    """
    now = store.broker.now()
    meta, steps = dag.compile_run(now=now, breakpoints=breakpoints)
    exists = f"DAG run {meta.id!r} already exists (a run id is submitted once)"
    packed = encode_chunks(steps)
    created = await store.write_many(
        [(spec_key(meta.id, index), data, 0) for index, data in enumerate(packed)]
    )
    for result in created:
        if isinstance(result, KeyExists):
            raise KeyExists(exists)
        if isinstance(result, Exception):
            raise result
    try:
        revision = await store.create(meta_key(meta.id), meta)
    except KeyExists:
        raise KeyExists(exists) from None
    dag.submitted = True
    # The first steps go now; the scheduler would dispatch them too, and whichever marks a
    # step running first enqueues it. In a fresh run every step is pending, so only steps
    # without dependencies can be ready: planning just those decides what planning them all
    # would (and a fan-out of thousands is not merged twice on the critical path).
    roots = [step for step in steps if not step.requires and not step.awaits]
    loaded = Loaded(meta.id)
    loaded.put(meta_key(meta.id), meta, revision)
    for step in roots:
        loaded.add_spec(step)
    view = loaded.view()
    ready = plan(view, now=now, candidates=[step.id for step in roots]).dispatch
    batch = [
        Dispatch(loaded.specs[s], loaded.step_keys[s], StepState(id=s), 0,
                 payload_of(view, view.steps[s]))
        for s in ready
    ]  # fmt: skip
    await dispatch(store, meta.id, batch, now=now)
    return meta


async def _each_step(store: DagStore, run_id: str, change: Any) -> int:
    """Apply ``change`` (may raise `Unchanged`) to every step's state; how many were written."""
    loaded = await store.load(run_id)
    results = await gather(
        [partial(store.update_state, s, loaded.step_keys[s], change) for s in loaded.specs]
    )
    written = 0
    for result in results:
        if isinstance(result, Exception):
            raise result
        written += result is not None
    return written


async def cancel_run(store: DagStore, run_id: str) -> bool:
    """Cancel a run: pending steps are cancelled, running ones finish (and are recorded),
    nothing new starts. False if the run had already ended.

    Raises:
        NotFound: no such run.
    """
    now = store.broker.now()

    def cancel(meta: RunInfo) -> RunInfo:
        if meta.status.terminal:
            raise Unchanged
        return attrs.evolve(meta, status=RunStatus.CANCELLED, finished_at=now)

    if await store.update_meta(run_id, cancel) is None:
        await store.require_meta(run_id)
        return False

    def cancel_step(step: StepState) -> StepState:
        if step.status is not StepStatus.PENDING:
            raise Unchanged
        return attrs.evolve(step, status=StepStatus.CANCELLED, finished_at=now)

    await _each_step(store, run_id, cancel_step)
    return True


async def pause_run(store: DagStore, run_id: str) -> RunStatus:
    """Pause a running run: no new step starts; ``pausing`` until the steps in flight end,
    then ``paused``. Returns the status after the call (a paused or ended run is left as is).

    Raises:
        NotFound: no such run.
    """
    now = store.broker.now()

    def pausing(meta: RunInfo) -> RunInfo:
        if meta.status is not RunStatus.RUNNING:
            raise Unchanged
        return attrs.evolve(meta, status=RunStatus.PAUSING, paused_at=now)

    await store.update_meta(run_id, pausing)
    meta, _ = await store.require_meta(run_id)
    if meta.status not in (RunStatus.PAUSING, RunStatus.PAUSED):
        return meta.status

    def hold(step: StepState) -> StepState:
        if step.status is not StepStatus.PENDING or step.held:
            raise Unchanged
        return attrs.evolve(step, held=True, held_at=now)

    # Hold every pending step, again while steps are being added (a running step may add some).
    for _ in range(FENCE_PASSES):
        if not await _each_step(store, run_id, hold):
            break
    steps = await store.load(run_id)
    if not any(s.status is StepStatus.RUNNING for s in steps.steps.values()):

        def paused(meta: RunInfo) -> RunInfo:
            if meta.status is not RunStatus.PAUSING:
                raise Unchanged
            return attrs.evolve(meta, status=RunStatus.PAUSED)

        await store.update_meta(run_id, paused)
    meta, _ = await store.require_meta(run_id)
    return meta.status


async def resume_run(store: DagStore, run_id: str) -> RunStatus:
    """Resume a paused (or pausing) run: holds are released and the scheduler dispatches what
    is ready (skips missed while paused are applied). On a running run it releases any hold
    left behind (a repair). Returns the status after the call.

    Raises:
        NotFound: no such run.
    """

    def running(meta: RunInfo) -> RunInfo:
        if meta.status not in (RunStatus.PAUSING, RunStatus.PAUSED):
            raise Unchanged
        return attrs.evolve(meta, status=RunStatus.RUNNING, paused_at=None)

    await store.update_meta(run_id, running)
    meta, _ = await store.require_meta(run_id)
    if meta.status is not RunStatus.RUNNING:
        return meta.status

    def release(step: StepState) -> StepState:
        if not step.held:
            raise Unchanged
        return attrs.evolve(step, held=False, held_at=None)

    await _each_step(store, run_id, release)
    return RunStatus.RUNNING


async def signal_run(store: DagStore, run_id: str, name: str, payload: Any = None) -> bool:
    """Deliver signal ``name`` with ``payload`` (JSON-encodable). True if this delivery was
    the first; a duplicate returns False and the first payload stays. A signal sent before
    the step waiting for it exists is kept for it. An ended run takes no signals (False).

    Raises:
        ValueError: an empty name; NotFound: no such run; TypeError: a payload that is not
        JSON-encodable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a signal name must be a non-empty string, got {name!r}")
    meta, _ = await store.require_meta(run_id)
    if meta.status.terminal:
        return False
    try:
        value = to_json(payload)
        record = SignalInfo(name, value, store.broker.now())
        await store.create(signal_key(run_id, name), record)
    except KeyExists:
        return False
    return True


async def release_breakpoint(store: DagStore, run_id: str, label: str) -> int:
    """Release every step stopped at breakpoint ``label`` now (a before-breakpoint whose
    upstreams are through, or a succeeded step holding its dependents at an after-breakpoint).
    The label stays armed: steps reaching it later stop again. Returns how many were
    released (0 on a repeat, and on an ended run).

    Raises:
        NotFound: no such run.
    """
    meta, _ = await store.require_meta(run_id)
    if meta.status.terminal or label not in meta.breakpoints:
        return 0
    loaded = await store.load(run_id)
    if loaded.meta is None:
        return 0
    view = loaded.view()
    befores = [s.id for s in view.steps.values() if label in blocked_before(view, s)]
    afters = [
        s.id
        for s in view.steps.values()
        if s.status is StepStatus.DONE and not s.released_after
        and label in armed(meta, s.break_after)
    ]  # fmt: skip

    def release_before(step: StepState) -> StepState:
        if step.status is not StepStatus.PENDING or step.released_before:
            raise Unchanged
        return attrs.evolve(step, released_before=True)

    def release_after(step: StepState) -> StepState:
        if step.released_after:
            raise Unchanged
        return attrs.evolve(step, released_after=True)

    calls = [
        (lambda s=s, change=change: store.update_state(s, loaded.step_keys[s], change))
        for ids, change in ((befores, release_before), (afters, release_after))
        for s in ids
    ]
    released = 0
    for result in await gather(calls):
        if isinstance(result, Exception):
            raise result
        released += result is not None
    return released
