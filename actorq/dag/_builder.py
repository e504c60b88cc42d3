"""`DAG`: a workflow built as pure data — steps, the references between them, breakpoints.

Nothing here touches the network. ``dag.step(task, *args, **kwargs)`` checks the arguments
against the task's signature at once (literals by value, references to other steps by the
upstream's return annotation) and returns a `Step` handle; passing a handle as an argument
makes a data dependency, ``step.or_default(v)`` one that tolerates failure, and
``dag.signal_ref(name)`` an argument that waits for a signal. ``client.submit(dag)`` compiles
it (`compile_run`: unknown steps and cycles are refused there) into the records of a run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from .._codec import to_json
from .._names import validate_run_id, validate_step_id
from .._retry import RetryPolicy
from .._task import Task, remote_task
from .._wire import (
    H_DEADLINE,
    H_ENQUEUED,
    H_ID,
    H_RESULT,
    H_RESULT_TTL,
    H_TASK,
    retry_to_header,
    task_headers,
)
from ._checks import NO_DEFAULT, RefChecker, find_cycle
from ._model import ArgRef, RunInfo, RunStatus, StepSpec

if TYPE_CHECKING:
    from collections.abc import Iterable

R = TypeVar("R")

_UNSUPPORTED = ("delay", "at", "dedupe_key", "idempotency_key")
_DROPPED_HEADERS = (H_TASK, H_ID, H_ENQUEUED, H_RESULT, H_RESULT_TTL)


@attrs.frozen(eq=False)
class Step(Generic[R]):
    """A step of a DAG, from ``dag.step(...)`` (or ``current_dag().step(...)``).

    Pass it as an argument of another step to feed that step its result; ``after=`` it to
    order steps without data; await its result with ``run.result(step)``.
    """

    id: str
    task: Task[Any, R] = attrs.field(repr=False)
    owner: object = attrs.field(repr=False)
    """The `DAG` (or the run id, for a step added while the run runs) it belongs to."""

    def or_default(self, value: R) -> OrDefault[R]:
        """This step's result as an argument, or ``value`` if the step fails or is skipped
        (the dependent step then runs anyway)."""
        return OrDefault(self, value)


@attrs.frozen(eq=False)
class OrDefault(Generic[R]):
    """A step's result, or a default if it fails or is skipped (from `Step.or_default`)."""

    step: Step[R]
    default: R


@attrs.frozen
class SignalRef:
    """The payload of a signal, as an argument (from `DAG.signal_ref`); the step waits until
    the signal is delivered."""

    name: str = attrs.field()

    @name.validator
    def _check(self, attribute: Any, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"a signal name must be a non-empty string, got {value!r}")


def describe_ref(value: object) -> tuple[Any, str, object] | None:
    """For `RefChecker`: a reference's source type, a description, and its default."""
    if isinstance(value, Step):
        return value.task.return_type, f"step {value.id!r}", NO_DEFAULT
    if isinstance(value, OrDefault):
        return value.step.task.return_type, f"step {value.step.id!r}", value.default
    if isinstance(value, SignalRef):
        return Any, f"signal {value.name!r}", NO_DEFAULT
    return None


_refs = RefChecker(describe_ref)


@attrs.frozen
class Draft:
    """A step as built: its task, template and dependencies (step ids or handles)."""

    id: str
    task: Task[Any, Any]
    payload: Any
    refs: tuple[ArgRef, ...]
    after: tuple[Any, ...]
    after_any: tuple[Any, ...]
    optional: bool
    parent: str | None = None


