"""The records of a DAG run, where they live in KV, and the headers of a step's task message.

A run is a handful of keys in the app's DAG bucket (``actorq_<ns>_dags``), every one of them
written once or by compare-and-set on the revision its writer read:

- ``<run>.meta``: the `RunInfo` (status, armed breakpoints, the run's default retry);
- ``<run>.spec.<n>``: `SpecChunk` records, created at submit: what the steps run (`StepSpec`:
  task, argument template, the steps each depends on), packed a few hundred kilobytes to a
  key, so a run of thousands of steps is stored and read in a handful of messages; a step a
  running step adds gets a chunk of its own (``<run>.spec.x-<step>``);
- ``<run>.step.<step>``: a step's `StepState` once something happened to it — created when it
  is first dispatched, held, released, skipped or cancelled (until then it is pending), then
  compare-and-set by the scheduler and the control calls: running in generation N, held,
  released, skipped, cancelled. Small, so a fan-out of a thousand steps is a thousand small
  writes. The step id's dots become ``/`` in the key, so it stays one key token;
- ``<run>.outcome.<step>``: a `StepOutcome`, *created* by the worker that ran the step (done
  with its result, failed with its error, cancelled): one write, no read, and the first outcome
  wins (a second create is refused);
- ``<run>.attempt.<step>``: an `AttemptNote` about the last failed attempt that will be
  retried (attempts, error, when the retry is due), for inspection and the phantom check;
- ``<run>.signal.<base64url(name)>``: a `SignalInfo`, created once (the first delivery wins).

Readers merge a step's spec, state, outcome and note into one `StepInfo` (`merge`). Keys live
in one bucket, so revisions are one sequence: when both the state and the outcome are terminal
(a step declared lost whose message turns up after all), the one written first wins. Records
are JSON written by the one cattrs converter, readable with ``nats kv get``.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Any

import attrs

from .._codec import converter
from .._names import validate_run_id, validate_step_id
from ..kv._fencing import split_fence

H_DAG = "Actorq-Dag"
"""On a step's task message: the run id."""
H_STEP = "Actorq-Step"
"""On a step's task message: the step id."""
H_GENERATION = "Actorq-Generation"
"""On a step's task message: how many times the step has been dispatched (1 at first; a
recovery re-enqueue uses the next one, and so a new message id)."""

MAX_ERROR_BYTES = 4096
"""Bytes of a step's error message kept in its record (UTF-8 safe, "…" appended)."""


class RunStatus(enum.StrEnum):
    """Where a DAG run stands."""

    RUNNING = "running"
    PAUSING = "pausing"
    """Paused while steps were in flight: no new step starts; ``paused`` once they end."""
    PAUSED = "paused"
    DONE = "done"
    """Every mandatory step succeeded."""
    FAILED = "failed"
    """A mandatory step failed or was skipped."""
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN


class StepStatus(enum.StrEnum):
    """Where a step stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


_TERMINAL_RUN = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED})
LIVE_RUN = frozenset({RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.PAUSED})
UNSUCCESSFUL = frozenset({StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})


@attrs.frozen
class ArgRef:
    """A hole in a step's argument template: filled at dispatch with an upstream step's result
    (``step``) or a signal's payload (``signal``)."""

    path: tuple[str | int, ...]
    """Where in ``{"args": [...], "kwargs": {...}}`` the value goes."""
    step: str | None = None
    signal: str | None = None
    has_default: bool = False
    """For ``step``: substitute ``default`` if the upstream fails or is skipped."""
    default: Any = None


@attrs.frozen
class StepError:
    """Why a step did not succeed."""

    kind: str
    """``error``, ``timeout``, ``decode``, ... (as `TaskFailed.kind`); ``skipped`` with the
    upstream's id as the message; ``lost`` for a task message that kept disappearing."""
    message: str = ""


@attrs.frozen(kw_only=True)
class RunInfo:
    """A DAG run's meta record (``<run>.meta``)."""

    id: str
    status: RunStatus = RunStatus.RUNNING
    created_at: float
    finished_at: float | None = None
    paused_at: float | None = None
    breakpoints: tuple[str, ...] = ()
    """The armed breakpoint labels (fixed at submit)."""
    retry: str | None = None
    """The run's default retry policy (header form), for steps added while it runs."""
    steps: int = 0
    """How many steps it was submitted with."""


