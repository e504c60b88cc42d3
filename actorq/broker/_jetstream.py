"""The JetStream broker: the `Broker` protocol on a real nats-server, through the Bridge.

Trio side only: every method validates its arguments, then hands the work to loop-side code
(`_jetstream_wire` for the hot path, `_jetstream_pull` for credit-based pulls,
`_jetstream_admin` for streams and consumers, `_jetstream_kv` for buckets) with one
`Bridge.call` or `Bridge.cast`. Acks, naks, terms and progress go on the wire's reply lane:
appended to a deque, with one cast per batch to write them, never waited for (the server does
not answer them).

Options beyond nats-py's (all keyword-only, popped before ``connect``):

- ``publish_window`` (4000): PubAcks outstanding at once, across every publisher;
- ``publish_timeout`` (10 s): how long a publish waits for its PubAck;
- ``request_timeout`` (5 s): JetStream API requests (streams, consumers, KV, gets);
- ``pull_expires`` (30 s) and ``pull_heartbeat`` (5 s): the pull requests that `pull()`
  subscriptions keep outstanding.
"""

from __future__ import annotations

import functools
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._errors import NotConnected, PublishFailed
from ..actors._bridge import Answer, Bridge, open_bridge
from ._jetstream_admin import Admin
from ._jetstream_kv import Kv, Watch
from ._jetstream_pull import PullState
from ._jetstream_streams import EventStream, PullSubscription
from ._jetstream_wire import (
    ACK,
    NAK,
    PROGRESS,
    TERM,
    CoreSubscription,
    SettleAfterPublish,
    Wire,
    nak_body,
)
from ._subjects import check_bucket, check_filter, check_key, check_literal, check_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from trio_util import AsyncValue

    from ._protocol import (
        ConnectionState,
        ConsumerConfig,
        ConsumerInfo,
        CoreMessage,
        Delivery,
        KvConfig,
        KvEntry,
        Message,
        PubAck,
        StoredMessage,
        StreamConfig,
        StreamInfo,
        WatchEvent,
    )

_CLEANUP_TIMEOUT = 5.0


class _LoopParts:
    """The loop-side objects of one broker, created on the loop after connecting."""

    def __init__(self, wire: Wire, admin: Admin, kv: Kv) -> None:
        self.wire = wire
        self.admin = admin
        self.kv = kv


