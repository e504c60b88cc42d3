"""The memory broker: JetStream's semantics in pure trio, in one process.

``open_broker("memory://NAME")`` opens the broker registered under NAME in the current trio
run; every opener of the name shares it and the last one to leave discards it. It is a product
feature, not a mock: streams, consumers, acks, KV buckets and schedules mean what they mean on
nats-server, and one conformance suite runs against both. Time runs on trio's clock
(`_memory_time`), so under ``autojump_clock`` hours of retries pass in milliseconds.

One job per module: `_memory_stream` (storage, limits, expiry, schedules), `_memory_headers`
(publish headers), `_memory_config` (config checks), `_memory_consumer` (deliveries, acks),
`_memory_subscriptions` (receiving ends), `_memory_kv` (buckets), `_memory_time` (the clock);
this module is the `Broker` surface: lookups, the connection and the registry.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs
import trio
from trio_util import AsyncValue

from .._errors import NotConnected, NotFound, PublishFailed, WrongLastSequence
from . import _subjects
from ._memory_config import check_consumer, check_stream, check_stream_update
from ._memory_consumer import AckToken, MemConsumer, PullRequest
from ._memory_headers import Refused, SequenceMismatch
from ._memory_kv import MemoryKv
from ._memory_stream import MemStream
from ._memory_subscriptions import CoreSubscription, MemoryPullSubscription, give_back
from ._memory_time import Engine, Waker
from ._protocol import (
    ConnectionState,
    ConsumerConfig,
    ConsumerInfo,
    CoreMessage,
    Delivery,
    Message,
    PubAck,
    StoredMessage,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

_REGISTRY: trio.lowlevel.RunVar[dict[str, MemoryBroker]] = trio.lowlevel.RunVar(
    "actorq_memory_brokers"
)


@attrs.frozen
class MemoryBrokerStatistics:
    """A snapshot of a memory broker, for tests and demos."""

    name: str
    openers: int
    connection: ConnectionState
    streams: int
    messages: int
    consumers: int
    ack_pending: int
    """Deliveries not yet acknowledged, over all consumers."""
    waiting_requests: int
    subscriptions: int
    schedules: int
    timers: int


class MemoryBroker(MemoryKv):
    """An in-process broker with JetStream's semantics (see the module docstring).

    Obtain one with ``open_broker("memory://NAME")`` (or `open_memory_broker`); `memory_broker`
    returns the one open under a name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._engine = Engine()
        self._connection = AsyncValue(ConnectionState.CONNECTED)
        self._streams: dict[str, MemStream] = {}
        self._subscriptions: set[CoreSubscription] = set()
        self._held_replies: list[Callable[[], None]] = []
        self._openers = 0

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.name!r} {self._connection.value.value}>"

    # --- connection -----------------------------------------------------------------------

    @property
    def connection(self) -> AsyncValue[ConnectionState]:
        return self._connection

    def disconnect(self) -> None:
        """Simulate a lost connection: operations raise `NotConnected` (acks and naks are held
        until `reconnect`, as in nats-py's reconnect buffer), the connection shows
        RECONNECTING, and pull subscriptions and watches pause. Time goes on (ack waits expire,
        schedules fire), as it does on a server the client cannot reach."""
        if self._connection.value is ConnectionState.CONNECTED:
            self._engine.connected = False
            self._connection.value = ConnectionState.RECONNECTING
            self._engine.wake_all()

    def reconnect(self) -> None:
        """End a simulated disconnection: everything resumes where it was."""
        if self._connection.value is ConnectionState.RECONNECTING:
            self._engine.connected = True
            self._connection.value = ConnectionState.CONNECTED
            self._engine.advance()
            held, self._held_replies = self._held_replies, []
            for reply in held:
                reply()
            for stream in list(self._streams.values()):
                for consumer in list(stream.consumers.values()):
                    consumer.dispatch()
            self._engine.wake_all()

    def now(self) -> float:
        """The broker's wall clock: an epoch anchor plus trio's elapsed time."""
        return self._engine.wall()

    def _close(self) -> None:
        self._connection.value = ConnectionState.CLOSED
        self._engine.connected = False
        self._engine.wake_all()

    def _ready(self) -> None:
        state = self._connection.value
        if state is not ConnectionState.CONNECTED:
            raise NotConnected(f"memory broker {self.name!r} is {state.value}")
        self._engine.advance()

    def statistics(self) -> MemoryBrokerStatistics:
        self._engine.advance()
        consumers = [c for s in self._streams.values() for c in s.consumers.values()]
        return MemoryBrokerStatistics(
            name=self.name,
            openers=self._openers,
            connection=self._connection.value,
            streams=len(self._streams),
            messages=sum(len(s.messages) for s in self._streams.values()),
            consumers=len(consumers),
            ack_pending=sum(len(c.pending) for c in consumers),
            waiting_requests=sum(c.info().num_waiting for c in consumers),
            subscriptions=len(self._subscriptions),
            schedules=sum(s.schedule_count for s in self._streams.values()),
            timers=self._engine.timer_count,
        )

    # --- streams --------------------------------------------------------------------------

    def _stream(self, name: str) -> MemStream:
        stream = self._streams.get(name)
        if stream is None:
            raise NotFound(f"stream {name!r} not found (memory broker {self.name!r})")
        return stream

    def _consumer(self, stream: str, name: str) -> MemConsumer:
        consumer = self._stream(stream).consumers.get(name)
        if consumer is None:
            raise NotFound(f"consumer {name!r} not found on stream {stream!r}")
        return consumer

    async def ensure_stream(self, config: StreamConfig) -> None:
        self._ready()
        self._ensure_stream(config)
        await trio.lowlevel.checkpoint()

    def _ensure_stream(self, config: StreamConfig, *, marker_ttl: float | None = None) -> None:
        config = check_stream(config, (s.config for s in self._streams.values()))
        existing = self._streams.get(config.name)
        if existing is None:
            self._streams[config.name] = MemStream(self._engine, config, marker_ttl=marker_ttl)
            return
        check_stream_update(existing.config, config)
        if existing.config != config or existing.marker_ttl != marker_ttl:
            existing.marker_ttl = marker_ttl
            existing.reconfigure(config)

    async def stream_info(self, name: str) -> StreamInfo:
        self._ready()
        stream = self._stream(name)
        await trio.lowlevel.checkpoint()
        return StreamInfo(
            name=name,
            messages=len(stream.messages),
            bytes=stream.bytes,
            first_seq=stream.first_seq,
            last_seq=stream.last_seq,
            consumer_count=len(stream.consumers),
        )

    async def delete_stream(self, name: str) -> None:
        self._ready()
        self._delete_stream(name)
        await trio.lowlevel.checkpoint()

    def _delete_stream(self, name: str) -> None:
        stream = self._streams.pop(name, None)
        if stream is None:
            raise NotFound(f"stream {name!r} not found (memory broker {self.name!r})")
        stream.deleted = True
        for consumer in list(stream.consumers.values()):
            consumer.delete()
        for watcher in list(stream.watchers):
            watcher.on_close()

    async def purge_stream(self, name: str, subject: str | None = None) -> int:
        self._ready()
        stream = self._stream(name)
        if subject is not None:
            _subjects.check_filter(subject)
        await trio.lowlevel.checkpoint()
        return stream.purge(subject)

    # --- consumers ------------------------------------------------------------------------

    async def ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        self._ready()
        target = self._stream(stream)
        existing = target.consumers.get(config.name)
        others = (c.config for c in target.consumers.values())
        check_consumer(target.config, config, existing.config if existing else None, others)
        if existing is None:
            target.consumers[config.name] = MemConsumer(target, config)
        elif existing.config != config:
            existing.reconfigure(config)
        await trio.lowlevel.checkpoint()

    async def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        self._ready()
        info = self._consumer(stream, name).info()
        await trio.lowlevel.checkpoint()
        return info

    async def delete_consumer(self, stream: str, name: str) -> None:
        self._ready()
        self._consumer(stream, name).delete()
        await trio.lowlevel.checkpoint()

    # --- publishing -----------------------------------------------------------------------

    def _stream_for(self, subject: str) -> MemStream | None:
        for stream in self._streams.values():
            if _subjects.matches_any(stream.config.subjects, subject):
                return stream
        return None

    def _publish(self, message: Message, *, core_only: bool = False) -> PubAck | None:
        subject = _subjects.check_literal(message.subject)
        headers = dict(message.headers)
        if self._subscriptions:
            # Core NATS delivers every publish to matching subscribers, stored or refused.
            core = CoreMessage(subject, message.data, MappingProxyType(headers))
            for subscription in list(self._subscriptions):
                if _subjects.matches(subscription.pattern, subject):
                    subscription.push(core)
        stream = self._stream_for(subject)
        if stream is None:
            if core_only:
                return None
            raise PublishFailed(f"no stream listens on subject {subject!r} (no responders)")
        try:
            seq, duplicate, total = stream.accept(subject, message.data, headers)
        except Refused as exc:
            if core_only:
                return None
            text = f"stream {stream.config.name!r} refused a message on {subject!r}: {exc}"
            if exc.last_seq is not None:
                raise SequenceMismatch(text, exc.last_seq) from None
            raise PublishFailed(text) from None
        return PubAck(stream.config.name, seq, duplicate, total)

    async def publish(self, message: Message) -> PubAck:
        self._ready()
        ack = self._publish(message)
        assert ack is not None
        await trio.lowlevel.checkpoint()
        return ack

    async def publish_many(self, messages: Sequence[Message]) -> list[PubAck | PublishFailed]:
        self._ready()
        results: list[PubAck | PublishFailed] = []
        for message in messages:
            try:
                ack = self._publish(message)
                assert ack is not None
                results.append(ack)
            except PublishFailed as exc:
                results.append(exc)
        await trio.lowlevel.checkpoint()
        return results

    def publish_then_settle(
        self,
        message: Message,
        delivery: Delivery,
        done: Callable[[BaseException | None], None],
        *,
        retry_delay: float,
    ) -> None:
        """Publish and settle at once (see `Broker.publish_then_settle`); ``done`` runs before
        this returns."""
        error: BaseException | None = None
        try:
            self._ready()
            self._publish(message)
        except WrongLastSequence as exc:
            error = exc
        except (PublishFailed, NotConnected) as exc:
            self._reply(delivery, lambda consumer, seq: consumer.nak(seq, retry_delay))
            done(exc)
            return
        self._reply(delivery, MemConsumer.ack)
        done(error)

    async def publish_core(self, message: Message) -> None:
        self._ready()
        self._publish(message, core_only=True)
        await trio.lowlevel.checkpoint()

    @asynccontextmanager
    async def subscribe(self, subject: str) -> AsyncIterator[AsyncIterator[CoreMessage]]:
        self._ready()
        _subjects.check_filter(subject)
        subscription = CoreSubscription(self._engine, subject)
        self._subscriptions.add(subscription)
        try:
            await trio.lowlevel.checkpoint()
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.close()

    # --- consuming ------------------------------------------------------------------------

    @asynccontextmanager
    async def pull(self, stream: str, consumer: str) -> AsyncIterator[MemoryPullSubscription]:
        self._ready()
        subscription = MemoryPullSubscription(self._engine, self._consumer(stream, consumer))
        try:
            await trio.lowlevel.checkpoint()
            yield subscription
        finally:
            subscription.close()

    async def fetch(
        self, stream: str, consumer: str, batch: int, *, expires: float
    ) -> list[Delivery]:
        self._ready()
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        target = self._consumer(stream, consumer)
        deadline = self._engine.now() + expires
        request = PullRequest(batch, Waker(self._engine))
        cancelled = False
        try:
            target.add_request(request)
            while request.remaining > 0 and trio.current_time() < deadline:
                await request.waker.wait(deadline)
                if target.deleted:
                    raise NotFound(f"consumer {consumer!r} on stream {stream!r} was deleted")
                if not self._engine.connected:
                    raise NotConnected(f"memory broker {self.name!r} lost its connection")
        except trio.Cancelled:
            cancelled = True
            raise
        finally:
            target.remove_request(request)
            request.waker.close()
            if cancelled:
                give_back(target, request.delivered)  # as the JetStream broker does
        if not request.delivered:
            await trio.lowlevel.checkpoint()
        return request.delivered

    def _reply(self, delivery: Delivery, apply: Callable[[MemConsumer, int], None]) -> None:
        """Send an ack, nak, term or progress reply. Like nats-py's reconnect buffer, replies
        made while disconnected are held and sent on `reconnect` (dropped once closed)."""
        token = delivery.token
        if not isinstance(token, AckToken) or token.consumer.engine is not self._engine:
            raise ValueError(f"{delivery!r} was not delivered by memory broker {self.name!r}")
        state = self._connection.value
        if state is ConnectionState.RECONNECTING:
            self._held_replies.append(lambda: apply(token.consumer, token.seq))
        elif state is ConnectionState.CONNECTED:
            self._engine.advance()
            if not token.consumer.deleted:
                apply(token.consumer, token.seq)

    async def ack(self, delivery: Delivery) -> None:
        self._reply(delivery, MemConsumer.ack)
        await trio.lowlevel.checkpoint()

    async def nak(self, delivery: Delivery, delay: float | None = None) -> None:
        self._reply(delivery, lambda consumer, seq: consumer.nak(seq, delay))
        await trio.lowlevel.checkpoint()

    async def term(self, delivery: Delivery) -> None:
        # On the server a term ends the message for the consumer just as an ack does (a
        # work-queue stream removes it; measured).
        self._reply(delivery, MemConsumer.ack)
        await trio.lowlevel.checkpoint()

    async def in_progress(self, delivery: Delivery) -> None:
        self._reply(delivery, MemConsumer.in_progress)
        await trio.lowlevel.checkpoint()

    # --- reading stored messages ----------------------------------------------------------

    async def get_last(self, stream: str, subject: str) -> StoredMessage | None:
        self._ready()
        msg = self._stream(stream).last_on(_subjects.check_literal(subject))
        await trio.lowlevel.checkpoint()
        return msg.stored() if msg is not None else None

    async def get_message(self, stream: str, seq: int) -> StoredMessage | None:
        self._ready()
        msg = self._stream(stream).messages.get(seq)
        await trio.lowlevel.checkpoint()
        return msg.stored() if msg is not None else None

    async def get_next(
        self, stream: str, seq: int, subject: str | None = None
    ) -> StoredMessage | None:
        self._ready()
        if subject is not None:
            _subjects.check_filter(subject)
        msg = self._stream(stream).next_from(seq, subject)
        await trio.lowlevel.checkpoint()
        return msg.stored() if msg is not None else None

    async def delete_message(self, stream: str, seq: int) -> None:
        self._ready()
        if self._stream(stream).remove(seq, "delete") is None:
            raise NotFound(f"message {seq} not found in stream {stream!r}")
        await trio.lowlevel.checkpoint()


# --- the registry -------------------------------------------------------------------------


def _registry() -> dict[str, MemoryBroker]:
    try:
        return _REGISTRY.get()
    except LookupError:
        registry: dict[str, MemoryBroker] = {}
        _REGISTRY.set(registry)
        return registry


@asynccontextmanager
async def open_memory_broker(name: str = "default") -> AsyncIterator[MemoryBroker]:
    """Open the memory broker named ``name`` in this trio run, creating it if needed.

    Every opener of a name shares one broker; when the last one leaves, the broker is closed
    and forgotten, so the next opener of that name starts empty.
    """
    registry = _registry()
    broker = registry.get(name)
    if broker is None:
        broker = registry[name] = MemoryBroker(name)
    broker._openers += 1
    try:
        await trio.lowlevel.checkpoint()
        yield broker
    finally:
        broker._openers -= 1
        if broker._openers == 0:
            if registry.get(name) is broker:
                del registry[name]
            broker._close()


def memory_broker(name: str = "default") -> MemoryBroker:
    """The memory broker open under ``name`` in this trio run.

    Raises:
        LookupError: no opener of that name is open.
    """
    broker = _registry().get(name)
    if broker is None:
        raise LookupError(f"no memory broker named {name!r} is open in this trio run")
    return broker
