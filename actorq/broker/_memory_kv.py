"""Key-value buckets on the memory broker, built the way JetStream builds them.

A bucket is a stream ``KV_<bucket>`` on ``$KV.<bucket>.>`` keeping ``history`` messages per
subject; a key's revision is its message's stream sequence. Writes are publishes (plain
subscribers on ``$KV.>`` see them, as on the server): a delete is a ``KV-Operation: DEL``
marker, a purge a ``KV-Operation: PURGE`` marker that rolls up the key's history; create and
update are publishes with ``Nats-Expected-Last-Subject-Sequence`` (0, or the revision), and a
create over a deleted key retries against the marker's revision, like nats.go and nats-py.
Per-key TTL is ``Nats-TTL`` on the write: a write with a TTL (re)starts it, a write without
one is a revision that never expires (measured on the server, like the rest); with
``allow_per_key_ttl`` the bucket also gets a one-second subject delete marker TTL, so a key
that expires leaves a purge marker watches see (nats-py's ``limit_marker_ttl``).
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .._errors import KeyExists, NotFound, PublishFailed, WrongRevision
from . import _subjects
from ._memory_headers import MARKER_REASON, SequenceMismatch
from ._memory_time import Waker
from ._protocol import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    ROLLUP,
    TTL,
    CaughtUp,
    KvConfig,
    KvEntry,
    KvOperation,
    Message,
    PubAck,
    StreamConfig,
    WatchEvent,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from ._memory_stream import MemStream, StoredMsg
    from ._memory_time import Engine

KV_OPERATION = "KV-Operation"
MARKER_TTL = 1.0
"""Seconds a bucket's subject delete markers live (the server's minimum TTL)."""
MAX_HISTORY = 64


def ttl_value(ttl: float) -> str:
    """The ``Nats-TTL`` of a write: whole seconds, else milliseconds (the stream keeps whole
    seconds, and refuses less than one)."""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    if float(ttl).is_integer():
        return str(int(ttl))
    return f"{max(round(ttl * 1000), 1)}ms"


def operation(headers: Mapping[str, str]) -> KvOperation:
    """What a message in a bucket stream means (server-placed markers are purges)."""
    op = headers.get(KV_OPERATION)
    if op == "DEL":
        return KvOperation.DELETE
    if op == "PURGE":
        return KvOperation.PURGE
    reason = headers.get(MARKER_REASON)
    if reason in ("MaxAge", "Purge"):
        return KvOperation.PURGE
    if reason == "Remove":
        return KvOperation.DELETE
    return KvOperation.PUT


def _entry(bucket: str, msg: StoredMsg) -> KvEntry:
    key = msg.subject[len(f"$KV.{bucket}.") :]
    op = operation(msg.headers)
    value = msg.data if op is KvOperation.PUT else b""
    return KvEntry(bucket, key, value, msg.seq, op, msg.timestamp)


class MemoryKv:
    """The key-value half of `MemoryBroker` (a mixin: it uses the broker's streams)."""

    if TYPE_CHECKING:
        _engine: Engine

        def _ready(self) -> None: ...

        def _stream(self, name: str) -> MemStream: ...

        def _ensure_stream(
            self, config: StreamConfig, *, marker_ttl: float | None = None
        ) -> None: ...

        def _delete_stream(self, name: str) -> None: ...

        def _publish(self, message: Message, *, core_only: bool = False) -> PubAck | None: ...

    def _bucket(self, bucket: str) -> MemStream:
        self._ready()
        try:
            return self._stream(f"KV_{_subjects.check_bucket(bucket)}")
        except NotFound:
            raise NotFound(f"KV bucket {bucket!r} not found") from None

    async def ensure_kv(self, config: KvConfig) -> None:
        self._ready()
        bucket = _subjects.check_bucket(config.bucket)
        if not 1 <= config.history <= MAX_HISTORY:
            raise ValueError(f"bucket {bucket!r}: history must be 1 to {MAX_HISTORY}")
        window = min(120.0, config.max_age) if config.max_age else 120.0
        stream = StreamConfig(
            name=f"KV_{bucket}",
            subjects=[f"$KV.{bucket}.>"],
            storage=config.storage,
            replicas=config.replicas,
            max_age=config.max_age,
            max_msgs_per_subject=config.history,
            duplicate_window=window,
            allow_rollup=True,
            allow_msg_ttl=config.allow_per_key_ttl,
        )
        self._ensure_stream(stream, marker_ttl=MARKER_TTL if config.allow_per_key_ttl else None)
        await trio.lowlevel.checkpoint()

    async def delete_kv(self, bucket: str) -> None:
        self._bucket(bucket)
        self._delete_stream(f"KV_{bucket}")
        await trio.lowlevel.checkpoint()

    def _write(
        self,
        bucket: str,
        key: str,
        value: bytes,
        headers: dict[str, str],
        *,
        ttl: float | None = None,
        expected: int | None = None,
    ) -> int:
        stream = self._bucket(bucket)
        _subjects.check_key(key)
        if ttl is not None:
            if not stream.config.allow_msg_ttl:
                raise PublishFailed(
                    f"bucket {bucket!r} does not allow per-key TTL (create it with"
                    " allow_per_key_ttl=True)"
                )
            headers[TTL] = ttl_value(ttl)
        if expected is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected)
        ack = self._publish(Message(f"$KV.{bucket}.{key}", value, headers))
        assert ack is not None
        return ack.seq

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        stream = self._bucket(bucket)
        msg = stream.last_on(f"$KV.{bucket}.{_subjects.check_key(key)}")
        await trio.lowlevel.checkpoint()
        if msg is None or operation(msg.headers) is not KvOperation.PUT:
            return None
        return _entry(bucket, msg)

    async def kv_put(self, bucket: str, key: str, value: bytes, *, ttl: float | None = None) -> int:
        revision = self._write(bucket, key, value, {}, ttl=ttl)
        await trio.lowlevel.checkpoint()
        return revision

    async def kv_create(
        self, bucket: str, key: str, value: bytes, *, ttl: float | None = None
    ) -> int:
        try:
            revision = self._write(bucket, key, value, {}, ttl=ttl, expected=0)
        except SequenceMismatch as exc:
            last = self._bucket(bucket).last_on(f"$KV.{bucket}.{key}")
            if last is None or operation(last.headers) is KvOperation.PUT:
                raise KeyExists(
                    f"key {key!r} already exists in bucket {bucket!r} (revision {exc.last_seq})"
                ) from None
            # The key was deleted or purged: its marker is the revision to write over.
            revision = self._write(bucket, key, value, {}, ttl=ttl, expected=last.seq)
        await trio.lowlevel.checkpoint()
        return revision

    async def kv_update(
        self, bucket: str, key: str, value: bytes, revision: int, *, ttl: float | None = None
    ) -> int:
        try:
            new = self._write(bucket, key, value, {}, ttl=ttl, expected=revision)
        except SequenceMismatch as exc:
            raise _wrong_revision(bucket, key, revision, exc) from None
        await trio.lowlevel.checkpoint()
        return new

    async def kv_delete(self, bucket: str, key: str, *, revision: int | None = None) -> None:
        try:
            self._write(bucket, key, b"", {KV_OPERATION: "DEL"}, expected=revision)
        except SequenceMismatch as exc:
            assert revision is not None
            raise _wrong_revision(bucket, key, revision, exc) from None
        await trio.lowlevel.checkpoint()

    async def kv_purge(self, bucket: str, key: str) -> None:
        self._write(bucket, key, b"", {KV_OPERATION: "PURGE", ROLLUP: "sub"})
        await trio.lowlevel.checkpoint()

    async def kv_keys(self, bucket: str) -> list[str]:
        stream = self._bucket(bucket)
        prefix = f"$KV.{bucket}."
        keys = [
            subject[len(prefix) :]
            for subject, seqs in stream.by_subject.items()
            if operation(stream.messages[next(reversed(seqs))].headers) is KvOperation.PUT
        ]
        await trio.lowlevel.checkpoint()
        return sorted(keys)

    @asynccontextmanager
    async def kv_watch(
        self,
        bucket: str,
        key: str = ">",
        *,
        include_history: bool = False,
        updates_only: bool = False,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        stream = self._bucket(bucket)
        _subjects.check_key(key, wildcards=True)
        watch = KvWatch(self._engine, stream, bucket, key, include_history, updates_only)
        try:
            await trio.lowlevel.checkpoint()
            yield watch
        finally:
            watch.close()


def _wrong_revision(bucket: str, key: str, revision: int, exc: SequenceMismatch) -> WrongRevision:
    return WrongRevision(
        f"bucket {bucket!r} key {key!r}: revision {revision} is not the latest"
        f" (the latest is {exc.last_seq or 'none: the key is absent'})"
    )


class KvWatch:
    """A bucket watch: the existing entries, `CaughtUp`, then every change as it is stored.

    Like an ordered consumer, it is told of each message the moment it is stored, so a change
    that is gone again before the watcher reads it (a short-lived marker) is still seen. It
    pauses while the broker is disconnected.
    """

    def __init__(
        self,
        engine: Engine,
        stream: MemStream,
        bucket: str,
        key: str,
        include_history: bool,
        updates_only: bool,
    ) -> None:
        self._engine = engine
        self._stream = stream
        self._bucket = bucket
        self._filter = f"$KV.{bucket}.{key}"
        self._events: deque[WatchEvent] = deque()
        self._closed = False
        if not updates_only:
            if include_history:
                initial = [m for m in stream.messages.values() if self._wants(m)]
            else:
                lasts = (
                    stream.messages[next(reversed(seqs))]
                    for subject, seqs in stream.by_subject.items()
                    if _subjects.matches(self._filter, subject)
                )
                initial = sorted(lasts, key=lambda m: m.seq)
            self._events.extend(_entry(bucket, m) for m in initial)
        self._events.append(CaughtUp())
        self._waker = Waker(engine)
        stream.watchers.add(self)

    def _wants(self, msg: StoredMsg) -> bool:
        return _subjects.matches(self._filter, msg.subject)

    def on_store(self, msg: StoredMsg) -> None:
        if self._wants(msg):
            self._events.append(_entry(self._bucket, msg))
            self._waker.wake()

    def on_close(self) -> None:
        self._waker.wake()

    def __aiter__(self) -> KvWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not (self._events and self._engine.connected):
            if self._closed:
                raise StopAsyncIteration
            if self._stream.deleted:
                raise NotFound(f"KV bucket {self._bucket!r} was deleted")
            await self._waker.wait()
        return self._events.popleft()

    def take_ready(self) -> list[WatchEvent]:
        """The events already here, without waiting (none while disconnected)."""
        if not self._engine.connected:
            return []
        events = list(self._events)
        self._events.clear()
        return events

    async def aclose(self) -> None:
        """End the iteration (for ``contextlib.aclosing``): the watch closes."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._closed = True
        self._stream.watchers.discard(self)
        self._waker.close()
