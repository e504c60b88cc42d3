"""The broker protocol: everything the upper layers need from a transport.

Two implementations stand behind it — `MemoryBroker` (pure trio, in-process, driven by trio's
clock) and `JetStreamBroker` (a real nats-server through the Bridge) — and one conformance
suite (``tests/broker/test_conformance.py``) holds them to the same semantics. The vocabulary
is JetStream's on purpose: streams, durable pull consumers, acks, KV buckets with revisions.
Header names are JetStream's too (`Nats-Msg-Id`, `Nats-Schedule`, `Nats-TTL`, ...), and the
memory broker interprets the same headers, so code above this layer never branches on the
transport.

Every value crossing this boundary is an actorq attrs value; no nats-py object leaks out.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import attrs

from .._errors import PublishFailed

if TYPE_CHECKING:
    from trio_util import AsyncValue

# --- headers both brokers understand ------------------------------------------------------

MSG_ID = "Nats-Msg-Id"
"""Publish-side dedupe: a second publish with the same id inside the duplicate window is
acknowledged with ``duplicate=True`` and not stored."""
SCHEDULE = "Nats-Schedule"
"""Marks a stored message as a schedule: ``@at <RFC3339>``, ``@every <duration>``, a six-field
cron expression (sec min hour dom month dow) or a predefined alias (``@hourly`` ...)."""
SCHEDULE_TARGET = "Nats-Schedule-Target"
"""The subject a schedule publishes its body to when it fires."""
SCHEDULE_TTL = "Nats-Schedule-TTL"
TTL = "Nats-TTL"
"""Per-message time to live (seconds as an integer, or a Go duration such as ``30s``)."""
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
"""Optimistic concurrency: the publish fails unless the last message on the subject has this
sequence (0 = no message on the subject)."""
ROLLUP = "Nats-Rollup"
INCR = "Nats-Incr"
"""A counter increment (``+1``, ``-5``, ``0``) on a stream with `allow_msg_counter`: the stream
adds it to the subject's total, stores ``{"val":"<total>"}`` and returns the total in the
`PubAck` (nats-server 2.12+, ADR-49)."""


# --- configuration ------------------------------------------------------------------------


def _subject_tuple(subjects: Iterable[str]) -> tuple[str, ...]:
    """Converter for subject lists: any iterable of strings (typed, unlike bare ``tuple``)."""
    return tuple(subjects)


class Retention(enum.Enum):
    """What removes messages from a stream besides its limits."""

    LIMITS = "limits"
    WORK_QUEUE = "workqueue"
    """A message is removed once acknowledged; consumer filters must not overlap."""
    INTEREST = "interest"


class Storage(enum.Enum):
    FILE = "file"
    MEMORY = "memory"


class DeliverPolicy(enum.Enum):
    ALL = "all"
    NEW = "new"
    LAST_PER_SUBJECT = "last_per_subject"


@attrs.frozen
class StreamConfig:
    """A stream. `ensure_stream` creates it, or updates it to this config when it exists."""

    name: str
    subjects: tuple[str, ...] = attrs.field(converter=_subject_tuple)
    retention: Retention = Retention.LIMITS
    storage: Storage = Storage.FILE
    replicas: int = 1
    max_age: float | None = None
    """Seconds a message is kept; None for forever."""
    max_msgs_per_subject: int | None = None
    max_msg_size: int | None = None
    duplicate_window: float = 120.0
    """Seconds a `Nats-Msg-Id` is remembered."""
    allow_msg_schedules: bool = False
    allow_msg_ttl: bool = False
    allow_rollup: bool = False
    allow_direct: bool = True
    allow_msg_counter: bool = False
    """Every subject is a counter: publishes carry `INCR` and no body (limits retention only,
    no per-message TTL; nats-server 2.12+)."""


@attrs.frozen
class ConsumerConfig:
    """A durable pull consumer with explicit acks."""

    name: str
    filter_subjects: tuple[str, ...] = attrs.field(default=(), converter=_subject_tuple)
    ack_wait: float = 30.0
    """Seconds a delivery may stay unacknowledged before it is redelivered."""
    max_ack_pending: int = 1000
    """At most this many deliveries may be unacknowledged at once (naked ones included)."""
    max_deliver: int = -1
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    inactive_threshold: float | None = None
    """Seconds of inactivity after which the server deletes the consumer; None = never."""


@attrs.frozen
class KvConfig:
    """A key-value bucket (a stream ``KV_<bucket>`` with subjects ``$KV.<bucket>.>``)."""

    bucket: str
    history: int = 1
    max_age: float | None = None
    """Seconds every value lives; None for forever."""
    replicas: int = 1
    storage: Storage = Storage.FILE
    allow_per_key_ttl: bool = False
    """Allow `ttl=` on individual writes (JetStream per-message TTL, server 2.11+)."""


# --- values -------------------------------------------------------------------------------


@attrs.frozen
class Message:
    """A message to publish."""

    subject: str
    data: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class PubAck:
    """The server's acknowledgement of a stored publish."""

    stream: str
    seq: int
    duplicate: bool = False
    value: int | None = None
    """On a counter stream: the subject's total after this increment (None for a duplicate)."""


