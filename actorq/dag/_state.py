"""Reading and writing a run's records: every write a compare-and-set on the revision read.

`DagStore` is the one door to the DAG bucket for the client (submit, control, awaiting), the
worker's step hook and the scheduler. Three kinds of writes:

- `DagStore.write_many`: compare-and-set writes on revisions the caller already knows (0 for
  "create"), in one window of acks — the submitter creating a run's spec chunks, the
  scheduler marking a batch of steps running. A KV bucket is a stream and a compare-and-set
  write is a publish to the key's subject with ``Nats-Expected-Last-Subject-Sequence``: these
  are the same messages ``kv_create``/``kv_update`` send, batched. A lost race is reported in
  place (`WrongRevision`, or `KeyExists` for a create) and the caller waits for the fresher
  record;
- `DagStore.create`: one create (a step's outcome, a signal: the first write wins);
- `DagStore.update_state` / `update_meta`: read-modify-write retried on conflicts (the
  client's control calls), where the change function raises `Unchanged` to write nothing.

`Loaded` is a run as a watch delivers it: records with their revisions (a record older than
the one held is ignored, so a snapshot and the changes after it may overlap), each step's
spec, state, outcome and attempt note merged into the `StepInfo` readers see, and what the
scheduler needs to plan incrementally: which steps changed since it last planned, who depends
on whom, how many steps are still open.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from .._errors import KeyExists, NotFound, WrongLastSequence, WrongRevision
from .._names import validate_key
from ..broker import EXPECTED_LAST_SUBJECT_SEQUENCE, CaughtUp, KvEntry, KvOperation, Message, PubAck
from ..kv._store import KvStore
from ._model import (
    AttemptNote,
    RunInfo,
    SignalInfo,
    SpecChunk,
    StepInfo,
    StepOutcome,
    StepSpec,
    StepState,
    decode,
    encode,
    kind_of,
    merge,
    meta_key,
    run_keys,
    spec_fields,
    step_key,
)
from ._plan import RunView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from .._names import Layout
    from ..broker import Broker, WatchEvent
    from ..kv._fencing import Fence

T = TypeVar("T")
M = TypeVar("M", RunInfo, StepState)

CONCURRENT_WRITES = 256
"""Read-modify-writes one control call keeps in flight at once."""


class Unchanged(Exception):  # noqa: N818 - a signal, not an error
    """Raised by an update's change function: there is nothing to write."""