class JetStreamBroker:
    """`Broker` on NATS JetStream. Open it with `open_jetstream_broker` (or `open_broker`)."""

    def __init__(
        self, bridge: Bridge, parts: _LoopParts, pull_expires: float, pull_heartbeat: float
    ):
        self._bridge = bridge
        self._wire = parts.wire
        self._lane = parts.wire.replies
        self._publishes = parts.wire.publishes
        self._admin = parts.admin
        self._kv = parts.kv
        self._pull_expires = pull_expires
        self._pull_heartbeat = pull_heartbeat

    @property
    def bridge(self) -> Bridge:
        """The Bridge this broker talks through (for its `Bridge.statistics`)."""
        return self._bridge

    def now(self) -> float:
        """The broker's wall clock: the server stamps messages with real time."""
        return time.time()

    @property
    def connection(self) -> AsyncValue[ConnectionState]:
        """Observable connection state (connecting, connected, reconnecting, closed)."""
        return self._bridge.connection

    # --- streams and consumers ------------------------------------------------------

    async def ensure_stream(self, config: StreamConfig) -> None:
        check_name(config.name, "stream name")
        for subject in config.subjects:
            check_filter(subject, "stream subject")
        await self._bridge.call(self._admin.ensure_stream, config)

    async def stream_info(self, name: str) -> StreamInfo:
        return await self._bridge.call(self._admin.stream_info, check_name(name, "stream name"))

    async def delete_stream(self, name: str) -> None:
        await self._bridge.call(self._admin.delete_stream, check_name(name, "stream name"))

    async def purge_stream(self, name: str, subject: str | None = None) -> int:
        if subject is not None:
            check_filter(subject)
        return await self._bridge.call(
            self._admin.purge_stream, check_name(name, "stream name"), subject
        )

    async def ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        check_name(stream, "stream name")
        check_name(config.name, "consumer name")
        for subject in config.filter_subjects:
            check_filter(subject, "filter subject")
        await self._bridge.call(self._admin.ensure_consumer, stream, config)

    async def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        return await self._bridge.call(self._admin.consumer_info, stream, name)

    async def delete_consumer(self, stream: str, name: str) -> None:
        await self._bridge.call(self._admin.delete_consumer, stream, name)

    # --- publishing -----------------------------------------------------------------

    async def publish(self, message: Message) -> PubAck:
        """Store a message and wait for the server's ack.

        Raises:
            PublishFailed: no stream listens on the subject, an expectation header failed,
                or no PubAck arrived in time.
        """
        result: PubAck = await self._bridge.answer(self._submit_publish, message)
        return result

    def _submit_publish(self, answer: Answer | SettleAfterPublish, message: Message) -> None:
        # The publish lane: one cast carries every publish queued until the loop gets to it.
        lane = self._publishes
        lane.items.append((message, answer))
        if not lane.scheduled:
            lane.scheduled = True
            try:
                self._bridge.cast(self._wire.drain_publishes)
            except BaseException:
                lane.scheduled = False
                raise

    def publish_then_settle(
        self,
        message: Message,
        delivery: Delivery,
        done: Callable[[BaseException | None], None],
        *,
        retry_delay: float,
    ) -> None:
        """Publish ``message`` on the publish lane; its PubAck acks (or naks) ``delivery`` on
        the loop thread, and ``done`` follows on trio's (see `Broker.publish_then_settle`)."""
        notice = self._bridge.notice(done)
        nak = nak_body(retry_delay) if retry_delay else NAK
        self._submit_publish(SettleAfterPublish(notice, self._wire, delivery.token, nak), message)

    async def publish_many(self, messages: Sequence[Message]) -> list[PubAck | PublishFailed]:
        """Publish a batch with one window of outstanding PubAcks; one result per message."""
        if not messages:
            await trio.lowlevel.checkpoint()
            return []
        return await self._bridge.call(self._wire.publish_many, messages)

    async def publish_core(self, message: Message) -> None:
        await self._bridge.call(self._wire.publish_core, message)

    @asynccontextmanager
    async def subscribe(self, subject: str) -> AsyncIterator[AsyncIterator[CoreMessage]]:
        """Every message published to ``subject`` (wildcards allowed) from now on."""
        check_filter(subject)
        stream: EventStream[CoreMessage] = EventStream(f"subscription {subject!r}")
        loop_sub = CoreSubscription(self._wire, subject, stream.push)
        await self._bridge.call(loop_sub.open)
        try:
            yield stream
        finally:
            stream.close()
            await self._cleanup(loop_sub.close)

    # --- consuming ------------------------------------------------------------------

    @asynccontextmanager
    async def pull(self, stream: str, consumer: str) -> AsyncIterator[PullSubscription]:
        """A credit-based pull subscription on a durable consumer.

        Raises:
            NotFound: no such stream or consumer.
        """
        check_name(stream, "stream name")
        check_name(consumer, "consumer name")
        await self.consumer_info(stream, consumer)
        state_box: list[PullState] = []

        def grant(n: int) -> None:
            self._bridge.cast(state_box[0].grant, n)

        def withdraw() -> None:
            self._bridge.cast(state_box[0].withdraw)

        subscription = PullSubscription(stream, consumer, grant, self._give_back, withdraw)
        state = await self._bridge.call(
            self._open_pull, stream, consumer, subscription.deliver, subscription.fail
        )
        state_box.append(state)
        try:
            yield subscription
        finally:
            self._give_back(subscription.close())
            await self._cleanup(state.close)

    async def _open_pull(self, stream: str, consumer: str, deliver: Any, fail: Any) -> PullState:
        # Loop side.
        state = PullState(
            self._wire,
            stream,
            consumer,
            deliver,
            fail,
            functools.partial(self._admin.consumer_info, stream, consumer),
            expires=self._pull_expires,
            heartbeat=self._pull_heartbeat,
        )
        try:
            await state.open()
        except BaseException:  # cancelled or failed half-way: leave nothing subscribed
            await state.close()
            raise
        return state

    async def fetch(
        self, stream: str, consumer: str, batch: int, *, expires: float
    ) -> list[Delivery]:
        """One pull request: up to ``batch`` messages, waiting at most ``expires`` seconds.

        Cancelling the caller cancels the request; deliveries that arrived for it meanwhile
        are given back (``-NAK``) at once.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if expires <= 0:
            raise ValueError(f"expires must be positive, got {expires}")
        check_name(stream, "stream name")
        check_name(consumer, "consumer name")
        check = functools.partial(self._admin.consumer_info, stream, consumer)
        return await self._bridge.call(self._wire.fetch, stream, consumer, batch, expires, check)

    async def ack(self, delivery: Delivery) -> None:
        await self._reply(delivery, ACK)

    async def nak(self, delivery: Delivery, delay: float | None = None) -> None:
        """Ask for redelivery, after ``delay`` seconds if given."""
        await self._reply(delivery, nak_body(delay) if delay else NAK)

    async def term(self, delivery: Delivery) -> None:
        await self._reply(delivery, TERM)

    async def in_progress(self, delivery: Delivery) -> None:
        await self._reply(delivery, PROGRESS)

    async def _reply(self, delivery: Delivery, body: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        lane = self._lane
        lane.items.append((delivery.token, body))  # type: ignore[arg-type]
        if not lane.scheduled:
            # One cast carries every reply queued until the loop gets to it.
            lane.scheduled = True
            self._bridge.cast(self._wire.drain_replies)

    def _give_back(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        lane = self._lane
        lane.items.extend((delivery.token, NAK) for delivery in deliveries)  # type: ignore[misc]
        try:
            self._bridge.cast(self._wire.drain_replies)
        except NotConnected:
            pass  # redelivered after ack_wait instead

    # --- reading stored messages ----------------------------------------------------

    async def get_last(self, stream: str, subject: str) -> StoredMessage | None:
        check_literal(subject)
        return await self._bridge.call(self._admin.get, stream, {"last_by_subj": subject})

    async def get_message(self, stream: str, seq: int) -> StoredMessage | None:
        return await self._bridge.call(self._admin.get, stream, {"seq": seq})

    async def get_next(
        self, stream: str, seq: int, subject: str | None = None
    ) -> StoredMessage | None:
        """The first stored message with a sequence >= ``seq`` (on ``subject``, wildcards
        allowed), or None."""
        check_filter(subject if subject is not None else ">")
        query = {"seq": max(seq, 1), "next_by_subj": subject if subject is not None else ">"}
        return await self._bridge.call(self._admin.get, check_name(stream, "stream name"), query)

    async def delete_message(self, stream: str, seq: int) -> None:
        await self._bridge.call(self._admin.delete_message, stream, seq)

    # --- key-value ------------------------------------------------------------------

    async def ensure_kv(self, config: KvConfig) -> None:
        check_bucket(config.bucket)
        await self._bridge.call(self._kv.ensure_kv, config)

    async def delete_kv(self, bucket: str) -> None:
        await self._bridge.call(self._kv.delete_kv, check_bucket(bucket))

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        return await self._bridge.call(self._kv.get, check_bucket(bucket), check_key(key))

    async def kv_put(self, bucket: str, key: str, value: bytes, *, ttl: float | None = None) -> int:
        return await self._bridge.call(
            self._kv.put, check_bucket(bucket), check_key(key), value, ttl
        )

    async def kv_create(
        self, bucket: str, key: str, value: bytes, *, ttl: float | None = None
    ) -> int:
        """Write only if the key has no live value. Raises `KeyExists`."""
        return await self._bridge.call(
            self._kv.create, check_bucket(bucket), check_key(key), value, ttl
        )

    async def kv_update(
        self, bucket: str, key: str, value: bytes, revision: int, *, ttl: float | None = None
    ) -> int:
        """Compare-and-set; with ``ttl`` also restarts the key's time to live.

        Raises:
            WrongRevision: ``revision`` is not the key's latest (the message names the bucket,
                the key, the revision and the latest).
        """
        return await self._bridge.call(
            self._kv.update, check_bucket(bucket), check_key(key), value, revision, ttl
        )

    async def kv_delete(self, bucket: str, key: str, *, revision: int | None = None) -> None:
        await self._bridge.call(self._kv.delete, check_bucket(bucket), check_key(key), revision)

    async def kv_purge(self, bucket: str, key: str) -> None:
        await self._bridge.call(self._kv.purge, check_bucket(bucket), check_key(key))

    async def kv_keys(self, bucket: str) -> list[str]:
        return await self._bridge.call(self._kv.keys, check_bucket(bucket))

    @asynccontextmanager
    async def kv_watch(
        self,
        bucket: str,
        key: str = ">",
        *,
        include_history: bool = False,
        updates_only: bool = False,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Existing values, then `CaughtUp`, then live changes (deletes and purges too)."""
        check_bucket(bucket)
        check_key(key, wildcards=True)
        events: EventStream[WatchEvent] = EventStream(f"watch of {bucket!r}")
        watch = Watch(
            self._kv,
            bucket,
            key,
            events.push,
            events.fail,
            include_history=include_history,
            updates_only=updates_only,
            post=self._bridge.loop_side.post,
        )
        await self._bridge.call(watch.open)
        try:
            yield events
        finally:
            events.close()
            await self._cleanup(watch.close)

    # --- helpers --------------------------------------------------------------------

    async def _cleanup(self, fn: Any) -> None:
        """Run a loop-side close even when the caller is being cancelled."""
        with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
            try:
                await self._bridge.call(fn)
            except NotConnected:
                pass