@attrs.frozen
class Delivery:
    """A message delivered by a pull consumer, waiting for its ack/nak/term."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream: str
    consumer: str
    stream_seq: int
    consumer_seq: int
    num_delivered: int
    """1 on first delivery, 2 on the first redelivery, ..."""
    num_pending: int
    """Messages still waiting in the consumer after this one."""
    timestamp: float
    """When the message was stored, seconds since the epoch."""
    token: object = attrs.field(eq=False, repr=False)
    """Transport handle for acking (the ack subject on JetStream)."""


@attrs.frozen
class StoredMessage:
    """A message read directly from a stream (direct get)."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    seq: int
    timestamp: float


@attrs.frozen
class CoreMessage:
    """A message received by a plain subscription (every publish to a matching subject)."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    reply: str | None = None


class KvOperation(enum.Enum):
    PUT = "PUT"
    DELETE = "DEL"
    PURGE = "PURGE"


@attrs.frozen
class KvEntry:
    """One revision of a key. Deletes and purges are entries too (in watches)."""

    bucket: str
    key: str
    value: bytes
    revision: int
    operation: KvOperation = KvOperation.PUT
    created: float = 0.0
    """When this revision was written, seconds since the epoch."""


@attrs.frozen
class CaughtUp:
    """Watch marker: every value that existed when the watch began has been yielded."""


WatchEvent = KvEntry | CaughtUp


@attrs.frozen
class StreamInfo:
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumer_count: int


@attrs.frozen
class ConsumerInfo:
    stream: str
    name: str
    num_pending: int
    """Messages matching the filter not yet delivered."""
    num_ack_pending: int
    """Delivered and not yet acknowledged (includes naked deliveries waiting for redelivery)."""
    num_redelivered: int
    num_waiting: int
    """Outstanding pull requests."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


# --- the protocol -------------------------------------------------------------------------


@runtime_checkable
class PullSubscription(Protocol):
    """Credit-based consumption of one durable pull consumer.

    The owner grants credits with `request`; the broker keeps pull requests outstanding for the
    granted credits (re-issuing expired ones) and each delivered message uses one credit. This
    lets a QueueActor fetch exactly as many messages as it has free slots, with no hoarding and
    no round trip per message.
    """

    def request(self, n: int) -> None:
        """Grant ``n`` more credits. Never blocks."""

    @property
    def credits(self) -> int:
        """Credits granted and not yet used by a delivery."""

    def withdraw(self) -> int:
        """Take back everything granted and not yet handed out by `receive`; returns how many.

        Unused credits are cancelled (on JetStream the outstanding pull requests are abandoned:
        the server drops a request whose inbox has no subscriber), and deliveries that arrived
        but were not received yet — or arrive later for a withdrawn credit — are given back
        (naked) at once. Never blocks.
        """

    async def receive(self) -> list[Delivery]:
        """Wait for the next batch of one or more deliveries."""

    def __aiter__(self) -> AsyncIterator[list[Delivery]]: ...


