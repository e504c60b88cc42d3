"""Key-value buckets on JetStream (loop side of the Bridge).

A bucket is a stream ``KV_<bucket>`` with subjects ``$KV.<bucket>.>``, one subject per key,
laid out exactly as NATS's own KV clients expect (so ``nats kv`` and other languages read the
same buckets). Writes are publishes with JetStream headers: ``Nats-Expected-Last-Subject-
Sequence`` for compare-and-set, ``KV-Operation: DEL|PURGE`` (+ ``Nats-Rollup: sub``) for
deletes and purges, ``Nats-TTL`` for per-key time to live. A TTL write with an expected
sequence is also how a key's TTL is renewed: nats-py's ``kv.update`` sends no TTL, so it
does not restart one (measured).

Reads use direct get. Expired keys leave a server-placed marker (``Nats-Marker-Reason``) when
the bucket allows per-key TTL; like delete and purge markers, it reads as "no live value".
Watches run an ordered push consumer (spoken here, on an inbox taken at nats-py's dispatch
point: see `Watch`) and emit `CaughtUp` once the values that existed at the start have been
delivered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._errors import KeyExists, NotFound, PublishFailed, WrongRevision
from ._jetstream_admin import Admin, ApiError, ApiNotFound, nanos
from ._jetstream_wire import (
    LAST_SEQUENCE_PATTERN,
    WRONG_LAST_SEQUENCE,
    ApiPublishFailed,
    Wire,
)
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
    WatchEvent,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

    from ..actors._bridge_loop import LoopSide

logger = logging.getLogger("actorq.jetstream")

KV_OPERATION = "KV-Operation"
MARKER_REASON = "Nats-Marker-Reason"
_WATCH_INACTIVE_THRESHOLD = 30.0
"""Seconds the server keeps a watch's ephemeral consumer after the watch ends."""
_HEARTBEAT = 5.0
"""Seconds between a watch consumer's idle heartbeats."""
_SILENT_HEARTBEATS = 3
"""Heartbeats missed in a row before a watch's consumer is presumed gone and created anew."""
_MARKER_TTL = 1.0
"""Seconds an expiry marker stays in a bucket with per-key TTL (long enough for watchers)."""


def stream_name(bucket: str) -> str:
    return f"KV_{bucket}"


def key_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def ttl_value(ttl: float) -> str:
    """A ``Nats-TTL`` value: whole seconds as an integer, else milliseconds (Go duration)."""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    if float(ttl).is_integer():
        return str(int(ttl))
    return f"{max(int(round(ttl * 1000)), 1)}ms"


def operation_of(headers: Any) -> KvOperation:
    if not headers:
        return KvOperation.PUT
    op = headers.get(KV_OPERATION)
    if op == "DEL":
        return KvOperation.DELETE
    if op == "PURGE":
        return KvOperation.PURGE
    reason = headers.get(MARKER_REASON)
    if reason is not None:
        # Server-placed markers: expiry (MaxAge), purge, or removal.
        return KvOperation.DELETE if reason == "Remove" else KvOperation.PURGE
    return KvOperation.PUT


