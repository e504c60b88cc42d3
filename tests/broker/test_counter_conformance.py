"""Counter streams (``allow_msg_counter``, ``Nats-Incr``) behave the same on both brokers.

Measured on nats-server 2.15.1 and held here for the memory broker too: an increment is added
to the subject's total, the PubAck carries the total, the stored body is ``{"val":"<total>"}``
with the publish's headers, a purge resets the counter, and what the server refuses is refused.
"""

from __future__ import annotations

import json

import attrs
import pytest

from actorq import BrokerError, PublishFailed
from actorq.broker import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    INCR,
    MSG_ID,
    ROLLUP,
    Broker,
    Message,
    Retention,
    StreamConfig,
)

pytestmark = pytest.mark.integration


async def counter_stream(broker: Broker, namespace: str) -> tuple[str, str]:
    stream, prefix = namespace.upper(), namespace
    await broker.ensure_stream(
        StreamConfig(name=stream, subjects=(f"{prefix}.>",), allow_msg_counter=True)
    )
    return stream, prefix


async def add(broker: Broker, subject: str, increment: str, **headers: str) -> int | None:
    ack = await broker.publish(Message(subject, b"", {INCR: increment, **headers}))
    return ack.value


async def test_increments_add_up_and_the_puback_carries_the_total(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await counter_stream(broker, namespace)
    totals = [await add(broker, f"{prefix}.hits", step) for step in ("+1", "2", "-5", "+0")]
    assert totals == [1, 3, -2, -2]
    assert await add(broker, f"{prefix}.other", "+10") == 10
    huge = "+" + "9" * 30
    assert await add(broker, f"{prefix}.hits", huge) == int("9" * 30) - 2
    stored = await broker.get_last(stream, f"{prefix}.hits")
    assert stored is not None
    assert json.loads(stored.data) == {"val": str(int("9" * 30) - 2)}
    assert stored.headers[INCR] == huge


async def test_a_purge_resets_a_counter(broker: Broker, namespace: str) -> None:
    stream, prefix = await counter_stream(broker, namespace)
    await add(broker, f"{prefix}.c", "+5")
    await broker.purge_stream(stream, f"{prefix}.c")
    assert await broker.get_last(stream, f"{prefix}.c") is None
    assert await add(broker, f"{prefix}.c", "+1") == 1


async def test_a_duplicate_increment_is_not_counted(broker: Broker, namespace: str) -> None:
    _, prefix = await counter_stream(broker, namespace)
    first = await broker.publish(Message(f"{prefix}.c", b"", {INCR: "+1", MSG_ID: "once"}))
    again = await broker.publish(Message(f"{prefix}.c", b"", {INCR: "+1", MSG_ID: "once"}))
    assert (first.value, again.duplicate, again.value, again.seq) == (1, True, None, first.seq)
    assert await add(broker, f"{prefix}.c", "+1") == 2


async def test_what_a_counter_stream_refuses(broker: Broker, namespace: str) -> None:
    stream, prefix = await counter_stream(broker, namespace)
    refused = [
        Message(f"{prefix}.c", b"", {}),  # no increment
        Message(f"{prefix}.c", b"5", {INCR: "+1"}),  # a body
        Message(f"{prefix}.c", b"", {INCR: "1.5"}),
        Message(f"{prefix}.c", b"", {INCR: "one"}),
        Message(f"{prefix}.c", b"", {INCR: "+1", EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}),
        Message(f"{prefix}.c", b"", {INCR: "+1", ROLLUP: "sub"}),
        Message(f"{prefix}.c", b"", {INCR: "+1", "Nats-TTL": "5"}),
    ]
    for message in refused:
        with pytest.raises(PublishFailed):
            await broker.publish(message)
    assert (await broker.stream_info(stream)).messages == 0


async def test_an_increment_on_a_plain_stream_is_refused(broker: Broker, namespace: str) -> None:
    stream, prefix = namespace.upper(), namespace
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.>",)))
    with pytest.raises(PublishFailed, match="counter"):
        await broker.publish(Message(f"{prefix}.c", b"", {INCR: "+1"}))


async def test_counter_streams_refuse_ttls_and_other_retentions(
    broker: Broker, namespace: str
) -> None:
    base = StreamConfig(namespace.upper(), (f"{namespace}.>",), allow_msg_counter=True)
    with pytest.raises(BrokerError, match="TTL"):
        await broker.ensure_stream(attrs.evolve(base, allow_msg_ttl=True))
    with pytest.raises(BrokerError, match="retention"):
        await broker.ensure_stream(attrs.evolve(base, retention=Retention.WORK_QUEUE))


def test_a_counter_puback_is_parsed_with_its_total() -> None:
    from actorq.broker import PubAck
    from actorq.broker._jetstream_codec import parse_puback

    assert parse_puback(b'{"stream":"C","seq":7,"val":"-12"}') == PubAck("C", 7, False, -12)
    assert parse_puback(b'{"stream":"C","seq":3,"duplicate": true}') == PubAck("C", 3, True)