@runtime_checkable
class Broker(Protocol):
    """A transport with JetStream semantics. See the module docstring."""

    @property
    def connection(self) -> AsyncValue[ConnectionState]:
        """Observable connection state."""

    def now(self) -> float:
        """The broker's wall clock, seconds since the epoch.

        Message timestamps, schedule times and TTLs are on this clock, so code above the broker
        reads the time here: `time.time()` on JetStream; on the memory broker an epoch anchor
        plus trio's elapsed time, so ``@at`` schedules and deadlines move with `autojump_clock`.
        """

    # streams and consumers

    async def ensure_stream(self, config: StreamConfig) -> None:
        """Create the stream, or update it to ``config``. Idempotent."""

    async def stream_info(self, name: str) -> StreamInfo:
        """Raises `NotFound`."""

    async def delete_stream(self, name: str) -> None:
        """Raises `NotFound`."""

    async def purge_stream(self, name: str, subject: str | None = None) -> int:
        """Remove every message (or those on ``subject``, wildcards allowed); returns the count."""

    async def ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        """Create the durable consumer, or update it to ``config``. Idempotent."""

    async def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        """Raises `NotFound`."""

    async def delete_consumer(self, stream: str, name: str) -> None:
        """Raises `NotFound`."""

    # publishing

    async def publish(self, message: Message) -> PubAck:
        """Store a message and wait for the server's ack. Raises `PublishFailed`."""

    async def publish_many(self, messages: Sequence[Message]) -> list[PubAck | PublishFailed]:
        """Publish a batch with one window of outstanding acks.

        One result per message, in order; a refused message is reported in place (a
        `PublishFailed`) instead of failing the whole batch.
        """

    async def publish_core(self, message: Message) -> None:
        """Fire-and-forget publish without a stored ack (still stored if a stream listens)."""

    def publish_then_settle(
        self,
        message: Message,
        delivery: Delivery,
        done: Callable[[BaseException | None], None],
        *,
        retry_delay: float,
    ) -> None:
        """Publish ``message`` and settle ``delivery`` by how that went, without waiting.

        ``delivery`` is acked once the message is stored, or once it is refused with
        `WrongLastSequence` (the subject already holds what an expected-last-sequence header
        protects, such as a task's first outcome); on any other failure it is naked for
        redelivery after ``retry_delay`` seconds. Then ``done`` runs on the trio thread with
        None, that `WrongLastSequence`, or the error. ``done`` runs exactly once, possibly
        before this returns, between trio tasks: it must be quick and must not raise.

        A worker settles a finished task this way: the result's PubAck and the ack meet on
        the transport's side, and no task waits for the server in between.
        """

    def subscribe(self, subject: str) -> AbstractAsyncContextManager[AsyncIterator[CoreMessage]]:
        """Receive every message published to ``subject`` (wildcards allowed) from now on."""

    # consuming

    def pull(self, stream: str, consumer: str) -> AbstractAsyncContextManager[PullSubscription]:
        """Open a credit-based pull subscription on a durable consumer."""

    async def fetch(
        self, stream: str, consumer: str, batch: int, *, expires: float
    ) -> list[Delivery]:
        """One pull request: up to ``batch`` messages, waiting at most ``expires`` seconds.

        Returns as soon as ``batch`` messages arrived, or when ``expires`` passes with whatever
        arrived (possibly nothing).
        """

    async def ack(self, delivery: Delivery) -> None: ...

    async def nak(self, delivery: Delivery, delay: float | None = None) -> None:
        """Ask for redelivery, after ``delay`` seconds if given. The delivery keeps counting
        against ``max_ack_pending`` until it is redelivered."""

    async def term(self, delivery: Delivery) -> None:
        """Never redeliver this message."""

    async def in_progress(self, delivery: Delivery) -> None:
        """Reset the delivery's ack-wait timer (lease renewal)."""

    # reading stored messages

    async def get_last(self, stream: str, subject: str) -> StoredMessage | None:
        """The last message stored on ``subject`` (direct get), or None."""

    async def get_message(self, stream: str, seq: int) -> StoredMessage | None: ...

    async def get_next(
        self, stream: str, seq: int, subject: str | None = None
    ) -> StoredMessage | None:
        """The first stored message with a sequence >= ``seq`` (on ``subject``, wildcards
        allowed, if given), or None. Pages through a stream without a consumer."""

    async def delete_message(self, stream: str, seq: int) -> None: ...

    # key-value

    async def ensure_kv(self, config: KvConfig) -> None: ...

    async def delete_kv(self, bucket: str) -> None: ...

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        """The live value, or None if the key is absent, deleted, purged or expired."""

    async def kv_put(self, bucket: str, key: str, value: bytes, *, ttl: float | None = None) -> int:
        """Write unconditionally; returns the new revision."""

    async def kv_create(
        self, bucket: str, key: str, value: bytes, *, ttl: float | None = None
    ) -> int:
        """Write only if the key has no live value. Raises `KeyExists`."""

    async def kv_update(
        self, bucket: str, key: str, value: bytes, revision: int, *, ttl: float | None = None
    ) -> int:
        """Compare-and-set: write only if ``revision`` is the key's latest. Raises `WrongRevision`.

        With ``ttl`` this also (re)starts the key's time to live, which a plain update does not.
        """

    async def kv_delete(self, bucket: str, key: str, *, revision: int | None = None) -> None:
        """Delete the key (a delete marker); with ``revision``, only if it is still the latest
        (raises `WrongRevision`)."""

    async def kv_purge(self, bucket: str, key: str) -> None:
        """Remove the key and its history."""

    async def kv_keys(self, bucket: str) -> list[str]:
        """Keys with a live value, sorted."""

    def kv_watch(
        self,
        bucket: str,
        key: str = ">",
        *,
        include_history: bool = False,
        updates_only: bool = False,
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Existing values (the latest per key, or all revisions with history), then `CaughtUp`,
        then live changes, deletes and purges included."""


_T = TypeVar("_T")


def take_ready(items: AsyncIterator[_T]) -> list[_T]:
    """What a subscription or watch (`Broker.subscribe`, `Broker.kv_watch`) has received
    already, without waiting: a reader that handles a burst takes the rest of it after one
    ``anext`` instead of one schedule point per item. An iterator that cannot say gives none.
    """
    take = getattr(items, "take_ready", None)
    return take() if take is not None else []