@attrs.define
class Loaded:
    """A run's records with their revisions (see the module docstring)."""

    run_id: str
    meta: RunInfo | None = None
    revisions: dict[str, int] = attrs.field(factory=dict)
    specs: dict[str, StepSpec] = attrs.field(factory=dict)
    states: dict[str, StepState] = attrs.field(factory=dict)
    """Step id -> its state as stored (absent: nothing happened to it yet)."""
    outcomes: dict[str, tuple[StepOutcome, int]] = attrs.field(factory=dict)
    notes: dict[str, AttemptNote] = attrs.field(factory=dict)
    steps: dict[str, StepInfo] = attrs.field(factory=dict)
    """Step id -> the step as readers see it (`merge`)."""
    signals: dict[str, SignalInfo] = attrs.field(factory=dict)
    step_keys: dict[str, str] = attrs.field(factory=dict)
    """Step id -> the key of its state."""
    dependents: dict[str, list[str]] = attrs.field(factory=dict)
    open_steps: int = 0
    """Steps not terminal yet."""
    dirty: set[str] = attrs.field(factory=set)
    """Steps to plan again: changed, or depending on one that changed."""
    all_dirty: bool = True
    """Plan every step (a fresh snapshot, a change of the meta or of a signal)."""
    memo: dict[str, int] = attrs.field(factory=dict)
    _spec_fields: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    _by_key: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    def apply(self, entry: KvEntry) -> bool:
        """Take in one watched entry; True if it changed anything."""
        if entry.revision <= self.revisions.get(entry.key, 0):
            return False
        if entry.operation is not KvOperation.PUT:
            self.revisions[entry.key] = entry.revision
            self._forget(entry.key)
            return True
        self.put(entry.key, decode(entry.key, entry.value), entry.revision)
        return True

    def put(self, key: str, record: Any, revision: int) -> None:
        """Record a value written (or read) at ``revision``."""
        if revision < self.revisions.get(key, 0):
            return
        self.revisions[key] = revision
        if isinstance(record, RunInfo):
            self.meta = record
            self.all_dirty = True
        elif isinstance(record, SpecChunk):
            for spec in record.steps:
                self.add_spec(spec)
        elif isinstance(record, StepState):
            self.states[record.id] = record
            self._by_key[key] = ("step", record.id)
            self._merge(record.id)
        elif isinstance(record, StepOutcome):
            self.outcomes[record.step] = (record, revision)
            self._by_key[key] = ("outcome", record.step)
            self._merge(record.step)
        elif isinstance(record, AttemptNote):
            self.notes[record.step] = record
            self._by_key[key] = ("attempt", record.step)
            self._merge(record.step)
        elif isinstance(record, SignalInfo):
            self.signals[record.name] = record
            self._by_key[key] = ("signal", record.name)
            self.all_dirty = True

    def add_spec(self, spec: StepSpec) -> None:
        if spec.id in self.specs:
            return
        self.specs[spec.id] = spec
        self.step_keys[spec.id] = step_key(self.run_id, spec.id)
        for upstream in spec.requires + spec.awaits:
            self.dependents.setdefault(upstream, []).append(spec.id)
        self._merge(spec.id)

    def state_of(self, step_id: str) -> tuple[StepState, int]:
        """A step's state and its revision (a pending state and 0 when not written yet)."""
        state = self.states.get(step_id)
        if state is None:
            return StepState(id=step_id), 0
        return state, self.revisions.get(self.step_keys[step_id], 0)

    def _merge(self, step_id: str) -> None:
        spec = self.specs.get(step_id)
        if spec is None:
            return  # a state or outcome before its spec (a watch in key order)
        state = self.states.get(step_id)
        found = self.outcomes.get(step_id)
        first = (
            found is not None
            and state is not None
            and self.revisions.get(self.step_keys[step_id], 0) < found[1]
        )
        base = self._spec_fields.get(step_id)
        if base is None:
            base = self._spec_fields[step_id] = spec_fields(spec)
        merged = merge(
            spec, state, found[0] if found else None, self.notes.get(step_id),
            state_first=first, base=base,
        )  # fmt: skip
        before = self.steps.get(step_id)
        self.steps[step_id] = merged
        was_open = before is not None and not before.status.terminal
        self.open_steps += (not merged.status.terminal) - was_open
        self.dirty.add(step_id)
        if merged.status.terminal or not was_open:
            # Only an upstream's end (or a change of an ended one: a breakpoint released
            # after it) can move its dependents; a dispatch or a hold cannot.
            self.dirty.update(self.dependents.get(step_id, ()))

    def _forget(self, key: str) -> None:
        kind, name = self._by_key.pop(key, ("", ""))
        if kind == "" and kind_of(key)[1] == "meta":
            self.meta = None
        elif kind == "signal":
            self.signals.pop(name, None)
        elif kind == "outcome":
            self.outcomes.pop(name, None)
        elif kind == "attempt":
            self.notes.pop(name, None)
        elif kind == "step":
            self.states.pop(name, None)
        if name in self.specs:
            self._merge(name)
        self.all_dirty = True

    def revision(self, key: str) -> int:
        return self.revisions.get(key, 0)

    def view(self) -> RunView:
        assert self.meta is not None
        return RunView(
            self.meta, self.steps, self.signals, self.dependents, self.open_steps, self.memo
        )

    def take_dirty(self) -> set[str] | None:
        """The steps to plan (None: all of them), and start collecting afresh."""
        dirty = None if self.all_dirty else self.dirty
        self.dirty, self.all_dirty = set(), False
        return dirty


