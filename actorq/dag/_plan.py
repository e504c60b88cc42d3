"""What a run should do next, decided from its records alone (pure functions, no I/O).

The scheduler's DagActor (and ``submit``, for the first steps) calls `plan` on its view of a
run and carries out the result with compare-and-set writes; when a write loses a race, the
fresher records come back through its watch and it plans again. Because a plan is a function
of the records, any scheduler — the leader now, a new leader after a failover, a sweep — makes
the same decisions, so a write made twice is refused by the revision check, not applied twice.

The rules (ebind's, as trio actors would keep them):

- a pending step is *ready* when the run is running, it is not held by a pause, no armed
  before-breakpoint of it is unreleased, its signals were delivered, every step it depends on
  is terminal, and none of those is a succeeded step held at an armed after-breakpoint;
- a pending step whose required upstream failed, was skipped or cancelled is skipped, and so
  on transitively (not through ``or_default`` references nor ``after_any`` dependencies);
  skips are applied while the run is running (a paused run changes no step but records
  the outcomes of those in flight; its skips are applied on resume);
- a run whose steps are all terminal is done if every mandatory step succeeded, else failed;
  a pausing run with no step running is paused; a cancelled run cancels its pending steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._model import (
    UNSUCCESSFUL,
    RunInfo,
    RunStatus,
    SignalInfo,
    StepInfo,
    StepStatus,
    dumps,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

ORPHANED_HOLD = 120.0
"""Seconds after which a step still held under a running run (a pause that crashed half-way,
or a resume that did) is released by the scheduler."""


@attrs.frozen(eq=False)
class RunView:
    """A run's records as one reader sees them.

    The last three fields only make planning cheaper, and are derived when not given:
    ``dependents`` (step -> the steps depending on it), ``open_steps`` (how many steps are not
    terminal), ``memo`` (per pending step, how many of its dependencies are known terminal:
    terminal is for good, so a fan-in is not rescanned from the start on every change).
    """

    meta: RunInfo
    steps: Mapping[str, StepInfo]
    signals: Mapping[str, SignalInfo]
    dependents: Mapping[str, Sequence[str]] | None = None
    open_steps: int | None = None
    memo: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class Plan:
    """What to write next (see `plan`)."""

    cancel: tuple[str, ...] = ()
    skip: tuple[tuple[str, str], ...] = ()
    """``(step, the upstream that skips it)``."""
    dispatch: tuple[str, ...] = ()
    release_holds: tuple[str, ...] = ()
    status: RunStatus | None = None
    """A new status for the run: paused, done or failed."""

    def __bool__(self) -> bool:
        return bool(self.cancel or self.skip or self.dispatch or self.release_holds or self.status)


def armed(meta: RunInfo, labels: tuple[str, ...]) -> list[str]:
    return [label for label in labels if label in meta.breakpoints]


def held_after(view: RunView, step: StepInfo) -> str | None:
    """The armed after-breakpoint a succeeded step holds its dependents at, if any."""
    if step.status is not StepStatus.DONE or step.released_after:
        return None
    labels = armed(view.meta, step.break_after)
    return labels[0] if labels else None


def waiting_on(view: RunView, step: StepInfo) -> str | None:
    """Why a pending step cannot start yet, or None when it is ready (pause holds aside)."""
    deps = step.deps
    through = view.memo.get(step.id, 0)
    while through < len(deps):
        upstream = view.steps.get(deps[through])
        if upstream is None or not upstream.status.terminal:
            view.memo[step.id] = through
            return f"step {deps[through]!r}"
        through += 1
    view.memo[step.id] = through
    if view.meta.breakpoints:
        for dep in deps:
            label = held_after(view, view.steps[dep])
            if label is not None:
                return f"breakpoint {label!r} after step {dep!r}"
    if not step.released_before:
        labels = armed(view.meta, step.break_before)
        if labels:
            return f"breakpoint {labels[0]!r}"
    missing = [name for name in step.signals if name not in view.signals]
    if missing:
        return f"signal {missing[0]!r}"
    return None


def blocked_before(view: RunView, step: StepInfo) -> list[str]:
    """The armed before-breakpoint labels a pending step is stopped at (its upstreams are
    through, so only the breakpoint keeps it)."""
    if step.status is not StepStatus.PENDING or step.released_before:
        return []
    for dep in step.deps:
        upstream = view.steps.get(dep)
        if upstream is None or not upstream.status.terminal or held_after(view, upstream):
            return []
    return armed(view.meta, step.break_before)


def dependents_of(view: RunView) -> Mapping[str, Sequence[str]]:
    if view.dependents is not None:
        return view.dependents
    dependents: dict[str, list[str]] = {}
    for step in view.steps.values():
        for upstream in step.deps:
            dependents.setdefault(upstream, []).append(step.id)
    return dependents


def cascade(view: RunView, sources: Iterable[str] | None = None) -> dict[str, str]:
    """Pending steps that must be skipped, each with the upstream that skips it (transitive),
    starting from the unsuccessful steps among ``sources`` (default: all steps)."""
    dependents = dependents_of(view)
    skipped: dict[str, str] = {}
    starts = view.steps if sources is None else sources
    queue = [s for s in starts if s in view.steps and view.steps[s].status in UNSUCCESSFUL]
    while queue:
        upstream = queue.pop()
        for child in dependents.get(upstream, ()):
            record = view.steps[child]
            if (
                record.status is StepStatus.PENDING
                and child not in skipped
                and upstream in record.requires
            ):
                skipped[child] = upstream
                queue.append(child)
    return skipped


def final_status(view: RunView, skipped: Mapping[str, str]) -> RunStatus | None:
    """Done or failed once every step is terminal (counting the skips about to be written)."""
    if view.open_steps is not None and view.open_steps > len(skipped):
        return None
    for step in view.steps.values():
        if not step.status.terminal and step.id not in skipped:
            return None
    for step in view.steps.values():
        if step.optional:
            continue
        if step.id in skipped or step.status is not StepStatus.DONE:
            return RunStatus.FAILED
    return RunStatus.DONE


def plan(view: RunView, *, now: float, candidates: Iterable[str] | None = None) -> Plan:
    """The writes that move a run on from ``view`` (empty when there is nothing to do).

    ``candidates`` limits the steps looked at to those that changed or depend on one that
    did (the scheduler's incremental planning); None looks at every step (a sweep), which is
    also when holds a crashed pause left behind are released.
    """
    status = view.meta.status
    if status.terminal:
        if status is RunStatus.CANCELLED:
            pending = [s.id for s in view.steps.values() if s.status is StepStatus.PENDING]
            return Plan(cancel=tuple(pending))
        return Plan()
    looked_at = view.steps.keys() if candidates is None else candidates
    skipped = cascade(view, candidates) if status is RunStatus.RUNNING else {}
    release: list[str] = []
    dispatch: list[str] = []
    if status is RunStatus.RUNNING:
        for step_id in looked_at:
            step = view.steps.get(step_id)
            if step is None or step_id in skipped or step.status is not StepStatus.PENDING:
                continue
            if step.held:
                if candidates is None and now - (step.held_at or 0.0) >= ORPHANED_HOLD:
                    release.append(step.id)
                continue
            if waiting_on(view, step) is None:
                # Through its upstreams: one it requires may have failed without its skip
                # being written yet (a write that lost a race); skipped rather than run.
                failed = next(
                    (r for r in step.requires if view.steps[r].status in UNSUCCESSFUL), None
                )
                if failed is not None:
                    skipped[step.id] = failed
                else:
                    dispatch.append(step.id)
    new_status = final_status(view, skipped)
    if new_status is None and status is RunStatus.PAUSING:
        if not any(s.status is StepStatus.RUNNING for s in view.steps.values()):
            new_status = RunStatus.PAUSED
    return Plan(
        skip=tuple(skipped.items()),
        dispatch=tuple(dispatch),
        release_holds=tuple(release),
        status=new_status,
    )


class NotResolvable(Exception):
    """A step's arguments cannot be filled in (a bug: the gate should have prevented it)."""


def payload_of(view: RunView, step: StepInfo) -> bytes:
    """A ready step's task payload: its template with every reference filled in."""
    document = step.payload
    for ref in step.refs:
        value: Any
        if ref.signal is not None:
            signal = view.signals.get(ref.signal)
            if signal is None:
                raise NotResolvable(f"step {step.id!r}: signal {ref.signal!r} not delivered")
            value = signal.payload
        else:
            assert ref.step is not None
            upstream = view.steps.get(ref.step)
            if upstream is not None and upstream.status is StepStatus.DONE:
                value = upstream.result
            elif upstream is not None and upstream.status in UNSUCCESSFUL and ref.has_default:
                value = ref.default
            else:
                state = upstream.status if upstream is not None else "missing"
                raise NotResolvable(f"step {step.id!r}: upstream {ref.step!r} is {state}")
        document = _put(document, ref.path, value)
    return dumps(document)


def _put(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """``document`` with ``value`` at ``path``, copying only the containers along the path
    (the template itself is never changed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copied = list(document) if isinstance(document, list) else dict(document)
    copied[head] = _put(document[head], rest, value)  # type: ignore[index]
    return copied
