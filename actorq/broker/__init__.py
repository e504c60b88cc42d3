"""Transports: one broker protocol, two implementations.

`open_broker` picks the implementation from a URL: ``memory://NAME`` for the pure-trio
in-process broker (tests, demos), ``nats://...`` for a NATS server with JetStream through the
Bridge. Both speak `Broker`, and one conformance suite holds them to the same semantics.
"""

from __future__ import annotations

from .._util import fixup_module_metadata as _fixup_module_metadata
from ._open import open_broker as open_broker
from ._protocol import (
    EXPECTED_LAST_SUBJECT_SEQUENCE as EXPECTED_LAST_SUBJECT_SEQUENCE,
    INCR as INCR,
    MSG_ID as MSG_ID,
    ROLLUP as ROLLUP,
    SCHEDULE as SCHEDULE,
    SCHEDULE_TARGET as SCHEDULE_TARGET,
    SCHEDULE_TTL as SCHEDULE_TTL,
    TTL as TTL,
    Broker as Broker,
    CaughtUp as CaughtUp,
    ConnectionState as ConnectionState,
    ConsumerConfig as ConsumerConfig,
    ConsumerInfo as ConsumerInfo,
    CoreMessage as CoreMessage,
    DeliverPolicy as DeliverPolicy,
    Delivery as Delivery,
    KvConfig as KvConfig,
    KvEntry as KvEntry,
    KvOperation as KvOperation,
    Message as Message,
    PubAck as PubAck,
    PullSubscription as PullSubscription,
    Retention as Retention,
    Storage as Storage,
    StoredMessage as StoredMessage,
    StreamConfig as StreamConfig,
    StreamInfo as StreamInfo,
    WatchEvent as WatchEvent,
    take_ready as take_ready,
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