async def _make_parts(
    bridge: Bridge, window: int, publish_timeout: float, request_timeout: float
) -> _LoopParts:
    # Loop side: build the loop-side objects where they will live.
    side = bridge.loop_side
    wire = Wire(side, window=window, ack_timeout=publish_timeout)
    await wire.start()
    admin = Admin(side.nc, timeout=request_timeout)
    return _LoopParts(wire, admin, Kv(side, admin, wire))


@asynccontextmanager
async def open_jetstream_broker(
    url: str,
    *,
    publish_window: int = 4000,
    publish_timeout: float = 10.0,
    request_timeout: float = 5.0,
    pull_expires: float = 30.0,
    pull_heartbeat: float = 5.0,
    **nats_options: Any,
) -> AsyncIterator[JetStreamBroker]:
    """Connect to NATS through a Bridge and yield a `JetStreamBroker`; close on exit.

    ``nats_options`` go to nats-py's ``connect`` (user/password, token, credentials, TLS
    context, reconnect settings, name, ...); see the module docstring for the others.

    Raises:
        NotConnected: the first connect failed; the message names the URL and the reason.
    """
    async with open_bridge(url, **nats_options) as bridge:
        parts = await bridge.call(
            _make_parts, bridge, publish_window, publish_timeout, request_timeout
        )
        yield JetStreamBroker(bridge, parts, pull_expires, pull_heartbeat)