def build_draft(
    task: Task[Any, Any] | str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    step_id: str,
    owner: object,
) -> Draft:
    """Check a step's arguments and turn them into a template with holes.

    Raises:
        TypeError: arguments that do not fit the task's signature.
        ValueError: an option a step cannot have, or a reference to another DAG's step.
    """
    if isinstance(task, str):
        task = remote_task(task)
    if not isinstance(task, Task):
        raise TypeError(f"dag.step() needs a task (from @app.task) or a task name, got {task!r}")
    settings = task.settings
    unsupported = [name for name in _UNSUPPORTED if getattr(settings, name) is not None]
    if unsupported:
        raise ValueError(
            f"step {step_id!r}: the option(s) {', '.join(unsupported)} are not supported on a"
            " DAG step (its dispatch time is the run's to decide)"
        )
    for value in (*args, *kwargs.values()):
        _check_owner(value, owner, step_id)
    names = task.positional_binding(args, kwargs)
    if names is not None:
        for name, value in zip(names, args, strict=True):
            _refs.check(value, task.hints.get(name, Any), f"{task.name}(): argument {name!r}")
    elif task.signature is not None:
        try:
            bound = task.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{task.name}(): {error}") from None
        for name, value in bound.arguments.items():
            annotation = task.hints.get(name, Any)
            kind = task.signature.parameters[name].kind
            where = f"{task.name}(): argument {name!r}"
            if kind is kind.VAR_POSITIONAL:
                for index, item in enumerate(value):
                    _refs.check(item, annotation, f"{where}[{index}]")
            elif kind is kind.VAR_KEYWORD:
                for key, item in value.items():
                    _refs.check(item, annotation, f"{task.name}(): argument {key!r}")
            else:
                _refs.check(value, annotation, where)
        args, kwargs = tuple(bound.args), dict(bound.kwargs)
    refs: list[ArgRef] = []
    template = {
        "args": [_hole(value, ("args", i), refs) for i, value in enumerate(args)],
        "kwargs": {key: _hole(value, ("kwargs", key), refs) for key, value in kwargs.items()},
    }
    try:
        payload = to_json(template)
    except Exception as error:
        raise TypeError(f"{task.name}(): arguments cannot be encoded as JSON: {error}") from None
    for item in (*settings.after, *settings.after_any):
        _check_owner(item, owner, step_id)
    return Draft(
        id=step_id,
        task=task,
        payload=payload,
        refs=tuple(refs),
        after=settings.after,
        after_any=settings.after_any,
        optional=settings.optional,
    )


def _check_owner(value: object, owner: object, step_id: str) -> None:
    step = value.step if isinstance(value, OrDefault) else value
    if isinstance(step, Step) and step.owner is not owner and step.owner != owner:
        raise ValueError(f"step {step_id!r} refers to step {step.id!r} of another DAG")
    if isinstance(value, list | tuple):
        for item in value:
            _check_owner(item, owner, step_id)
    elif isinstance(value, dict):
        for item in value.values():
            _check_owner(item, owner, step_id)


def _hole(value: Any, path: tuple[str | int, ...], refs: list[ArgRef]) -> Any:
    """``value`` with every reference replaced by None, recorded in ``refs`` with its path."""
    if isinstance(value, Step):
        refs.append(ArgRef(path, step=value.id))
        return None
    if isinstance(value, OrDefault):
        default = to_json(value.default)
        refs.append(ArgRef(path, step=value.step.id, has_default=True, default=default))
        return None
    if isinstance(value, SignalRef):
        refs.append(ArgRef(path, signal=value.name))
        return None
    if isinstance(value, list | tuple) and _refs.contains_ref(value):
        return [_hole(item, (*path, i), refs) for i, item in enumerate(value)]
    if isinstance(value, dict) and _refs.contains_ref(value):
        return {key: _hole(item, (*path, key), refs) for key, item in value.items()}
    return value


def step_headers(
    task: Task[Any, Any], default_retry: RetryPolicy | None
) -> tuple[dict[str, str], float | None]:
    """The option headers of a step's task message, and a relative deadline (seconds)."""
    settings = task.settings.without_dag_options()
    if settings.retry is None and default_retry is not None:
        settings = attrs.evolve(settings, retry=default_retry)
    plain = attrs.evolve(task, settings=settings)
    headers = task_headers(plain, "0" * 32, now=0.0)
    for name in _DROPPED_HEADERS:
        headers.pop(name, None)
    deadline_after = None
    if isinstance(settings.deadline, dt.timedelta):
        headers.pop(H_DEADLINE, None)
        deadline_after = settings.deadline.total_seconds()
    return headers, deadline_after