class Kv:
    """KV operations for one connection."""

    def __init__(self, side: LoopSide, admin: Admin, wire: Wire) -> None:
        self.side = side
        self.admin = admin
        self.wire = wire
        self.js: JetStreamContext = side.nc.jetstream(timeout=admin.timeout)

    # --- buckets --------------------------------------------------------------------

    async def ensure_kv(self, config: KvConfig) -> None:
        duplicate_window = 120.0
        if config.max_age is not None:
            duplicate_window = min(duplicate_window, config.max_age)
        body: dict[str, Any] = {
            "name": stream_name(config.bucket),
            "subjects": [f"$KV.{config.bucket}.>"],
            "retention": "limits",
            "storage": config.storage.value,
            "num_replicas": config.replicas,
            "max_msgs_per_subject": config.history,
            "max_age": nanos(config.max_age),
            "max_msgs": -1,
            "max_bytes": -1,
            "max_msg_size": -1,
            "max_consumers": -1,
            "discard": "new",
            "duplicate_window": nanos(duplicate_window),
            "allow_rollup_hdrs": True,
            "deny_delete": True,
            "allow_direct": True,
        }
        if config.allow_per_key_ttl:
            body["allow_msg_ttl"] = True
            # Expiry leaves a short-lived marker, so watchers see a key expire.
            body["subject_delete_marker_ttl"] = nanos(_MARKER_TTL)
        name = stream_name(config.bucket)
        what = f"KV bucket {config.bucket!r}"
        try:
            await self.admin.api(f"$JS.API.STREAM.CREATE.{name}", body, f"create {what}")
        except ApiError as exc:
            if exc.err_code != 10058:
                raise
            await self.admin.api(f"$JS.API.STREAM.UPDATE.{name}", body, f"update {what}")

    async def delete_kv(self, bucket: str) -> None:
        try:
            await self.admin.delete_stream(stream_name(bucket))
        except ApiNotFound:
            raise NotFound(f"no KV bucket {bucket!r}") from None

    # --- reads ----------------------------------------------------------------------

    async def get(self, bucket: str, key: str) -> KvEntry | None:
        try:
            stored = await self.admin.get(
                stream_name(bucket), {"last_by_subj": key_subject(bucket, key)}
            )
        except ApiNotFound:
            raise NotFound(f"no KV bucket {bucket!r}") from None
        if stored is None or operation_of(stored.headers) is not KvOperation.PUT:
            return None
        return KvEntry(bucket, key, stored.data, stored.seq, KvOperation.PUT, stored.timestamp)

    async def keys(self, bucket: str) -> list[str]:
        live: dict[str, bool] = {}
        done = asyncio.get_running_loop().create_future()

        def collect(events: list[WatchEvent]) -> None:
            for event in events:
                if isinstance(event, CaughtUp):
                    if not done.done():
                        done.set_result(None)
                else:
                    live[event.key] = event.operation is KvOperation.PUT

        watch = Watch(self, bucket, ">", collect, _raise_in_loop, headers_only=True)
        await watch.open()
        try:
            await done
        finally:
            await watch.close()
        return sorted(key for key, alive in live.items() if alive)

    # --- writes ---------------------------------------------------------------------

    async def _write(self, bucket: str, key: str, value: bytes, headers: dict[str, str]) -> int:
        [result] = await self.wire.publish_many([Message(key_subject(bucket, key), value, headers)])
        if isinstance(result, PubAck):
            return result.seq
        if "no stream listens" in str(result):
            raise NotFound(f"no KV bucket {bucket!r}")
        raise result

    async def put(self, bucket: str, key: str, value: bytes, ttl: float | None) -> int:
        headers = {TTL: ttl_value(ttl)} if ttl is not None else {}
        return await self._write(bucket, key, value, headers)

    async def create(self, bucket: str, key: str, value: bytes, ttl: float | None) -> int:
        headers = {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}
        if ttl is not None:
            headers[TTL] = ttl_value(ttl)
        for _ in range(5):
            try:
                return await self._write(bucket, key, value, headers)
            except ApiPublishFailed as exc:
                if exc.err_code not in WRONG_LAST_SEQUENCE:
                    raise
            # Something is stored under the key: a live value, or a delete/expiry marker
            # that a create may replace (expecting the marker's revision).
            latest = await self.admin.get(
                stream_name(bucket), {"last_by_subj": key_subject(bucket, key)}
            )
            if latest is not None and operation_of(latest.headers) is KvOperation.PUT:
                raise KeyExists(
                    f"key {key!r} already exists in KV bucket {bucket!r} (revision {latest.seq})"
                )
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(latest.seq if latest else 0)
        raise KeyExists(f"key {key!r} in KV bucket {bucket!r} kept changing during create")

    async def update(
        self, bucket: str, key: str, value: bytes, revision: int, ttl: float | None
    ) -> int:
        headers = {EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)}
        if ttl is not None:
            headers[TTL] = ttl_value(ttl)
        try:
            return await self._write(bucket, key, value, headers)
        except ApiPublishFailed as exc:
            raise _wrong_revision(exc, bucket, key, revision) from None

    async def delete(self, bucket: str, key: str, revision: int | None) -> None:
        headers = {KV_OPERATION: "DEL"}
        if revision is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(revision)
        try:
            await self._write(bucket, key, b"", headers)
        except ApiPublishFailed as exc:
            raise _wrong_revision(exc, bucket, key, revision) from None

    async def purge(self, bucket: str, key: str) -> None:
        await self._write(bucket, key, b"", {KV_OPERATION: "PURGE", ROLLUP: "sub"})


