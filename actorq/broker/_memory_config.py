"""Stream and consumer configurations, checked the way nats-server checks them.

The memory broker refuses what the server refuses — names with dots or wildcards, malformed
or overlapping subjects, a work-queue stream with consumers whose filters overlap (measured:
"filtered consumer not unique on workqueue stream", "multiple non-filtered consumers not
allowed on workqueue stream"), updates the server does not allow — so a configuration that
works in tests works on a server. Malformed names and subjects are argument errors
(`ValueError`); conflicts with what exists are `BrokerError`, as the server's refusals are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._errors import BrokerError
from . import _subjects
from ._protocol import ConsumerConfig, DeliverPolicy, Retention, StreamConfig

if TYPE_CHECKING:
    from collections.abc import Iterable


def check_stream(config: StreamConfig, others: Iterable[StreamConfig]) -> StreamConfig:
    """A new or updated stream config, normalised (no subjects means the stream's name).

    Raises:
        ValueError: a malformed name or subject.
        BrokerError: subjects that overlap each other or another stream's.
    """
    name = _subjects.check_name(config.name, "stream")
    if not config.subjects:
        config = attrs.evolve(config, subjects=(name,))
    for subject in config.subjects:
        _subjects.check_filter(subject, f"subject of stream {name!r}")
    for index, subject in enumerate(config.subjects):
        for other in config.subjects[index + 1 :]:
            if _subjects.collide(subject, other):
                raise BrokerError(f"stream {name!r}: subject {subject!r} overlaps {other!r}")
    for neighbour in others:
        theirs = neighbour.subjects
        if neighbour.name != name and any(
            _subjects.collide(a, b) for a in config.subjects for b in theirs
        ):
            raise BrokerError(
                f"stream {name!r}: subjects {list(config.subjects)} overlap with those of"
                f" stream {neighbour.name!r} {list(theirs)}"
            )
    if config.duplicate_window < 0:
        raise BrokerError(f"stream {name!r}: duplicate_window can not be negative")
    if config.allow_msg_counter:
        # The server's refusals (nats-server 2.15.1, measured).
        if config.allow_msg_ttl:
            raise BrokerError(f"stream {name!r}: counter stream cannot use message TTLs")
        if config.retention is not Retention.LIMITS:
            raise BrokerError(f"stream {name!r}: counter stream can only use limits retention")
    return config


def check_stream_update(old: StreamConfig, new: StreamConfig) -> None:
    """Raises BrokerError for a change the server does not allow on an existing stream."""
    name = new.name
    if (old.retention is Retention.WORK_QUEUE) != (new.retention is Retention.WORK_QUEUE):
        raise BrokerError(f"stream {name!r}: retention can not change to/from work queue")
    if old.storage is not new.storage:
        raise BrokerError(f"stream {name!r}: storage type can not change")
    if old.allow_msg_schedules and not new.allow_msg_schedules:
        raise BrokerError(f"stream {name!r}: message schedules can not be disabled")


def check_consumer(
    stream: StreamConfig,
    config: ConsumerConfig,
    existing: ConsumerConfig | None,
    others: Iterable[ConsumerConfig],
) -> None:
    """Check a new (``existing`` is None) or updated consumer of ``stream``.

    Raises:
        ValueError: a malformed name or filter, or a non-positive ack wait.
        BrokerError: overlapping filters, a work-queue conflict, a forbidden update.
    """
    name = _subjects.check_name(config.name, "consumer")
    filters = config.filter_subjects
    for subject in filters:
        _subjects.check_filter(subject, f"filter subject of consumer {name!r}")
    for index, subject in enumerate(filters):
        if any(_subjects.collide(subject, other) for other in filters[index + 1 :]):
            raise BrokerError(f"consumer {name!r}: subject filters can not overlap")
    if config.ack_wait <= 0:
        raise ValueError(f"consumer {name!r}: ack_wait must be positive")
    if existing is not None and existing.deliver_policy is not config.deliver_policy:
        raise BrokerError(f"consumer {name!r}: deliver policy can not be updated")
    if stream.retention is not Retention.WORK_QUEUE:
        return
    where = f"consumer {name!r} on work-queue stream {stream.name!r}"
    if config.deliver_policy is not DeliverPolicy.ALL:
        raise BrokerError(f"{where}: a work-queue consumer must deliver all")
    others = [other for other in others if other.name != name]
    if others and not filters:
        raise BrokerError(f"{where}: multiple non-filtered consumers not allowed")
    mine = filters or (">",)
    for other in others:
        theirs = other.filter_subjects or (">",)
        if any(_subjects.collide(a, b) for a in mine for b in theirs):
            raise BrokerError(
                f"{where}: filtered consumer not unique (its filters {list(mine)} overlap"
                f" those of consumer {other.name!r} {list(theirs)})"
            )
