"""`DagRun`: a handle on one run of a DAG, from ``client.submit(dag)`` or ``client.dag_run(id)``.

It holds nothing but the run's id, so any process of the app can make one and get the same
answers. Awaiting is a KV watch of the records concerned — the current value first, then its
changes — so a result written before the wait began is returned at once and a later one the
moment it is written, without polling.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._codec import describe_structure_error, from_json
from .._errors import (
    BrokerError,
    NotFound,
    ResultTimeout,
    StepCancelled,
    StepFailed,
    StepSkipped,
)
from .._names import validate_run_id, validate_step_id
from ..broker import CaughtUp, KvOperation
from ._builder import Step
from ._control import cancel_run, pause_run, release_breakpoint, resume_run, signal_run
from ._model import (
    RunInfo,
    RunStatus,
    StepInfo,
    StepOutcome,
    StepState,
    StepStatus,
    decode,
    ended,
    kind_of,
    meta_key,
    specs_key,
    step_key,
    step_keys,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._app import App
    from ._state import DagStore

R = TypeVar("R")
T = TypeVar("T")
logger = logging.getLogger("actorq.dag")

REFRESH = 30.0
"""Seconds after which an awaiting watch is opened afresh (a stalled watch is replaced)."""
RETRY_FIRST = 0.25
RETRY_CAP = 5.0


class DagRun:
    """One run of a DAG: await its steps' results and its end, inspect and steer it.

    Args:
        store: The app's DAG bucket.
        app: The app (its tasks type the results of steps awaited by id).
        run_id: The run's id.
    """

    def __init__(self, store: DagStore, app: App, run_id: str) -> None:
        self._store = store
        self._app = app
        self.id = validate_run_id(run_id)
        """The run's id."""

    def __repr__(self) -> str:
        return f"<DagRun {self.id}>"

    # --- inspection -----------------------------------------------------------------------

    async def info(self) -> RunInfo:
        """The run's meta record (status, times, armed breakpoints).

        Raises:
            NotFound: no such run.
        """
        meta, _ = await self._store.require_meta(self.id)
        return meta

    async def status(self) -> RunStatus:
        """The run's status now."""
        return (await self.info()).status

    async def steps(self) -> dict[str, StepInfo]:
        """Every step (status, attempts, error, result...), by step id."""
        loaded = await self._store.load(self.id)
        return dict(loaded.steps)

    async def step(self, step: Step[Any] | str) -> StepInfo:
        """One step (status, attempts, error, result...).

        Raises:
            NotFound: the run has no such step.
        """
        step_id = _step_id(step)
        loaded = await self._store.load(self.id, specs_key(self.id))
        if step_id not in loaded.specs:
            raise NotFound(f"DAG run {self.id!r} has no step {step_id!r}")
        async with self._store.watch(step_keys(self.id, step_id)) as events:
            async for event in events:
                if isinstance(event, CaughtUp):
                    break
                if kind_of(event.key)[1] in ("step", "outcome", "attempt"):
                    loaded.apply(event)
        return loaded.steps[step_id]

    # --- awaiting -------------------------------------------------------------------------

    @overload
    async def result(self, step: Step[R], *, timeout: float | None = None) -> R: ...  # noqa: ASYNC109
    @overload
    async def result(self, step: str, *, timeout: float | None = None) -> Any: ...  # noqa: ASYNC109

    async def result(self, step: Step[Any] | str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Wait for a step to end and return its result, structured to its task's return
        annotation (for a step id: if this app registers the task, else plain JSON data).

        Raises:
            StepFailed: the step failed for good.
            StepSkipped: an upstream it needed did not succeed.
            StepCancelled: the run was cancelled before the step ran.
            NotFound: the run does not exist, or ended without such a step.
            ResultTimeout: not ended within ``timeout`` seconds.
        """
        step_id = _step_id(step)
        with trio.move_on_after(math.inf if timeout is None else timeout):
            record = await _following(lambda: self._terminal_step(step_id))
            return self._value(record, step)
        raise ResultTimeout(
            f"step {step_id!r} of DAG run {self.id!r}: no result within {timeout} s"
        )

    async def wait(self, *, timeout: float | None = None) -> RunStatus:  # noqa: ASYNC109
        """Wait for the run to end; its final status (done, failed or cancelled).

        Raises:
            NotFound: no such run.
            ResultTimeout: not ended within ``timeout`` seconds.
        """
        with trio.move_on_after(math.inf if timeout is None else timeout):
            return await _following(self._end)
        raise ResultTimeout(f"DAG run {self.id!r} did not end within {timeout} s")

    async def _end(self) -> RunStatus:
        async with self._store.watch(meta_key(self.id)) as events:
            seen = False
            async for event in events:
                if isinstance(event, CaughtUp):
                    if not seen:
                        raise NotFound(f"no DAG run {self.id!r}")
                elif event.operation is KvOperation.PUT:
                    seen = True
                    meta = decode(event.key, event.value)
                    assert isinstance(meta, RunInfo)
                    if meta.status.terminal:
                        return meta.status
        raise BrokerError(f"the watch of DAG run {self.id!r} ended")

    async def _terminal_step(self, step_id: str) -> StepState | StepOutcome:
        """The record that ended the step: its outcome, or its state (skipped, cancelled,
        lost)."""
        ending: StepState | StepOutcome | Exception | None = None
        async with trio.open_nursery() as nursery:

            async def watch_step() -> None:
                nonlocal ending
                state: tuple[StepState, int] | None = None
                outcome: tuple[StepOutcome, int] | None = None
                try:
                    async with self._store.watch(step_keys(self.id, step_id)) as events:
                        async for event in events:
                            if isinstance(event, CaughtUp):
                                if state is None and outcome is None:
                                    nursery.start_soon(not_started)
                                continue
                            if event.operation is not KvOperation.PUT:
                                continue
                            record = decode(event.key, event.value)
                            if isinstance(record, StepState):
                                state = (record, event.revision)
                            elif isinstance(record, StepOutcome):
                                outcome = (record, event.revision)
                            first = state is not None and (outcome is None or state[1] < outcome[1])
                            found = ended(
                                state[0] if state else None,
                                outcome[0] if outcome else None,
                                state_first=first,
                            )
                            if found is not None:
                                ending = found
                                nursery.cancel_scope.cancel()
                except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                    ending = exc
                    nursery.cancel_scope.cancel()

            async def not_started() -> None:
                # Pending (or added later by a running step): wait, unless the run ends first.
                nonlocal ending
                try:
                    await self.wait()
                    if await self._store.get(step_key(self.id, step_id)) is None:
                        raise NotFound(f"DAG run {self.id!r} ended without a step {step_id!r}")
                except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                    ending = exc
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch_step)
        if isinstance(ending, Exception):
            raise ending
        assert ending is not None
        return ending

    def _value(self, ending: StepState | StepOutcome, step: Step[Any] | str) -> Any:
        step_id = ending.id if isinstance(ending, StepState) else ending.step
        error = ending.error
        if ending.status is StepStatus.DONE:
            assert isinstance(ending, StepOutcome)
            if isinstance(step, Step):
                return_type = step.task.return_type
            else:
                task = self._app.lookup(ending.task)
                return_type = task.return_type if task is not None else Any
            try:
                return from_json(ending.result, return_type)
            except Exception as exc:
                raise StepFailed(
                    run_id=self.id,
                    step=step_id,
                    kind="decode",
                    message="the result does not match the return annotation: "
                    + describe_structure_error(exc),
                    attempts=ending.attempts,
                ) from None
        if ending.status is StepStatus.SKIPPED:
            raise StepSkipped(run_id=self.id, step=step_id, upstream=error.message if error else "")
        if ending.status is StepStatus.CANCELLED:
            raise StepCancelled(run_id=self.id, step=step_id)
        raise StepFailed(
            run_id=self.id,
            step=step_id,
            kind=error.kind if error else "error",
            message=error.message if error else "",
            attempts=ending.attempts if isinstance(ending, StepOutcome) else 0,
        )

    # --- control --------------------------------------------------------------------------

    async def cancel(self) -> bool:
        """Cancel the run: pending steps are cancelled, running ones finish and are recorded,
        nothing new starts. False if it had already ended."""
        return await cancel_run(self._store, self.id)

    async def pause(self) -> RunStatus:
        """Pause the run: no new step starts; ``pausing`` until the steps in flight end, then
        ``paused``. Returns the status after the call (an ended run is left as it is)."""
        return await pause_run(self._store, self.id)

    async def resume(self) -> RunStatus:
        """Resume a paused run (on a running one: release holds a crashed pause left)."""
        return await resume_run(self._store, self.id)

    async def signal(self, name: str, value: Any = None) -> bool:
        """Deliver signal ``name``: True if first; a duplicate returns False and the first
        payload stays. A signal sent before the step waiting for it exists is kept for it."""
        return await signal_run(self._store, self.id, name, value)

    async def release(self, label: str) -> int:
        """Let the steps stopped at breakpoint ``label`` go on; how many were released. The
        label stays armed (steps reaching it later stop again)."""
        return await release_breakpoint(self._store, self.id, label)


async def _following(watch: Callable[[], Awaitable[T]]) -> T:
    """Run ``watch`` (which watches keys until it has its answer) until it answers: again
    after a connection error or a leader election (a watch cannot open while its stream has
    no leader), and afresh every `REFRESH` seconds, so a watch that stalled silently is
    replaced."""
    delay = RETRY_FIRST
    while True:
        with trio.move_on_after(REFRESH):
            try:
                return await watch()
            except NotFound:
                raise
            except BrokerError as exc:
                logger.info("awaiting a DAG run: %s; again in %ss", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)


def _step_id(step: Step[Any] | str) -> str:
    if isinstance(step, Step):
        return step.id
    return validate_step_id(step)
