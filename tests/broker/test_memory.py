"""The memory broker on its own: exact virtual times under ``autojump_clock``.

Everything time-based in the memory broker runs on trio's clock, so these tests assert the
instants themselves (a redelivery at exactly the ack wait, a key gone at exactly its TTL) and
run hours of simulated time in milliseconds of real time. Behaviour both brokers share is in
``test_conformance.py``, schedules firing in ``test_schedule.py``; this file covers what only
the memory broker can show exactly, and its own extras (the registry by name, disconnect
simulation, statistics).
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actorq import KeyExists, NotConnected, NotFound, PublishFailed, WrongRevision
from actorq.broker import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
    SCHEDULE,
    SCHEDULE_TARGET,
    TTL,
    CaughtUp,
    ConnectionState,
    ConsumerConfig,
    DeliverPolicy,
    KvConfig,
    KvEntry,
    KvOperation,
    Message,
    Retention,
    StreamConfig,
    take_ready,
)
from actorq.broker._memory import MemoryBroker, memory_broker, open_memory_broker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def broker(namespace: str) -> AsyncIterator[MemoryBroker]:
    async with open_memory_broker(namespace) as opened:
        yield opened


async def tasks(
    broker: MemoryBroker, *, ack_wait: float = 30.0, max_ack_pending: int = 100, **stream: object
) -> str:
    """A work-queue stream ``T`` (``t.task.>``, ``t.sched.>``) with consumer ``workers``."""
    await broker.ensure_stream(
        StreamConfig(
            name="T",
            subjects=("t.task.>", "t.sched.>"),
            retention=Retention.WORK_QUEUE,
            allow_msg_schedules=True,
            **stream,  # type: ignore[arg-type]
        )
    )
    await broker.ensure_consumer(
        "T",
        ConsumerConfig(
            name="workers",
            filter_subjects=("t.task.>",),
            ack_wait=ack_wait,
            max_ack_pending=max_ack_pending,
        ),
    )
    return "T"


async def schedule(
    broker: MemoryBroker, name: str, spec: str, body: bytes = b"", **more: str
) -> None:
    headers = {SCHEDULE: spec, SCHEDULE_TARGET: "t.task.fired", **more}
    await broker.publish(Message(f"t.sched.{name}", body, headers))


async def next_delivery(broker: MemoryBroker, expires: float = 10 * 86400.0):  # type: ignore[no-untyped-def]
    got = await broker.fetch("T", "workers", 1, expires=expires)
    assert len(got) == 1, got
    return got[0]


# --- redelivery, naks, leases ---------------------------------------------------------------


async def test_redelivery_at_exactly_the_ack_wait(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=30.0)
    await broker.publish(Message("t.task.a", b"x"))
    first = await next_delivery(broker)
    start = trio.current_time()
    again = await next_delivery(broker)
    assert trio.current_time() - start == 30.0
    assert (again.stream_seq, again.num_delivered) == (first.stream_seq, 2)


async def test_a_day_of_naks_with_delay_passes_in_an_instant(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=30.0)
    await broker.publish(Message("t.task.a", b"x"))
    real_start, start = time.monotonic(), trio.current_time()
    for attempt in range(1, 25):
        delivery = await next_delivery(broker)
        assert delivery.num_delivered == attempt
        assert trio.current_time() - start == (attempt - 1) * 3600.0
        await broker.nak(delivery, delay=3600.0)
    assert time.monotonic() - real_start < 2.0


async def test_a_naked_delivery_holds_its_slot_until_redelivered(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, max_ack_pending=1)
    for body in (b"1", b"2"):
        await broker.publish(Message("t.task.a", body))
    first = await next_delivery(broker)
    await broker.nak(first, delay=10.0)
    start = trio.current_time()
    again = await next_delivery(broker)
    assert (again.data, again.num_delivered, trio.current_time() - start) == (b"1", 2, 10.0)
    await broker.ack(again)
    assert (await next_delivery(broker)).data == b"2"


async def test_in_progress_restarts_the_ack_wait(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=10.0)
    await broker.publish(Message("t.task.a", b"x"))
    delivery = await next_delivery(broker)
    await trio.sleep(8)
    await broker.in_progress(delivery)
    start = trio.current_time()
    assert (await next_delivery(broker)).num_delivered == 2
    assert trio.current_time() - start == 10.0


async def test_in_progress_replaces_a_nak_delay_but_not_an_expired_ack_wait(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    # Both measured on nats-server 2.15.1.
    await tasks(broker, ack_wait=10.0)
    await broker.publish(Message("t.task.a", b"x"))
    delivery = await next_delivery(broker)
    await broker.nak(delivery, delay=300.0)
    await broker.in_progress(delivery)
    start = trio.current_time()
    delivery = await next_delivery(broker)
    assert (delivery.num_delivered, trio.current_time() - start) == (2, 10.0)
    await trio.sleep(15)  # the ack wait expired; nobody pulled yet
    await broker.in_progress(delivery)
    start = trio.current_time()
    assert (await next_delivery(broker)).num_delivered == 3
    assert trio.current_time() == start


async def test_max_deliver_stops_redelivery(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    await broker.ensure_consumer(
        "T", ConsumerConfig("workers", ("t.task.>",), ack_wait=5.0, max_deliver=2)
    )
    await broker.publish(Message("t.task.a", b"x"))
    assert (await next_delivery(broker)).num_delivered == 1
    assert (await next_delivery(broker)).num_delivered == 2
    assert await broker.fetch("T", "workers", 1, expires=60.0) == []
    info = await broker.consumer_info("T", "workers")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert (await broker.stream_info("T")).messages == 1  # kept, like the server


async def test_redeliveries_go_before_new_messages_and_num_pending_counts_down(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=5.0)
    for body in (b"1", b"2", b"3"):
        await broker.publish(Message("t.task.a", body))
    first = await broker.fetch("T", "workers", 1, expires=1.0)
    assert [(d.data, d.num_pending) for d in first] == [(b"1", 2)]
    await broker.nak(first[0])
    got = await broker.fetch("T", "workers", 3, expires=1.0)
    assert [(d.data, d.num_delivered, d.num_pending) for d in got] == [
        (b"1", 2, 2),
        (b"2", 1, 1),
        (b"3", 1, 0),
    ]


async def test_deliveries_never_received_are_given_back_at_once(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=30.0)
    async with broker.pull("T", "workers") as subscription:
        subscription.request(1)
        await broker.publish(Message("t.task.a", b"x"))  # delivered into the subscription...
    start = trio.current_time()  # ...which closed before receiving it
    again = await next_delivery(broker)
    assert (again.num_delivered, trio.current_time()) == (2, start)
    await broker.nak(again, delay=1.0)
    with trio.move_on_after(5):
        await broker.fetch("T", "workers", 2, expires=60.0)  # gets it at 1 s, cancelled at 5 s
    assert (await next_delivery(broker)).num_delivered == 4
    assert trio.current_time() == start + 5


async def test_waiting_pull_requests_are_served_round_robin(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    results: dict[str, list[bytes]] = {}

    async def pull(name: str) -> None:
        got = await broker.fetch("T", "workers", 2, expires=60.0)
        results[name] = [d.data for d in got]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pull, "a")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(pull, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert (await broker.consumer_info("T", "workers")).num_waiting == 2
        for body in (b"1", b"2", b"3", b"4"):
            await broker.publish(Message("t.task.a", body))
    assert results == {"a": [b"1", b"3"], "b": [b"2", b"4"]}


async def test_an_inactive_consumer_is_deleted(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    await broker.ensure_consumer("T", ConsumerConfig("idle", ("t.sched.>",), inactive_threshold=60))
    await trio.sleep(59)
    await broker.consumer_info("T", "idle")
    await trio.sleep(1)
    with pytest.raises(NotFound):
        await broker.consumer_info("T", "idle")


# --- dedupe, limits, expiry ----------------------------------------------------------------


async def test_the_dedupe_window_expires(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, duplicate_window=60.0)
    message = Message("t.task.a", b"once", {MSG_ID: "job-1"})
    first = await broker.publish(message)
    await trio.sleep(59.999)
    assert (await broker.publish(message)).duplicate
    await trio.sleep(0.001)
    again = await broker.publish(message)
    assert not again.duplicate
    assert again.seq == first.seq + 1


async def test_max_age_and_per_message_ttl(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await broker.ensure_stream(StreamConfig("R", ("r.>",), max_age=60.0, allow_msg_ttl=True))
    await broker.publish(Message("r.aged", b""))
    await broker.publish(Message("r.short", b"", {TTL: "10s"}))
    await broker.publish(Message("r.kept", b"", {TTL: "never"}))
    with pytest.raises(PublishFailed, match="invalid per-message TTL"):
        await broker.publish(Message("r.bad", b"", {TTL: "500ms"}))
    await trio.sleep(10)
    assert await broker.get_last("R", "r.short") is None
    assert await broker.get_last("R", "r.aged") is not None
    await trio.sleep(50)
    assert await broker.get_last("R", "r.aged") is None
    assert await broker.get_last("R", "r.kept") is not None


async def test_limits_rollups_and_expectations(broker: MemoryBroker) -> None:
    await broker.ensure_stream(
        StreamConfig("L", ("l.>",), max_msgs_per_subject=2, allow_rollup=True)
    )
    for n in range(3):
        await broker.publish(Message("l.a", str(n).encode()))
    assert (await broker.stream_info("L")).messages == 2
    with pytest.raises(PublishFailed, match="wrong last sequence: 3"):
        await broker.publish(Message("l.a", b"", {EXPECTED_LAST_SUBJECT_SEQUENCE: "2"}))
    await broker.publish(Message("l.a", b"", {EXPECTED_LAST_SUBJECT_SEQUENCE: "3"}))
    await broker.publish(Message("l.b", b"", {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}))
    await broker.publish(Message("l.a", b"all", {"Nats-Rollup": "all"}))
    info = await broker.stream_info("L")
    assert (info.messages, info.first_seq, info.last_seq) == (1, 6, 6)
    stored = await broker.get_next("L", 1)
    assert stored is not None
    assert stored.data == b"all"


async def test_streams_and_consumers_are_checked_like_the_server(broker: MemoryBroker) -> None:
    await tasks(broker)
    with pytest.raises(ValueError, match="invalid stream name"):
        await broker.ensure_stream(StreamConfig("A.B", ("ab",)))
    with pytest.raises(ValueError, match="invalid subject"):
        await broker.ensure_stream(StreamConfig("AB", ("a..b",)))
    with pytest.raises(Exception, match="overlap"):
        await broker.ensure_stream(StreamConfig("OTHER", ("t.task.x",)))
    with pytest.raises(Exception, match="filtered consumer not unique"):
        await broker.ensure_consumer("T", ConsumerConfig("more", ("t.task.*",)))
    with pytest.raises(Exception, match="non-filtered"):
        await broker.ensure_consumer("T", ConsumerConfig("all"))
    with pytest.raises(Exception, match="must deliver all"):
        await broker.ensure_consumer(
            "T", ConsumerConfig("new", ("t.sched.>",), deliver_policy=DeliverPolicy.NEW)
        )
    with pytest.raises(NotFound):
        await broker.delete_message("T", 99)


async def test_interest_retention_keeps_a_message_until_every_consumer_acked(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await broker.ensure_stream(StreamConfig("I", ("i.>",), retention=Retention.INTEREST))
    await broker.publish(Message("i.a", b"nobody listens"))
    assert (await broker.stream_info("I")).messages == 0
    for name in ("one", "two"):
        await broker.ensure_consumer("I", ConsumerConfig(name))
    await broker.publish(Message("i.a", b"x"))
    for name in ("one", "two"):
        [delivery] = await broker.fetch("I", name, 1, expires=1.0)
        assert (await broker.stream_info("I")).messages == 1
        await broker.ack(delivery)
    assert (await broker.stream_info("I")).messages == 0


# --- key-value ------------------------------------------------------------------------------


async def test_a_key_expires_at_its_ttl_and_watches_see_it(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await broker.ensure_kv(KvConfig("leases", allow_per_key_ttl=True))
    revision = await broker.kv_create("leases", "leader", b"me", ttl=10)
    events: list[tuple[float, KvOperation]] = []
    async with broker.kv_watch("leases", updates_only=True) as watch, aclosing(aiter(watch)) as it:
        assert isinstance(await anext(it), CaughtUp)
        await trio.sleep(6)
        revision = await broker.kv_update("leases", "leader", b"me", revision, ttl=10)
        await broker.kv_update("leases", "leader", b"me", revision)  # no TTL: lives on
        await broker.kv_put("leases", "other", b"x", ttl=3)
        start = trio.current_time()
        while len(events) < 4:
            event = await anext(it)
            assert isinstance(event, KvEntry)
            events.append((trio.current_time() - start, event.operation))
    assert events == [(0, KvOperation.PUT)] * 3 + [(3, KvOperation.PURGE)]
    assert await broker.kv_keys("leases") == ["leader"]
    await trio.sleep(1)
    assert (await broker.stream_info("KV_leases")).messages == 1  # the marker expired too


async def test_a_ttl_write_restarts_the_ttl_and_a_plain_update_does_not(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await broker.ensure_kv(KvConfig("locks", history=3, allow_per_key_ttl=True))
    first = await broker.kv_create("locks", "a", b"1", ttl=10)
    await trio.sleep(5)
    await broker.kv_update("locks", "a", b"2", first, ttl=10)
    await trio.sleep(9.999)
    assert await broker.kv_get("locks", "a") is not None
    await trio.sleep(0.001)
    assert await broker.kv_get("locks", "a") is None
    with pytest.raises(PublishFailed, match="invalid per-message TTL"):
        await broker.kv_put("locks", "b", b"", ttl=0.5)


async def test_kv_cas_errors_name_bucket_key_and_revisions(broker: MemoryBroker) -> None:
    await broker.ensure_kv(KvConfig("cfg"))
    revision = await broker.kv_put("cfg", "k", b"1")
    await broker.kv_put("cfg", "k", b"2")
    with pytest.raises(WrongRevision, match=rf"'cfg' key 'k': revision {revision} .* latest is 2"):
        await broker.kv_update("cfg", "k", b"3", revision)
    with pytest.raises(KeyExists, match="'k' already exists in bucket 'cfg' \\(revision 2\\)"):
        await broker.kv_create("cfg", "k", b"3")
    await broker.kv_purge("cfg", "k")
    assert await broker.kv_create("cfg", "k", b"again") == 4
    with pytest.raises(NotFound, match="bucket 'nope'"):
        await broker.kv_get("nope", "k")
    with pytest.raises(ValueError, match="invalid key"):
        await broker.kv_put("cfg", "bad key", b"")


# --- the registry and the connection ------------------------------------------------------


async def test_openers_of_a_name_share_one_broker_until_the_last_leaves(namespace: str) -> None:
    async with open_memory_broker(namespace) as one, open_memory_broker(namespace) as two:
        assert one is two is memory_broker(namespace)
        assert one.statistics().openers == 2
        await one.ensure_stream(StreamConfig("S", ("s.>",)))
        assert (await two.stream_info("S")).messages == 0
        async with open_memory_broker(f"{namespace}-other") as other:
            assert other is not one
            with pytest.raises(NotFound):
                await other.stream_info("S")
    with pytest.raises(LookupError):
        memory_broker(namespace)
    assert one.connection.value is ConnectionState.CLOSED
    async with open_memory_broker(namespace) as fresh:
        assert fresh is not one
        with pytest.raises(NotFound):
            await fresh.stream_info("S")


async def test_disconnect_pauses_and_reconnect_resumes(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    await broker.publish(Message("t.task.a", b"waiting"))
    async with broker.pull("T", "workers") as subscription:
        broker.disconnect()
        assert broker.connection.value is ConnectionState.RECONNECTING
        with pytest.raises(NotConnected):
            await broker.publish(Message("t.task.a", b"lost"))
        with pytest.raises(NotConnected):
            await broker.fetch("T", "workers", 1, expires=1.0)
        subscription.request(1)
        with trio.move_on_after(60):
            await subscription.receive()
            pytest.fail("delivered while disconnected")
        assert subscription.credits == 1
        broker.reconnect()
        assert broker.connection.value is ConnectionState.CONNECTED
        [delivery] = await subscription.receive()
        assert delivery.data == b"waiting"


async def test_acks_made_while_disconnected_are_sent_on_reconnect(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, ack_wait=30.0)
    for body in (b"1", b"2"):
        await broker.publish(Message("t.task.a", body))
    first, second = await broker.fetch("T", "workers", 2, expires=1.0)
    broker.disconnect()
    await broker.ack(first)  # held, like a reply in nats-py's reconnect buffer
    await broker.nak(second, delay=5.0)
    await trio.sleep(10)
    broker.reconnect()
    assert (await broker.stream_info("T")).messages == 1
    start = trio.current_time()
    again = await next_delivery(broker)
    assert (again.data, trio.current_time() - start) == (b"2", 5.0)


async def test_a_fetch_fails_when_the_connection_drops(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    async with trio.open_nursery() as nursery:

        async def drop() -> None:
            await trio.sleep(5)
            broker.disconnect()

        nursery.start_soon(drop)
        with pytest.raises(NotConnected):
            await broker.fetch("T", "workers", 1, expires=60.0)
    broker.reconnect()


async def test_a_watch_pauses_while_disconnected(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await broker.ensure_kv(KvConfig("w"))
    async with broker.kv_watch("w") as watch, aclosing(aiter(watch)) as it:
        assert isinstance(await anext(it), CaughtUp)
        await broker.kv_put("w", "k", b"1")
        broker.disconnect()
        with trio.move_on_after(60):
            await anext(it)
            pytest.fail("a watch delivered while disconnected")
        broker.reconnect()
        event = await anext(it)
        assert isinstance(event, KvEntry)
        assert event.value == b"1"


async def test_statistics(broker: MemoryBroker, autojump_clock: trio.testing.MockClock) -> None:
    await tasks(broker)
    await broker.publish(Message("t.task.a", b""))
    await schedule(broker, "s", "@hourly")
    await next_delivery(broker, expires=1.0)
    stats = broker.statistics()
    assert (stats.name, stats.streams, stats.messages, stats.consumers) == (broker.name, 1, 2, 1)
    assert (stats.ack_pending, stats.schedules, stats.openers) == (1, 1, 1)


async def test_a_subscription_s_queued_messages_are_taken_at_once(broker: MemoryBroker) -> None:
    async with broker.subscribe("burst.>") as messages:
        for n in range(3):
            await broker.publish_core(Message(f"burst.{n}", b""))
        first = await anext(messages)
        rest = take_ready(messages)
        assert take_ready(messages) == []
    assert [first.subject] + [message.subject for message in rest] == [
        "burst.0",
        "burst.1",
        "burst.2",
    ]
