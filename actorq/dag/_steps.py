"""The worker side of DAG steps: recording their outcomes, and adding steps while they run.

`StepOutcomes` is the hook a Worker gives its Executor (``steps=``). For a task message that
is a DAG step (it carries ``Actorq-Dag``), the Executor calls `StepOutcomes.settle` with the
final outcome *before* it acks or terms the message: the step's outcome record is *created*
(done with its result, failed with the error kind and a truncated message, cancelled) — one
write, no read. If that write fails, the hook raises and the message is naked, so it comes
back and the outcome is written then (the handler runs again: make steps idempotent). The
first outcome wins: a create finding one already there leaves it, and the message is acked.
A failed attempt that will be retried is noted too (attempts, error, when the retry is due),
best-effort, so inspection shows it and the phantom check knows the step is alive.

`current_dag` gives a running step its `DagContext`, which adds steps to the run.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .._codec import to_json
from .._context import current_task
from .._errors import KeyExists, StepCancelled
from .._execution import Cancelled, Failed, Succeeded
from .._task import Task, remote_task
from .._wire import retry_from_header
from ._builder import SignalRef, Step, build_draft, dependencies, step_spec
from ._model import (
    H_DAG,
    H_GENERATION,
    H_STEP,
    AttemptNote,
    RunStatus,
    SpecChunk,
    StepError,
    StepOutcome,
    StepSpec,
    StepState,
    StepStatus,
    added_spec_key,
    attempt_key,
    check_ids,
    outcome_key,
    specs_key,
    step_key,
    truncate_message,
)

if TYPE_CHECKING:
    from .._app import App
    from .._execution import Outcome
    from .._wire import TaskEnvelope
    from ..broker import Message
    from ._state import DagStore

logger = logging.getLogger("actorq.dag")
R = TypeVar("R")


class StepOutcomes:
    """Writes the outcomes of DAG steps run by one worker (the Executor's step hook)."""

    def __init__(self, store: DagStore, *, worker_id: str) -> None:
        self.store = store
        self.worker_id = worker_id

    def is_step(self, envelope: TaskEnvelope) -> bool:
        return H_DAG in envelope.headers and H_STEP in envelope.headers

    async def settle(self, envelope: TaskEnvelope, attempt: int, outcome: Outcome) -> None:
        """Record ``outcome`` in the step's run (see the module docstring).

        Raises:
            Exception: the write failed (the message must not be settled).
        """
        try:
            run_id, step_id = _step_ids(envelope)
        except ValueError as exc:
            logger.error(
                "task %s: malformed DAG headers, outcome not recorded: %s", envelope.id, exc
            )
            return
        now = self.store.broker.now()
        generation = _int(envelope.headers.get(H_GENERATION))
        if isinstance(outcome, Failed) and outcome.retry_delay is not None:
            note = AttemptNote(
                step=step_id,
                generation=generation,
                attempts=attempt,
                error=StepError(outcome.error.kind, truncate_message(outcome.error.message)),
                retry_at=now + outcome.retry_delay,
            )
            try:
                await self.store.put(attempt_key(run_id, step_id), note)
            except Exception as exc:  # noqa: BLE001 - a note only; the retry goes ahead
                logger.warning("step %s of run %s: attempt %d not noted: %s", step_id, run_id,
                               attempt, exc)  # fmt: skip
            return
        record = self._outcome(envelope, step_id, attempt, outcome, now)
        try:
            await self.store.create(outcome_key(run_id, step_id), record)
        except KeyExists:
            logger.info("step %s of run %s already has an outcome; this one (attempt %d) is"
                        " dropped", step_id, run_id, attempt)  # fmt: skip

    def success_message(self, envelope: TaskEnvelope, attempt: int, value: Any) -> Message | None:
        """The message that creates a succeeded step's outcome record, for a caller that
        publishes it and settles the task message by its PubAck (first outcome wins there
        too); None when the step's headers are malformed (`settle` reports that)."""
        try:
            run_id, step_id = _step_ids(envelope)
        except ValueError:
            return None
        now = self.store.broker.now()
        record = self._outcome(envelope, step_id, attempt, Succeeded(value), now)
        return self.store.create_message(outcome_key(run_id, step_id), record)

    def _outcome(
        self,
        envelope: TaskEnvelope,
        step_id: str,
        attempt: int,
        outcome: Outcome,
        now: float,
    ) -> StepOutcome:
        result: Any = None
        error: StepError | None = None
        if isinstance(outcome, Succeeded):
            status, result = StepStatus.DONE, to_json(outcome.value)
        elif isinstance(outcome, Cancelled):
            status, error = StepStatus.CANCELLED, StepError("cancelled")
        else:
            assert isinstance(outcome, Failed)
            status = StepStatus.FAILED
            error = StepError(outcome.error.kind, truncate_message(outcome.error.message))
        return StepOutcome(
            step=step_id,
            task=envelope.task,
            status=status,
            generation=_int(envelope.headers.get(H_GENERATION)),
            attempts=attempt,
            result=result,
            error=error,
            worker=self.worker_id,
            finished_at=now,
        )


def _step_ids(envelope: TaskEnvelope) -> tuple[str, str]:
    """The run and step a step's task message names. Raises `ValueError` when malformed."""
    run_id, step_id = envelope.headers[H_DAG], envelope.headers[H_STEP]
    check_ids(run_id, step_id)
    return run_id, step_id


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


@attrs.frozen
class DagRuntime:
    """What a worker offers the DAG steps it runs (`current_dag`)."""

    store: DagStore
    app: App


_runtime: ContextVar[DagRuntime] = ContextVar("actorq_dag_runtime")
_context: ContextVar[DagContext | None] = ContextVar("actorq_dag_context", default=None)


def install_runtime(runtime: DagRuntime) -> None:
    """Make ``runtime`` the one `current_dag` uses in this task and the tasks it starts."""
    _runtime.set(runtime)


def current_dag() -> DagContext:
    """The `DagContext` of the DAG step running in this handler.

    Raises:
        RuntimeError: not called from a handler running a DAG step on a worker.
    """
    task = current_task()
    run_id, step_id = task.headers.get(H_DAG), task.headers.get(H_STEP)
    if run_id is None or step_id is None:
        raise RuntimeError(f"actorq.current_dag(): task {task.name} is not running as a DAG step")
    try:
        runtime = _runtime.get()
    except LookupError:
        raise RuntimeError("actorq.current_dag(): this worker runs no DAG steps") from None
    context = _context.get()
    if context is None or context.task_id != task.id or context.attempt != task.attempt:
        context = DagContext(runtime, run_id, step_id, task.id, task.attempt, task.name)
        _context.set(context)
    return context


class DagContext:
    """A running step's view of its run: add steps to it with `step`.

    Get it with ``actorq.current_dag()`` inside a step's handler.
    """

    def __init__(
        self, runtime: DagRuntime, run_id: str, step_id: str, task_id: str, attempt: int,
        task_name: str,
    ) -> None:  # fmt: skip
        self._runtime = runtime
        self.run_id = run_id
        """The run's id."""
        self.step_id = step_id
        """The id of the step running now."""
        self.task_id = task_id
        self.attempt = attempt
        self._counts: dict[str, int] = {}
        self._specs: dict[str, StepSpec] | None = None
        parent_task = runtime.app.lookup(task_name) or remote_task(task_name)
        self.parent: Step[Any] = Step(step_id, parent_task, run_id)
        """The running step, as an argument of a new step (its result once it returns)."""

    def __repr__(self) -> str:
        return f"<DagContext run={self.run_id} step={self.step_id}>"

    async def _spec(self, step_id: str, *, fresh: bool = False) -> StepSpec | None:
        """The spec of a step of the run (the run's specs are read once per attempt; a step
        added since is looked up by its own key)."""
        store = self._runtime.store
        if self._specs is None:
            self._specs = dict((await store.load(self.run_id, specs_key(self.run_id))).specs)
        if step_id in self._specs and not fresh:
            return self._specs[step_id]
        found = await store.get(added_spec_key(self.run_id, step_id))
        if found is None:
            return self._specs.get(step_id)
        chunk = found[0]
        assert isinstance(chunk, SpecChunk)
        self._specs[step_id] = chunk.steps[0]
        return chunk.steps[0]

    def signal_ref(self, name: str) -> SignalRef:
        """An argument that is the payload of signal ``name`` (see `DAG.signal_ref`); a
        signal delivered before the step exists counts."""
        return SignalRef(name)

    async def step(self, task: Task[Any, R] | str, /, *args: Any, **kwargs: Any) -> Step[R]:
        """Add a step to the run, to start once the running step has succeeded.

        Arguments and options are as for `DAG.step`; references may name steps added here
        (or `parent`). The default id is ``<running step>.<task name>`` (then ``-2``,
        ``-3``... within this attempt), so a retried handler adding the same steps adds
        nothing new: a step id that exists with the same task is returned as it is.

        Raises:
            StepCancelled: the run was cancelled (or has ended).
            ValueError: the id exists with another task; an unknown ``after`` step.
            TypeError: arguments that do not fit the task.
        """
        store = self._runtime.store
        name = task.name if isinstance(task, Task) else task
        step_id = task.settings.step_id if isinstance(task, Task) else None
        if step_id is None:
            base = f"{self.step_id}.{name}"
            n = self._counts.get(base, 0) + 1
            self._counts[base] = n
            step_id = base if n == 1 else f"{base}-{n}"
        check_ids(self.run_id, step_id)
        meta, _ = await store.require_meta(self.run_id)
        if meta.status.terminal:
            raise StepCancelled(
                run_id=self.run_id,
                step=step_id,
                message=f"DAG run {self.run_id!r} is {meta.status}: step {step_id!r} not added",
            )
        draft = build_draft(task, args, kwargs, step_id, self.run_id)
        draft = attrs.evolve(draft, parent=self.step_id)
        requires, awaits = dependencies(draft)
        for upstream in dict.fromkeys(requires + awaits):
            if upstream != self.step_id and await self._spec(upstream) is None:
                raise ValueError(f"step {step_id!r} depends on an unknown step {upstream!r}")
        default_retry = retry_from_header(meta.retry) if meta.retry else None
        now = store.broker.now()
        spec = step_spec(
            draft, [self.step_id, *requires], awaits, default_retry=default_retry, now=now
        )
        existing = await self._spec(step_id)
        if existing is None:
            try:
                await store.create(added_spec_key(self.run_id, step_id), SpecChunk((spec,)))
            except KeyExists:
                existing = await self._spec(step_id, fresh=True)
        if existing is not None:
            if existing.task != spec.task or existing.parent != spec.parent:
                raise ValueError(
                    f"DAG run {self.run_id!r} already has a step {step_id!r} (task"
                    f" {existing.task}, added by {existing.parent or 'the submitter'})"
                )
            return Step(step_id, draft.task, self.run_id)  # added by an earlier attempt
        if meta.status in (RunStatus.PAUSING, RunStatus.PAUSED):
            held = StepState(id=step_id, held=True, held_at=now)
            try:
                await store.create(step_key(self.run_id, step_id), held)
            except KeyExists:
                pass  # the pause held it already
        return Step(step_id, draft.task, self.run_id)