def step_spec(
    draft: Draft,
    requires: Iterable[str],
    awaits: Iterable[str],
    *,
    default_retry: RetryPolicy | None,
    now: float,
    headers_of: dict[int, tuple[dict[str, str], float | None]] | None = None,
) -> StepSpec:
    """The spec of a drafted step (``headers_of`` caches the option headers of each task
    object, when many steps run the same task)."""
    cached = headers_of.get(id(draft.task)) if headers_of is not None else None
    if cached is None:
        cached = step_headers(draft.task, default_retry)
        if headers_of is not None:
            headers_of[id(draft.task)] = cached
    headers, deadline_after = cached
    required = tuple(dict.fromkeys(requires))
    waited = tuple(step for step in dict.fromkeys(awaits) if step not in required)
    return StepSpec(
        id=draft.id,
        task=draft.task.name,
        queue=draft.task.settings.queue,
        priority=draft.task.settings.priority,
        headers=headers,
        deadline_after=deadline_after,
        payload=draft.payload,
        refs=draft.refs,
        requires=required,
        awaits=waited,
        signals=tuple(dict.fromkeys(r.signal for r in draft.refs if r.signal is not None)),
        optional=draft.optional,
        parent=draft.parent,
        added_at=now,
    )


def dependencies(draft: Draft) -> tuple[list[str], list[str]]:
    """``(requires, awaits)`` step ids of a draft: data references without a default and
    ``after``; references with a default and ``after_any``."""
    requires = [r.step for r in draft.refs if r.step is not None and not r.has_default]
    awaits = [r.step for r in draft.refs if r.step is not None and r.has_default]
    requires += [_step_id(item) for item in draft.after]
    awaits += [_step_id(item) for item in draft.after_any]
    return requires, awaits


def _step_id(item: Any) -> str:
    return item if isinstance(item, str) else str(item.id)