@attrs.frozen(kw_only=True)
class StepSpec:
    """What a step runs (in a `SpecChunk`); fixed once the step exists."""

    id: str
    task: str
    queue: str = "default"
    priority: int = 0
    headers: dict[str, str] = attrs.field(factory=dict)
    """Option headers of its task message (retry, timeout, concurrency...)."""
    deadline_after: float | None = None
    """A deadline counted from each dispatch, in seconds."""
    payload: Any = None
    """The argument template ``{"args": [...], "kwargs": {...}}``; holes are `refs`."""
    refs: tuple[ArgRef, ...] = ()
    requires: tuple[str, ...] = ()
    """Steps it needs to succeed (data references without a default, ``after``)."""
    awaits: tuple[str, ...] = ()
    """Steps it waits for whatever their outcome (``or_default`` references, ``after_any``)."""
    signals: tuple[str, ...] = ()
    """Signals it waits for (its signal references)."""
    optional: bool = False
    break_before: tuple[str, ...] = ()
    break_after: tuple[str, ...] = ()
    parent: str | None = None
    """The step that added it while running (a dynamic step)."""
    added_at: float = 0.0


@attrs.frozen
class SpecChunk:
    """Some of a run's steps (``<run>.spec.<n>``)."""

    steps: tuple[StepSpec, ...]


@attrs.frozen(kw_only=True)
class StepState:
    """Where a step stands, as the scheduler and the control calls write it
    (``<run>.step.<step>``; absent while nothing happened to the step)."""

    id: str
    status: StepStatus = StepStatus.PENDING
    """Pending, running, skipped, cancelled — or failed when its message was lost for good."""
    generation: int = 0
    held: bool = False
    """Fenced by a pause: a held step is never dispatched."""
    held_at: float | None = None
    released_before: bool = False
    released_after: bool = False
    dispatched_at: float | None = None
    finished_at: float | None = None
    error: StepError | None = None
    lost: int = 0
    """How many times its task message disappeared and it was enqueued again."""


@attrs.frozen(kw_only=True)
class StepOutcome:
    """How a step's task ended (``<run>.outcome.<step>``), created once by its worker."""

    step: str
    task: str = ""
    status: StepStatus
    """Done, failed or cancelled."""
    generation: int = 0
    attempts: int = 0
    result: Any = None
    error: StepError | None = None
    worker: str = ""
    finished_at: float = 0.0


@attrs.frozen(kw_only=True)
class AttemptNote:
    """The last failed attempt of a running step that will be retried (``<run>.attempt.<step>``)."""

    step: str
    generation: int = 0
    attempts: int = 0
    error: StepError | None = None
    retry_at: float = 0.0


@attrs.frozen(kw_only=True)
class StepInfo(StepSpec):
    """One step of a run as readers see it: its spec, state, outcome and retry note merged
    (`merge`)."""

    status: StepStatus = StepStatus.PENDING
    generation: int = 0
    attempts: int = 0
    error: StepError | None = None
    result: Any = None
    held: bool = False
    held_at: float | None = None
    released_before: bool = False
    released_after: bool = False
    dispatched_at: float | None = None
    retry_at: float | None = None
    """When its next attempt is due, while a failed attempt waits to be retried."""
    finished_at: float | None = None
    worker: str = ""
    lost: int = 0

    @property
    def deps(self) -> tuple[str, ...]:
        return self.requires + self.awaits


_SPEC_FIELDS = tuple(a.name for a in attrs.fields(StepSpec))
_STATE_FIELDS = tuple(a.name for a in attrs.fields(StepState) if a.name != "id")


def spec_fields(spec: StepSpec) -> dict[str, Any]:
    """A spec's fields by name (what `merge` starts from; a reader merging a step often keeps
    them)."""
    return {name: getattr(spec, name) for name in _SPEC_FIELDS}


def merge(
    spec: StepSpec,
    state: StepState | None = None,
    outcome: StepOutcome | None = None,
    note: AttemptNote | None = None,
    *,
    state_first: bool = False,
    base: dict[str, Any] | None = None,
) -> StepInfo:
    """A step as readers see it: its spec and state, with its outcome (or its retry note) over
    them. ``state_first``: the state's terminal status was written before the outcome.
    ``base``: ``spec_fields(spec)``, when the caller has it."""
    fields = dict(base) if base is not None else spec_fields(spec)
    if state is not None:
        fields.update(
            status=state.status,
            generation=state.generation,
            held=state.held,
            held_at=state.held_at,
            released_before=state.released_before,
            released_after=state.released_after,
            dispatched_at=state.dispatched_at,
            finished_at=state.finished_at,
            error=state.error,
            lost=state.lost,
        )
    status = fields.get("status", StepStatus.PENDING)
    if outcome is not None and not (status.terminal and state_first):
        fields.update(
            status=outcome.status,
            attempts=outcome.attempts,
            result=outcome.result,
            error=outcome.error,
            worker=outcome.worker,
            finished_at=outcome.finished_at,
        )
    elif note is not None and status is StepStatus.RUNNING:
        fields.update(attempts=note.attempts, error=note.error, retry_at=note.retry_at)
    return StepInfo(**fields)