def _wrong_revision(
    exc: ApiPublishFailed, bucket: str, key: str, revision: int | None
) -> PublishFailed:
    if exc.err_code not in WRONG_LAST_SEQUENCE:
        return exc
    latest = LAST_SEQUENCE_PATTERN.search(str(exc))
    now = f"; the latest is {latest.group(1)}" if latest else ""
    return WrongRevision(
        f"KV bucket {bucket!r} key {key!r}: revision {revision} is not the latest{now}"
    )  # type: ignore[return-value]


def _raise_in_loop(error: BaseException) -> None:
    raise error


class Watch:
    """One KV watch: an ordered push consumer whose entries go to ``emit`` in batches.

    ``emit`` and ``fail`` run where the caller wants them: the trio side passes functions that
    `LoopSide.post` carries over; `Kv.keys` passes loop-side ones directly.

    It speaks the ordered-consumer protocol itself, as nats-py's ordered consumer does, but
    takes its messages at nats-py's dispatch point (`Inboxes`) instead of through a nats-py
    subscription, which builds a ``Msg``, parses its headers and metadata, queues it and runs
    a callback task per entry — most of a watch's cost when a DAG scheduler follows thousands
    of changes. An ephemeral push consumer (no acks, flow control, idle heartbeats, in memory)
    delivers to a fresh inbox; each entry's consumer sequence must follow the last one, else
    (a gap, a heartbeat naming another last sequence, silence for `_SILENT_HEARTBEATS`
    heartbeats, a reconnect) the consumer is created anew on a new inbox, starting after the
    last stream sequence seen, so no entry is lost or repeated.
    """

    def __init__(
        self,
        kv: Kv,
        bucket: str,
        key: str,
        emit: Callable[[list[WatchEvent]], None],
        fail: Callable[[BaseException], None],
        *,
        include_history: bool = False,
        updates_only: bool = False,
        headers_only: bool = False,
        post: Callable[..., None] | None = None,
    ) -> None:
        self.kv = kv
        self.bucket = bucket
        self.key = key
        self._emit = emit
        self._fail = fail
        self._post = post
        self.include_history = include_history
        self.updates_only = updates_only
        self.headers_only = headers_only
        self._prefix = f"$KV.{bucket}."
        self._stream = stream_name(bucket)
        self._buffer: list[WatchEvent] = []
        self._caught_up = False
        self._sub: Subscription | None = None
        self._generation = 0
        """Bumped with every consumer: messages for an inbox left behind are ignored."""
        self._dseq = 0
        """Consumer sequence of the last entry taken (the next must be one more)."""
        self._sseq = 0
        """Stream sequence of the last entry taken (a new consumer starts after it)."""
        self._closed = False
        self._resetting = False
        self._last_seen = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        if self.updates_only:
            policy: dict[str, Any] = {"deliver_policy": "new"}
        elif self.include_history:
            policy = {"deliver_policy": "all"}
        else:
            policy = {"deliver_policy": "last_per_subject"}
        loop = asyncio.get_running_loop()
        try:
            info = await self._start(policy)
            if self.updates_only:
                self._catch_up()
            elif info.get("num_pending", 0) == 0 and not info.get("delivered", {}).get(
                "consumer_seq", 0
            ):
                self._catch_up()  # nothing to deliver (else the last entry's pending is 0)
        except BaseException as exc:  # failed or cancelled half-way: leave nothing behind
            await self.close()
            if isinstance(exc, ApiNotFound):
                raise NotFound(f"no KV bucket {self.bucket!r}") from None
            raise
        self._last_seen = loop.time()
        self.kv.side.reconnect_listeners.append(self._on_reconnect)
        self._watchdog = loop.call_later(_HEARTBEAT, self._check_alive)

    async def _start(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Subscribe a fresh inbox and create a consumer delivering to it."""
        self._generation += 1
        generation = self._generation
        inbox = self.kv.side.nc.new_inbox()
        inboxes = self.kv.wire.inboxes

        def on_message(
            subject: str, reply: str, data: bytes, headers: dict[str, str] | None
        ) -> None:
            if generation == self._generation and not self._closed:
                self._on_message(subject, reply, data, headers)

        old, self._sub = self._sub, await inboxes.subscribe(inbox, on_message)
        self._dseq = 0
        if old is not None:
            await inboxes.unsubscribe(old)
        config = {
            "deliver_subject": inbox,
            "filter_subject": key_subject(self.bucket, self.key),
            "ack_policy": "none",
            "max_deliver": 1,
            "ack_wait": nanos(22 * 3600.0),
            "flow_control": True,
            "idle_heartbeat": nanos(_HEARTBEAT),
            "num_replicas": 1,
            "mem_storage": True,
            "headers_only": self.headers_only,
            "inactive_threshold": nanos(_WATCH_INACTIVE_THRESHOLD),
            **policy,
        }
        return await self.kv.admin.api(
            f"$JS.API.CONSUMER.CREATE.{self._stream}",
            {"stream_name": self._stream, "config": config},
            f"watch KV bucket {self.bucket!r}",
        )

    def _on_message(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self._last_seen = self.kv.side.loop.time()
        if not reply.startswith("$JS.ACK."):
            self._on_status(reply, headers or {})
            return
        tokens = reply.split(".")
        start = 2 if len(tokens) == 9 else 4  # ack subject layouts v1 and v2 (ADR-15)
        try:
            sseq = int(tokens[start + 3])
            dseq = int(tokens[start + 4])
            timestamp = int(tokens[start + 5]) / 1_000_000_000
            pending = int(tokens[start + 6])
        except (IndexError, ValueError):
            logger.warning("watch of %r: not an ack subject: %r", self.bucket, reply)
            return
        if dseq != self._dseq + 1:
            self._reset()  # a gap: start again after the last entry taken
            return
        self._dseq, self._sseq = dseq, sseq
        self._add(
            KvEntry(
                self.bucket,
                subject[len(self._prefix) :],
                data if not self.headers_only else b"",
                sseq,
                operation_of(headers),
                timestamp,
            )
        )
        if pending == 0 and not self._caught_up:
            self._catch_up()

    def _on_status(self, reply: str, headers: dict[str, str]) -> None:
        if headers.get("Status") != "100":
            return
        wire = self.kv.wire
        if reply:  # a flow-control request: entries are taken as they arrive, answer at once
            wire.queue_publish(reply, b"")
            return
        stalled = headers.get("Nats-Consumer-Stalled")
        if stalled:
            wire.queue_publish(stalled, b"")
        last = headers.get("Nats-Last-Consumer")
        if last is not None and last.isdigit() and int(last) != self._dseq:
            self._reset()  # the consumer delivered something we never got

    def _check_alive(self) -> None:
        if self._closed:
            return
        loop = self.kv.side.loop
        self._watchdog = loop.call_later(_HEARTBEAT, self._check_alive)
        silent = loop.time() - self._last_seen
        if silent > _SILENT_HEARTBEATS * _HEARTBEAT and self.kv.side.nc.is_connected:
            self._reset()  # no heartbeat: the consumer (or its server) is gone

    def _on_reconnect(self) -> None:
        self._reset()

    def _reset(self) -> None:
        if not (self._closed or self._resetting):
            self._resetting = True
            asyncio.ensure_future(self._restart())

    async def _restart(self) -> None:
        try:
            policy = {"deliver_policy": "by_start_sequence", "opt_start_seq": self._sseq + 1}
            await self._start(policy)
            self._last_seen = self.kv.side.loop.time()
        except ApiNotFound:
            self._fail_with(NotFound(f"no KV bucket {self.bucket!r}"))
        except Exception as exc:  # noqa: BLE001 - the watchdog or the next reconnect retries
            logger.debug("watch of %r: a new consumer failed: %r", self.bucket, exc)
        finally:
            self._resetting = False

    def _fail_with(self, error: BaseException) -> None:
        if self._post is not None:
            self._post(self._fail, error)
        else:
            self._fail(error)

    def _catch_up(self) -> None:
        if not self._caught_up:
            self._caught_up = True
            self._add(CaughtUp())

    def _add(self, event: WatchEvent) -> None:
        self._buffer.append(event)
        if len(self._buffer) == 1:
            self.kv.side.loop.call_soon(self._flush)

    def _flush(self) -> None:
        events, self._buffer = self._buffer, []
        if not events:
            return
        if self._post is not None:
            self._post(self._emit, events)
        else:
            self._emit(events)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        try:
            self.kv.side.reconnect_listeners.remove(self._on_reconnect)
        except ValueError:
            pass
        sub, self._sub = self._sub, None
        if sub is not None:
            # The consumer goes with its interest (after its inactive threshold).
            await self.kv.wire.inboxes.unsubscribe(sub)