class DagStore:
    """The app's DAG bucket on one broker."""

    def __init__(self, broker: Broker, layout: Layout) -> None:
        self.broker = broker
        self.layout = layout
        self.bucket = layout.dags_bucket
        self._states = KvStore(broker, self.bucket, StepState)
        self._metas = KvStore(broker, self.bucket, RunInfo)

    # --- reads --------------------------------------------------------------------------

    async def get_meta(self, run_id: str) -> tuple[RunInfo, int] | None:
        entry = await self._metas.get(meta_key(run_id))
        return (entry.value, entry.revision) if entry is not None else None

    async def require_meta(self, run_id: str) -> tuple[RunInfo, int]:
        found = await self.get_meta(run_id)
        if found is None:
            raise NotFound(f"no DAG run {run_id!r} in app {self.layout.namespace!r}")
        return found

    async def get(self, key: str) -> tuple[Any, int] | None:
        """Any record of the bucket, decoded by its key, with its revision."""
        entry = await self.broker.kv_get(self.bucket, key)
        return (decode(key, entry.value), entry.revision) if entry is not None else None

    async def load(self, run_id: str, keys: str | None = None) -> Loaded:
        """The run's records now (or those matching ``keys``), from one watch snapshot."""
        loaded = Loaded(run_id)
        async with self.watch(keys or run_keys(run_id)) as events:
            async for event in events:
                if isinstance(event, CaughtUp):
                    break
                loaded.apply(event)
        return loaded

    @asynccontextmanager
    async def watch(
        self, keys: str, *, updates_only: bool = False
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """A raw watch of the bucket (records decode with `Loaded.apply` or `decode`)."""
        async with self.broker.kv_watch(self.bucket, keys, updates_only=updates_only) as events:
            yield events

    # --- writes -------------------------------------------------------------------------

    async def create(self, key: str, record: Any) -> int:
        """Write a key that was never written (a publish expecting no revision: a key that was
        deleted stays refused). Raises `KeyExists`."""
        try:
            return (await self.broker.publish(self.create_message(key, record))).seq
        except WrongLastSequence:
            raise KeyExists(f"key {key!r} already exists in {self.bucket!r}") from None

    def create_message(self, key: str, record: Any) -> Message:
        """The publish that writes ``key`` only if it was never written (see `create`)."""
        return Message(
            f"$KV.{self.bucket}.{validate_key(key)}",
            encode(record),
            {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"},
        )

    async def put(self, key: str, record: Any) -> int:
        return await self.broker.kv_put(self.bucket, key, encode(record))

    async def write_many(self, writes: Sequence[tuple[str, Any, int]]) -> list[int | Exception]:
        """Compare-and-set writes ``(key, record or its encoding, expected revision)`` in one
        window of acks (revision 0: create); the new revision of each, or its error in place."""
        if not writes:
            return []
        messages = [
            Message(
                f"$KV.{self.bucket}.{validate_key(key)}",
                record if isinstance(record, bytes) else encode(record),
                {EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)},
            )
            for key, record, revision in writes
        ]
        acks = await self.broker.publish_many(messages)
        results: list[int | Exception] = []
        for (key, _, revision), ack in zip(writes, acks, strict=True):
            if isinstance(ack, PubAck):
                results.append(ack.seq)
            elif isinstance(ack, WrongLastSequence) and revision == 0:
                results.append(KeyExists(f"key {key!r} already exists in {self.bucket!r}"))
            elif isinstance(ack, WrongLastSequence):
                results.append(
                    WrongRevision(f"{self.bucket!r} key {key!r}: revision {revision} is stale")
                )
            else:
                results.append(ack)
        return results

    async def update_state(
        self, step_id: str, key: str, change: Callable[[StepState], StepState]
    ) -> tuple[StepState, int] | None:
        """Read-modify-write a step's state (from a pending one if not written yet); None if
        ``change`` raised `Unchanged`."""
        return await self._update(self._states, key, change, None, StepState(id=step_id))

    async def update_meta(
        self, run_id: str, change: Callable[[RunInfo], RunInfo], *, fence: Fence | None = None
    ) -> tuple[RunInfo, int] | None:
        """Read-modify-write a run's meta (fenced by a leader's lease when ``fence`` is given);
        None if ``change`` raised `Unchanged`.

        Raises:
            NotFound: there is no such run.
            FencedOut: see ``fence``.
        """
        return await self._update(self._metas, meta_key(run_id), change, fence)

    async def _update(
        self,
        store: KvStore[M],
        key: str,
        change: Callable[[M], M],
        fence: Fence | None,
        default: M | None = None,
    ) -> tuple[M, int] | None:
        written: list[M] = []

        def apply(current: M) -> M:
            written.clear()
            new = change(current)
            written.append(new)
            return new

        try:
            if default is not None:
                revision = await store.update(key, apply, fence=fence, default=default)
            else:
                revision = await store.update(key, apply, fence=fence)
        except Unchanged:
            return None
        return written[0], revision


async def gather(
    calls: Sequence[Callable[[], Awaitable[T]]], *, limit: int = CONCURRENT_WRITES
) -> list[T | Exception]:
    """Run ``calls`` concurrently (at most ``limit`` at once); each one's result or error."""
    results: list[T | Exception] = [RuntimeError("not run")] * len(calls)
    limiter = trio.CapacityLimiter(limit)

    async def one(index: int, call: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[index] = await call()
            except Exception as exc:  # noqa: BLE001 - reported in place, like publish_many
                results[index] = exc

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(one, index, call)
    return results