def ended(
    state: StepState | None, outcome: StepOutcome | None, *, state_first: bool = False
) -> StepState | StepOutcome | None:
    """The record that ends a step (its outcome, or its state when skipped, cancelled or
    lost), or None while it has not ended."""
    if state is not None and state.status.terminal and (state_first or outcome is None):
        return state
    return outcome


@attrs.frozen
class SignalInfo:
    """A delivered signal (``<run>.signal.<base64url(name)>``); immutable once written."""

    name: str
    payload: Any = None
    sent_at: float = 0.0


Record = RunInfo | SpecChunk | StepState | StepOutcome | AttemptNote | SignalInfo


# --- keys ----------------------------------------------------------------------------------


def meta_key(run_id: str) -> str:
    return f"{run_id}.meta"


def step_key(run_id: str, step_id: str) -> str:
    return f"{run_id}.step.{step_id.replace('.', '/')}"


def spec_key(run_id: str, index: int | str) -> str:
    """A spec chunk's key: a number for a submitted chunk, ``x-<step>`` for an added step."""
    return f"{run_id}.spec.{index}"


def added_spec_key(run_id: str, step_id: str) -> str:
    return f"{run_id}.spec.x-{step_id.replace('.', '/')}"


def specs_key(run_id: str) -> str:
    return f"{run_id}.spec.*"


def outcome_key(run_id: str, step_id: str) -> str:
    return f"{run_id}.outcome.{step_id.replace('.', '/')}"


def attempt_key(run_id: str, step_id: str) -> str:
    return f"{run_id}.attempt.{step_id.replace('.', '/')}"


def step_keys(run_id: str, step_id: str) -> str:
    """The record, outcome and attempt note of one step (a key filter)."""
    return f"{run_id}.*.{step_id.replace('.', '/')}"


def signal_key(run_id: str, name: str) -> str:
    token = base64.urlsafe_b64encode(name.encode()).decode()
    return f"{run_id}.signal.{token}"


def run_keys(run_id: str) -> str:
    return f"{validate_run_id(run_id)}.>"


def kind_of(key: str) -> tuple[str, str]:
    """``(run id, kind)`` of a key: ``meta``, ``spec``, ``step``, ``outcome``, ``attempt``,
    ``signal`` (else ``""``)."""
    run_id, _, rest = key.partition(".")
    kind = rest.partition(".")[0]
    return run_id, kind if kind in _TYPES else ""


# --- encoding ------------------------------------------------------------------------------