class DAG:
    """A workflow: steps and the dependencies between them, built as pure data.

    Example::

        dag = actorq.DAG()
        user = dag.step(fetch_user, "u1")
        extra = dag.step(enrich.options(optional=True), "u1")
        final = dag.step(combine.options(step_id="final"), user, extra.or_default(None))
        run = await client.submit(dag)
        profile = await run.result(final)

    Args:
        id: The run's id (1-64 letters, digits, ``_``, ``-``); default a random one. A pinned
            id can be submitted once.
        retry: The default retry policy of its steps (a task's own policy wins).
    """

    def __init__(self, id: str | None = None, *, retry: RetryPolicy | None = None) -> None:  # noqa: A002
        self.id = validate_run_id(id) if id is not None else uuid.uuid4().hex
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be an actorq.RetryPolicy, got {retry!r}")
        self.retry = retry
        self._drafts: dict[str, Draft] = {}
        self._repeats: dict[str, int] = {}
        self._breakpoints: dict[str, tuple[set[str], set[str]]] = {}
        self.submitted = False
        """True once the DAG was submitted (a DAG object is submitted once)."""

    def __repr__(self) -> str:
        return f"<DAG {self.id} steps={list(self._drafts)}>"

    @property
    def steps(self) -> tuple[str, ...]:
        """The step ids, in the order they were added."""
        return tuple(self._drafts)

    def step(self, task: Task[Any, R] | str, /, *args: Any, **kwargs: Any) -> Step[R]:
        """Add a step running ``task(*args, **kwargs)``; every argument goes to the task.

        Arguments may be (or contain, inside lists, tuples and dicts) other steps of this DAG
        (their results are substituted), ``step.or_default(value)`` and
        ``dag.signal_ref(name)``. Step options come with the task:
        ``task.options(step_id=..., optional=..., after=[...], after_any=[...], retry=...,
        timeout=...)``.

        Raises:
            TypeError: an argument does not fit the task's signature (a reference: the
                upstream's return annotation does not fit the parameter).
            ValueError: a duplicate step id, a step of another DAG, an unsupported option.
        """
        name = task.name if isinstance(task, Task) else task
        step_id = task.settings.step_id if isinstance(task, Task) else None
        if step_id is None:
            step_id = self._default_id(validate_step_id(name))
        elif step_id in self._drafts:
            raise ValueError(f"DAG {self.id!r} already has a step {step_id!r}")
        draft = build_draft(task, args, kwargs, step_id, self)
        self._drafts[step_id] = draft
        return Step(step_id, draft.task, self)

    def _default_id(self, name: str) -> str:
        n = self._repeats.get(name, 1)
        step_id = name if n == 1 else f"{name}-{n}"
        while step_id in self._drafts:  # taken by an explicit id
            n += 1
            step_id = f"{name}-{n}"
        self._repeats[name] = n + 1
        return step_id

    def signal_ref(self, name: str) -> SignalRef:
        """An argument that is the payload of signal ``name``: the step waits for it
        (``client.dag_run(id).signal(name, value)``)."""
        return SignalRef(name)

    def breakpoint(
        self, label: str, *, before: Step[Any] | Iterable[Step[Any]] = (),
        after: Step[Any] | Iterable[Step[Any]] = (),
    ) -> None:  # fmt: skip
        """Put breakpoint ``label`` before and/or after steps. It stops a run only when the
        label is armed at submit (``client.submit(dag, breakpoints=[label])``): a step with a
        *before* breakpoint waits to start, the dependents of a step with an *after*
        breakpoint wait once it succeeded, until ``run.release(label)``."""
        if not isinstance(label, str) or not label:
            raise ValueError(f"a breakpoint label must be a non-empty string, got {label!r}")
        befores, afters = self._breakpoints.setdefault(label, (set(), set()))
        for steps, into in ((before, befores), (after, afters)):
            for step in (steps,) if isinstance(steps, Step) else steps:
                if not isinstance(step, Step) or step.owner is not self:
                    raise ValueError(f"breakpoint {label!r}: {step!r} is not a step of this DAG")
                into.add(step.id)

    def compile_run(
        self, *, now: float, breakpoints: Iterable[str] = ()
    ) -> tuple[RunInfo, list[StepSpec]]:
        """The records of a new run of this DAG (its steps' specs, a running meta).

        Raises:
            ValueError: an empty DAG, a step depending on an unknown step, a cycle, an empty
                breakpoint label, or a DAG already submitted.
        """
        if self.submitted:
            raise ValueError(f"DAG {self.id!r} was already submitted (submit a new DAG)")
        if not self._drafts:
            raise ValueError(f"DAG {self.id!r} has no steps")
        armed = tuple(dict.fromkeys(breakpoints))
        if any(not isinstance(label, str) or not label for label in armed):
            raise ValueError(f"breakpoint labels must be non-empty strings, got {armed!r}")
        edges: dict[str, tuple[list[str], list[str]]] = {}
        for draft in self._drafts.values():
            requires, awaits = dependencies(draft)
            for upstream in requires + awaits:
                if upstream not in self._drafts:
                    raise ValueError(f"step {draft.id!r} depends on an unknown step {upstream!r}")
            edges[draft.id] = (requires, awaits)
        cycle = find_cycle({step: r + a for step, (r, a) in edges.items()})
        if cycle is not None:
            raise ValueError(f"DAG {self.id!r} has a cycle: {' -> '.join(cycle)}")
        steps = []
        headers_of: dict[int, tuple[dict[str, str], float | None]] = {}
        for draft in self._drafts.values():
            record = step_spec(
                draft, *edges[draft.id], default_retry=self.retry, now=now, headers_of=headers_of
            )
            if self._breakpoints:
                befores = tuple(lb for lb, (b, _) in self._breakpoints.items() if draft.id in b)
                afters = tuple(lb for lb, (_, a) in self._breakpoints.items() if draft.id in a)
                record = attrs.evolve(record, break_before=befores, break_after=afters)
            steps.append(record)
        retry = retry_to_header(self.retry) if self.retry is not None else None
        meta = RunInfo(
            id=self.id,
            status=RunStatus.RUNNING,
            created_at=now,
            breakpoints=armed,
            retry=retry,
            steps=len(steps),
        )
        return meta, steps