def _structure_spec(data: Any, _: object) -> StepSpec:
    """A `StepSpec` from its JSON (written for speed: a run's specs are read in bulk, and
    most of their fields are absent, at their defaults)."""
    try:
        get = data.get
        refs = get("refs")
        headers = get("headers")
        spec = StepSpec(
            id=_text(data["id"]),
            task=_text(data["task"]),
            queue=_text(get("queue", "default")),
            priority=int(get("priority", 0)),
            headers={_text(k): _text(v) for k, v in headers.items()} if headers else {},
            deadline_after=get("deadline_after"),
            payload=get("payload"),
            refs=tuple(
                ArgRef(
                    tuple(ref["path"]),
                    ref.get("step"),
                    ref.get("signal"),
                    bool(ref.get("has_default", False)),
                    ref.get("default"),
                )
                for ref in refs
            )
            if refs
            else (),
            requires=_texts(get("requires")),
            awaits=_texts(get("awaits")),
            signals=_texts(get("signals")),
            optional=bool(get("optional", False)),
            break_before=_texts(get("break_before")),
            break_after=_texts(get("break_after")),
            parent=get("parent"),
            added_at=float(get("added_at", 0.0)),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a step spec: {type(exc).__name__}: {exc}") from None
    return spec


def _texts(values: Any) -> tuple[str, ...]:
    return tuple(map(_text, values)) if values else ()


def _unstructure_spec(spec: StepSpec) -> dict[str, Any]:
    """A `StepSpec` as JSON, fields at their defaults left out (`_structure_spec` restores
    them): a run's specs are written and read in bulk, and a fan-out's steps are mostly
    defaults."""
    data: dict[str, Any] = {"id": spec.id, "task": spec.task}
    if spec.queue != "default":
        data["queue"] = spec.queue
    if spec.priority:
        data["priority"] = spec.priority
    if spec.headers:
        data["headers"] = spec.headers
    if spec.deadline_after is not None:
        data["deadline_after"] = spec.deadline_after
    data["payload"] = spec.payload
    if spec.refs:
        data["refs"] = [_unstructure_ref(ref) for ref in spec.refs]
    for name in ("requires", "awaits", "signals", "break_before", "break_after"):
        value = getattr(spec, name)
        if value:
            data[name] = list(value)
    if spec.optional:
        data["optional"] = True
    if spec.parent is not None:
        data["parent"] = spec.parent
    data["added_at"] = spec.added_at
    return data


def _unstructure_ref(ref: ArgRef) -> dict[str, Any]:
    data: dict[str, Any] = {"path": list(ref.path)}
    if ref.step is not None:
        data["step"] = ref.step
    if ref.signal is not None:
        data["signal"] = ref.signal
    if ref.has_default:
        data["has_default"] = True
        data["default"] = ref.default
    return data


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _unstructure_error(error: StepError | None) -> dict[str, str] | None:
    return None if error is None else {"kind": error.kind, "message": error.message}


def _unstructure_state(state: StepState) -> dict[str, Any]:
    """A `StepState` as JSON (what cattrs would write, without its generic dispatch: the
    scheduler writes one per dispatch)."""
    return {
        "id": state.id,
        "status": state.status.value,
        "generation": state.generation,
        "held": state.held,
        "held_at": state.held_at,
        "released_before": state.released_before,
        "released_after": state.released_after,
        "dispatched_at": state.dispatched_at,
        "finished_at": state.finished_at,
        "error": _unstructure_error(state.error),
        "lost": state.lost,
    }


def _unstructure_outcome(outcome: StepOutcome) -> dict[str, Any]:
    """A `StepOutcome` as JSON (as cattrs would write it; a worker writes one per step)."""
    return {
        "step": outcome.step,
        "task": outcome.task,
        "status": outcome.status.value,
        "generation": outcome.generation,
        "attempts": outcome.attempts,
        "result": outcome.result,
        "error": _unstructure_error(outcome.error),
        "worker": outcome.worker,
        "finished_at": outcome.finished_at,
    }


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


converter.register_structure_hook(StepSpec, _structure_spec)
# Exactly StepSpec: its subclass StepInfo (what readers get) unstructures with every field.
converter.register_unstructure_hook_func(lambda cls: cls is StepSpec, _unstructure_spec)
converter.register_unstructure_hook_func(lambda cls: cls is StepState, _unstructure_state)
converter.register_unstructure_hook_func(lambda cls: cls is StepOutcome, _unstructure_outcome)


# One compact encoder for every record (``json.dumps`` with options builds a new one per
# call); the C encoder where there is one, without circular-reference markers: records are
# trees the converter has just built.
_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _c_encoder is not None:
    _c_encoder = _c_encoder(
        None, _not_serializable, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )


def dumps(document: Any) -> bytes:
    """Compact JSON bytes of a JSON document (dicts, lists, strings, numbers, None)."""
    if _c_encoder is None:  # pragma: no cover - a Python without the C accelerator
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return "".join(_c_encoder(document, 0)).encode()


def encode(record: object) -> bytes:
    return dumps(converter.unstructure(record))


_TYPES: dict[str, type[Any]] = {
    "meta": RunInfo,
    "spec": SpecChunk,
    "step": StepState,
    "outcome": StepOutcome,
    "attempt": AttemptNote,
    "signal": SignalInfo,
}


def decode(key: str, data: bytes) -> Record:
    """The record stored under ``key``.

    Raises:
        ValueError: not a record of a DAG run.
    """
    kind = kind_of(key)[1]
    if not kind:
        raise ValueError(f"key {key!r} is not a key of a DAG run")
    try:
        document, _fence = split_fence(json.loads(data))
        record: Record = converter.structure(document, _TYPES[kind])
    except Exception as exc:
        raise ValueError(f"key {key!r} does not hold a valid DAG {kind} record: {exc}") from exc
    return record


CHUNK_BYTES = 256 * 1024
"""Encoded size a spec chunk is filled to (a step bigger than that gets a chunk of its own)."""


def encode_chunks(steps: list[StepSpec]) -> list[bytes]:
    """``steps`` packed into encoded spec chunks of about `CHUNK_BYTES` each (each step is
    encoded once: a chunk is ``{"steps": [...]}`` around the encoded steps)."""
    packed: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for step in steps:
        data = encode(step)
        if current and size + len(data) > CHUNK_BYTES:
            packed.append(b'{"steps":[' + b",".join(current) + b"]}")
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        packed.append(b'{"steps":[' + b",".join(current) + b"]}")
    return packed


def truncate_message(message: str, limit: int = MAX_ERROR_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes (on a character boundary) plus "…"."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[:limit].decode(errors="ignore") + "…"


def check_ids(run_id: str, step_id: str) -> None:
    validate_run_id(run_id)
    validate_step_id(step_id)
