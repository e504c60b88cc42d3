"""Broker conformance: the memory broker and the JetStream broker behave the same.

Every test runs twice (see ``conftest.py``). Waits are bounded with ``trio.fail_after``; time
itself is only asserted as "not before" (a delayed message never arrives early), because the
JetStream parameter runs on the real clock against a real server.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from contextlib import aclosing

import pytest
import trio

from actorq import KeyExists, NotFound, PublishFailed, WrongLastSequence, WrongRevision
from actorq.broker import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
    SCHEDULE,
    SCHEDULE_TARGET,
    Broker,
    CaughtUp,
    ConnectionState,
    ConsumerConfig,
    Delivery,
    KvConfig,
    KvEntry,
    KvOperation,
    Message,
    Retention,
    StreamConfig,
    take_ready,
)

pytestmark = pytest.mark.integration


def names(namespace: str) -> tuple[str, str]:
    return namespace.upper(), namespace


async def work_stream(
    broker: Broker, namespace: str, *, ack_wait: float = 30.0, max_ack_pending: int = 100
) -> tuple[str, str]:
    """A work-queue stream with task and schedule subjects, and one consumer on the tasks."""
    stream, prefix = names(namespace)
    await broker.ensure_stream(
        StreamConfig(
            name=stream,
            subjects=(f"{prefix}.task.>", f"{prefix}.sched.>"),
            retention=Retention.WORK_QUEUE,
            allow_msg_schedules=True,
            duplicate_window=60.0,
        )
    )
    await broker.ensure_consumer(
        stream,
        ConsumerConfig(
            name="workers",
            filter_subjects=(f"{prefix}.task.>",),
            ack_wait=ack_wait,
            max_ack_pending=max_ack_pending,
        ),
    )
    return stream, prefix


async def fetch_one(broker: Broker, stream: str, *, expires: float = 5.0):  # type: ignore[no-untyped-def]
    got = await broker.fetch(stream, "workers", 1, expires=expires)
    assert len(got) == 1, got
    return got[0]


async def until_empty(broker: Broker, stream: str) -> None:
    """Poll the server until ``stream`` holds nothing (acks of a work queue took effect)."""
    while (await broker.stream_info(stream)).messages:
        await trio.sleep(0.01)


# --- streams and publishing ---------------------------------------------------------------


async def test_connected(broker: Broker) -> None:
    assert broker.connection.value is ConnectionState.CONNECTED


async def test_ensure_stream_and_consumer_are_idempotent(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await work_stream(broker, namespace)
    info = await broker.stream_info(stream)
    assert info.name == stream
    assert info.messages == 0
    assert info.consumer_count == 1


async def test_publish_is_acknowledged_with_increasing_sequences(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    first = await broker.publish(Message(f"{prefix}.task.a", b"1"))
    second = await broker.publish(Message(f"{prefix}.task.a", b"2"))
    assert first.stream == stream
    assert (first.seq, second.seq) == (1, 2)
    assert not first.duplicate
    assert (await broker.stream_info(stream)).messages == 2


async def test_publish_to_a_subject_without_stream_fails(broker: Broker, namespace: str) -> None:
    with pytest.raises(PublishFailed):
        await broker.publish(Message(f"{namespace}.nowhere", b"x"))


async def test_missing_stream_and_consumer_are_not_found(broker: Broker, namespace: str) -> None:
    with pytest.raises(NotFound):
        await broker.stream_info(f"{namespace.upper()}_MISSING")
    stream, _ = await work_stream(broker, namespace)
    with pytest.raises(NotFound):
        await broker.consumer_info(stream, "missing")


async def test_dedupe_within_the_window(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    message = Message(f"{prefix}.task.a", b"once", {MSG_ID: "job-1"})
    first = await broker.publish(message)
    again = await broker.publish(message)
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert (await broker.stream_info(stream)).messages == 1


async def test_publish_many_reports_each_message_in_order(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    results = await broker.publish_many(
        [
            Message(f"{prefix}.task.a", b"1"),
            Message(f"{namespace}.nowhere", b"lost"),
            Message(f"{prefix}.task.b", b"2"),
        ]
    )
    assert [type(r).__name__ for r in results] == ["PubAck", "PublishFailed", "PubAck"]
    assert results[0].seq == 1  # type: ignore[union-attr]
    assert results[2].seq == 2  # type: ignore[union-attr]


async def test_purge_by_subject(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    for subject in ("a", "a", "b"):
        await broker.publish(Message(f"{prefix}.task.{subject}", b""))
    assert await broker.purge_stream(stream, f"{prefix}.task.a") == 2
    assert (await broker.stream_info(stream)).messages == 1
    assert await broker.purge_stream(stream) == 1


# --- consuming ----------------------------------------------------------------------------


async def test_fetch_delivers_payload_headers_and_metadata(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"payload", {"Actorq-Task": "add"}))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
    assert delivery.subject == f"{prefix}.task.a"
    assert delivery.data == b"payload"
    assert delivery.headers["Actorq-Task"] == "add"
    assert (delivery.stream, delivery.consumer) == (stream, "workers")
    assert delivery.stream_seq == 1
    assert delivery.num_delivered == 1
    assert delivery.num_pending == 0
    assert abs(delivery.timestamp - time.time()) < 60


async def test_fetch_returns_what_arrived_when_it_expires(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"only"))
    with trio.fail_after(10):
        got = await broker.fetch(stream, "workers", 5, expires=0.5)
        assert [d.data for d in got] == [b"only"]
        assert await broker.fetch(stream, "workers", 5, expires=0.2) == []


async def test_ack_removes_the_message_from_a_work_queue(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        await broker.ack(delivery)
        await until_empty(broker, stream)
        info = await broker.consumer_info(stream, "workers")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_redelivery_after_ack_wait(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace, ack_wait=1.0)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        first = await fetch_one(broker, stream)
        delivered_at = trio.current_time()
        again = await fetch_one(broker, stream, expires=5.0)
    assert trio.current_time() - delivered_at >= 0.9
    assert again.stream_seq == first.stream_seq
    assert again.num_delivered == 2


async def test_nak_without_delay_redelivers_at_once(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        await broker.nak(await fetch_one(broker, stream))
        again = await fetch_one(broker, stream)
    assert again.num_delivered == 2


async def test_nak_with_delay_is_not_redelivered_before_the_delay(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        naked_at = trio.current_time()
        await broker.nak(delivery, delay=1.0)
        assert await broker.fetch(stream, "workers", 1, expires=0.5) == []
        again = await fetch_one(broker, stream, expires=5.0)
    assert trio.current_time() - naked_at >= 0.9
    assert again.num_delivered == 2


async def _settle_after_publish(
    broker: Broker, delivery: Delivery, message: Message, retry_delay: float = 1.0
) -> BaseException | None:
    """`publish_then_settle` and wait for its ``done``."""
    outcomes: list[BaseException | None] = []
    done = trio.Event()

    def settled(error: BaseException | None) -> None:
        outcomes.append(error)
        done.set()

    broker.publish_then_settle(message, delivery, settled, retry_delay=retry_delay)
    await done.wait()
    assert len(outcomes) == 1
    return outcomes[0]


async def outcome_stream(broker: Broker, namespace: str) -> str:
    prefix = names(namespace)[1]
    await broker.ensure_stream(
        StreamConfig(name=f"{namespace.upper()}_OUT", subjects=(f"{prefix}.out.>",))
    )
    return prefix


async def test_publish_then_settle_acks_once_the_message_is_stored(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await outcome_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        first = {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}
        error = await _settle_after_publish(
            broker, delivery, Message(f"{prefix}.out.a", b"result", first)
        )
        await until_empty(broker, stream)
        stored = await broker.get_last(f"{namespace.upper()}_OUT", f"{prefix}.out.a")
    assert error is None
    assert stored is not None and stored.data == b"result"


async def test_publish_then_settle_acks_when_an_outcome_is_stored_already(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await outcome_stream(broker, namespace)
    first = {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}
    await broker.publish(Message(f"{prefix}.out.a", b"earlier", first))
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        error = await _settle_after_publish(
            broker, delivery, Message(f"{prefix}.out.a", b"later", first)
        )
        await until_empty(broker, stream)
        stored = await broker.get_last(f"{namespace.upper()}_OUT", f"{prefix}.out.a")
    assert isinstance(error, WrongLastSequence)
    assert stored is not None and stored.data == b"earlier"


async def test_publish_then_settle_naks_with_the_delay_when_nothing_is_stored(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        naked_at = trio.current_time()
        error = await _settle_after_publish(
            broker, delivery, Message(f"{prefix}.nowhere.a", b"result"), retry_delay=1.0
        )
        assert await broker.fetch(stream, "workers", 1, expires=0.5) == []
        again = await fetch_one(broker, stream, expires=5.0)
    assert isinstance(error, PublishFailed)
    assert trio.current_time() - naked_at >= 0.9
    assert again.num_delivered == 2


async def test_a_naked_delivery_still_counts_against_max_ack_pending(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace, max_ack_pending=1)
    await broker.publish(Message(f"{prefix}.task.a", b"1"))
    await broker.publish(Message(f"{prefix}.task.a", b"2"))
    with trio.fail_after(10):
        got = await broker.fetch(stream, "workers", 2, expires=0.5)
        assert [d.data for d in got] == [b"1"]
        await broker.nak(got[0], delay=5.0)
        assert await broker.fetch(stream, "workers", 1, expires=0.5) == []
    info = await broker.consumer_info(stream, "workers")
    assert info.num_ack_pending == 1


async def test_term_is_never_redelivered(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace, ack_wait=1.0)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        await broker.term(await fetch_one(broker, stream))
        assert await broker.fetch(stream, "workers", 1, expires=1.5) == []


async def test_in_progress_keeps_a_delivery_from_being_redelivered(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace, ack_wait=1.0)
    await broker.publish(Message(f"{prefix}.task.a", b"x"))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream)
        for _ in range(5):  # 2 s in all: twice the ack wait
            await trio.sleep(0.4)
            await broker.in_progress(delivery)
        assert await broker.fetch(stream, "workers", 1, expires=0.3) == []
        await broker.ack(delivery)


async def test_pull_subscription_delivers_only_granted_credits(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    for n in range(5):
        await broker.publish(Message(f"{prefix}.task.a", str(n).encode()))
    received: list[bytes] = []
    with trio.fail_after(10):
        async with broker.pull(stream, "workers") as subscription:
            subscription.request(3)
            while len(received) < 3:
                batch = await subscription.receive()
                received.extend(d.data for d in batch)
                for delivery in batch:
                    await broker.ack(delivery)
            assert subscription.credits == 0
            with trio.move_on_after(0.5):
                extra = await subscription.receive()
                pytest.fail(f"delivered without credit: {extra}")
            subscription.request(2)
            while len(received) < 5:
                batch = await subscription.receive()
                received.extend(d.data for d in batch)
    assert received == [b"0", b"1", b"2", b"3", b"4"]


async def test_pull_subscription_waits_for_new_messages(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    with trio.fail_after(10):
        async with broker.pull(stream, "workers") as subscription:
            subscription.request(1)
            async with trio.open_nursery() as nursery:

                async def publish_later() -> None:
                    await trio.sleep(0.3)
                    await broker.publish(Message(f"{prefix}.task.late", b"late"))

                nursery.start_soon(publish_later)
                batch = await subscription.receive()
    assert [d.data for d in batch] == [b"late"]


# --- schedules ----------------------------------------------------------------------------


def rfc3339_in(seconds: float) -> tuple[str, float]:
    """An RFC 3339 UTC time at least ``seconds`` from now, on a whole second."""
    at = math.ceil(time.time() + seconds)
    text = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text, float(at)


async def test_an_at_schedule_is_delivered_at_its_time(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    text, at = rfc3339_in(1.0)
    await broker.publish(
        Message(
            f"{prefix}.sched.one",
            b"later",
            {SCHEDULE: f"@at {text}", SCHEDULE_TARGET: f"{prefix}.task.delayed"},
        )
    )
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream, expires=8.0)
    assert time.time() >= at - 0.05
    assert delivery.subject == f"{prefix}.task.delayed"
    assert delivery.data == b"later"


async def test_two_schedules_on_their_own_subjects_both_fire(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    text, _ = rfc3339_in(1.0)
    for n in (1, 2):
        await broker.publish(
            Message(
                f"{prefix}.sched.{n}",
                str(n).encode(),
                {SCHEDULE: f"@at {text}", SCHEDULE_TARGET: f"{prefix}.task.delayed"},
            )
        )
    got: list[bytes] = []
    with trio.fail_after(10):
        while len(got) < 2:
            got.extend(d.data for d in await broker.fetch(stream, "workers", 2, expires=5.0))
    assert sorted(got) == [b"1", b"2"]


async def test_a_second_schedule_on_the_same_subject_replaces_the_first(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    text, _ = rfc3339_in(1.0)
    for body in (b"first", b"second"):
        await broker.publish(
            Message(
                f"{prefix}.sched.same",
                body,
                {SCHEDULE: f"@at {text}", SCHEDULE_TARGET: f"{prefix}.task.delayed"},
            )
        )
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream, expires=8.0)
        assert delivery.data == b"second"
        assert await broker.fetch(stream, "workers", 1, expires=1.0) == []


# --- direct reads and plain subscriptions --------------------------------------------------


async def test_get_last_by_subject(broker: Broker, namespace: str) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.result.>",)))
    await broker.publish(Message(f"{prefix}.result.t1", b"old", {"K": "1"}))
    await broker.publish(Message(f"{prefix}.result.t1", b"new", {"K": "2"}))
    last = await broker.get_last(stream, f"{prefix}.result.t1")
    assert last is not None
    assert (last.data, last.headers["K"], last.seq) == (b"new", "2", 2)
    assert await broker.get_last(stream, f"{prefix}.result.t2") is None
    first = await broker.get_message(stream, 1)
    assert first is not None and first.data == b"old"
    await broker.delete_message(stream, 1)
    assert await broker.get_message(stream, 1) is None


async def test_plain_subscription_sees_core_and_stream_publishes(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.result.>",)))
    with trio.fail_after(10):
        async with broker.subscribe(f"{prefix}.>") as messages, aclosing(aiter(messages)) as it:
            await broker.publish_core(Message(f"{prefix}.ping", b"core", {"H": "v"}))
            await broker.publish(Message(f"{prefix}.result.t1", b"stored"))
            first = await anext(it)
            second = await anext(it)
    assert (first.subject, first.data, first.headers["H"]) == (f"{prefix}.ping", b"core", "v")
    assert (second.subject, second.data) == (f"{prefix}.result.t1", b"stored")


async def test_a_subscription_hands_over_what_it_has_without_waiting(
    broker: Broker, namespace: str
) -> None:
    prefix = names(namespace)[1]
    subjects = [f"{prefix}.burst.{n}" for n in range(5)]
    received: list[str] = []
    with trio.fail_after(10):
        async with broker.subscribe(f"{prefix}.burst.>") as messages:
            assert take_ready(messages) == []  # nothing yet, and no waiting for it
            for subject in subjects:
                await broker.publish_core(Message(subject, b""))
            while len(received) < len(subjects):
                received.append((await anext(messages)).subject)
                received += [message.subject for message in take_ready(messages)]
    assert received == subjects


# --- key-value ----------------------------------------------------------------------------


async def test_kv_put_get_and_revisions(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    await broker.ensure_kv(KvConfig(bucket=namespace))
    first = await broker.kv_put(namespace, "a", b"1")
    second = await broker.kv_put(namespace, "a", b"2")
    assert second > first
    entry = await broker.kv_get(namespace, "a")
    assert entry is not None
    assert (entry.key, entry.value, entry.revision) == ("a", b"2", second)
    assert await broker.kv_get(namespace, "missing") is None


async def test_kv_create_refuses_a_live_key_but_not_a_deleted_one(
    broker: Broker, namespace: str
) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    await broker.kv_create(namespace, "k", b"1")
    with pytest.raises(KeyExists):
        await broker.kv_create(namespace, "k", b"2")
    await broker.kv_delete(namespace, "k")
    assert await broker.kv_get(namespace, "k") is None
    await broker.kv_create(namespace, "k", b"3")
    entry = await broker.kv_get(namespace, "k")
    assert entry is not None and entry.value == b"3"


async def test_kv_update_is_compare_and_set(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    revision = await broker.kv_create(namespace, "k", b"1")
    newer = await broker.kv_update(namespace, "k", b"2", revision)
    with pytest.raises(WrongRevision, match="k"):
        await broker.kv_update(namespace, "k", b"stale", revision)
    entry = await broker.kv_get(namespace, "k")
    assert entry is not None and (entry.value, entry.revision) == (b"2", newer)


async def test_kv_delete_with_revision_is_compare_and_set(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    revision = await broker.kv_put(namespace, "k", b"1")
    await broker.kv_put(namespace, "k", b"2")
    with pytest.raises(WrongRevision):
        await broker.kv_delete(namespace, "k", revision=revision)
    assert await broker.kv_get(namespace, "k") is not None


async def test_kv_keys_and_purge(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace, history=5))
    for key in ("b", "a", "c"):
        await broker.kv_put(namespace, key, b"x")
    await broker.kv_delete(namespace, "c")
    assert await broker.kv_keys(namespace) == ["a", "b"]
    await broker.kv_purge(namespace, "a")
    assert await broker.kv_keys(namespace) == ["b"]


async def test_kv_per_key_ttl_expires_and_an_update_with_ttl_renews_it(
    broker: Broker, namespace: str
) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace, allow_per_key_ttl=True))
    revision = await broker.kv_create(namespace, "lease", b"me", ttl=1.0)
    await broker.kv_create(namespace, "other", b"x", ttl=1.0)
    with trio.fail_after(10):
        await trio.sleep(0.6)
        await broker.kv_update(namespace, "lease", b"me", revision, ttl=2.0)
        started = trio.current_time()
        while await broker.kv_get(namespace, "other") is not None:
            await trio.sleep(0.05)
        assert await broker.kv_get(namespace, "lease") is not None
        while await broker.kv_get(namespace, "lease") is not None:
            await trio.sleep(0.05)
    assert trio.current_time() - started >= 1.0


async def test_kv_watch_yields_existing_values_then_live_changes(
    broker: Broker, namespace: str
) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    await broker.kv_put(namespace, "a", b"1")
    await broker.kv_put(namespace, "b", b"1")
    events: list[tuple[str, bytes, KvOperation] | str] = []
    with trio.fail_after(10):
        async with broker.kv_watch(namespace) as watch, aclosing(aiter(watch)) as it:
            async for event in it:
                if isinstance(event, CaughtUp):
                    events.append("caught up")
                    await broker.kv_put(namespace, "a", b"2")
                    await broker.kv_delete(namespace, "b")
                    continue
                assert isinstance(event, KvEntry)
                events.append((event.key, event.value, event.operation))
                if event.operation is KvOperation.DELETE:
                    break
    assert events == [
        ("a", b"1", KvOperation.PUT),
        ("b", b"1", KvOperation.PUT),
        "caught up",
        ("a", b"2", KvOperation.PUT),
        ("b", b"", KvOperation.DELETE),
    ]


async def test_kv_watch_with_history_yields_every_revision(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace, history=5))
    for value in (b"1", b"2", b"3"):
        await broker.kv_put(namespace, "k", value)
    seen: list[bytes] = []
    with trio.fail_after(10):
        async with (
            broker.kv_watch(namespace, "k", include_history=True) as watch,
            aclosing(aiter(watch)) as it,
        ):
            async for event in it:
                if isinstance(event, CaughtUp):
                    break
                seen.append(event.value)
    assert seen == [b"1", b"2", b"3"]


async def test_kv_watch_updates_only_skips_existing_values(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace))
    await broker.kv_put(namespace, "old", b"1")
    with trio.fail_after(10):
        async with (
            broker.kv_watch(namespace, updates_only=True) as watch,
            aclosing(aiter(watch)) as it,
        ):
            event = await anext(it)
            if isinstance(event, CaughtUp):
                await broker.kv_put(namespace, "new", b"2")
                event = await anext(it)
            else:
                pytest.fail(f"expected nothing before the marker, got {event}")
    assert isinstance(event, KvEntry) and event.key == "new"


# --- more shared behaviour: schedules, limits, TTLs, paging --------------------------------

from actorq import BrokerError  # noqa: E402
from actorq.broker import TTL, KvOperation as Op  # noqa: E402


async def test_a_fired_schedule_carries_its_headers_and_its_schedule_is_removed(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    text, _ = rfc3339_in(-3600.0)  # in the past: fires at once
    headers = {SCHEDULE: f"@at {text}", SCHEDULE_TARGET: f"{prefix}.task.t", "X-Custom": "1"}
    await broker.publish(Message(f"{prefix}.sched.once", b"body", {**headers, MSG_ID: "s1"}))
    with trio.fail_after(10):
        delivery = await fetch_one(broker, stream, expires=5.0)
        while await broker.get_last(stream, f"{prefix}.sched.once") is not None:
            await trio.sleep(0.05)
    assert delivery.data == b"body"
    assert dict(delivery.headers) == {
        "X-Custom": "1",
        "Nats-Scheduler": f"{prefix}.sched.once",
        "Nats-Schedule-Next": "purge",
    }


async def test_plain_subscribers_do_not_see_what_a_schedule_publishes(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    text, _ = rfc3339_in(-3600.0)
    headers = {SCHEDULE: f"@at {text}", SCHEDULE_TARGET: f"{prefix}.task.t"}
    with trio.fail_after(10):
        async with broker.subscribe(f"{prefix}.>") as messages, aclosing(aiter(messages)) as it:
            await broker.publish(Message(f"{prefix}.sched.once", b"", headers))
            assert (await anext(it)).subject == f"{prefix}.sched.once"
            await fetch_one(broker, stream)  # it fired and was stored in the stream...
            await broker.publish_core(Message(f"{prefix}.after", b""))
            assert (await anext(it)).subject == f"{prefix}.after"  # ...not published to us


async def test_a_bad_schedule_is_refused(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    target = {SCHEDULE_TARGET: f"{prefix}.task.t"}
    for spec in ("* * * * *", "0 0 24 * * *", "0 0 0 * * 7", "@every 500ms", "@at tomorrow"):
        with pytest.raises(PublishFailed):
            await broker.publish(Message(f"{prefix}.sched.bad", b"", {SCHEDULE: spec, **target}))
    elsewhere = {SCHEDULE: "@hourly", SCHEDULE_TARGET: f"{namespace}.elsewhere"}
    with pytest.raises(PublishFailed):  # the target must be another subject of the stream
        await broker.publish(Message(f"{prefix}.sched.bad", b"", elsewhere))
    assert (await broker.stream_info(stream)).messages == 0


async def test_overlapping_consumers_on_a_work_queue_are_refused(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    with pytest.raises(BrokerError):
        await broker.ensure_consumer(stream, ConsumerConfig("a", (f"{prefix}.task.a",)))
    with pytest.raises(BrokerError):
        await broker.ensure_consumer(stream, ConsumerConfig("everything"))
    await broker.ensure_consumer(stream, ConsumerConfig("schedules", (f"{prefix}.sched.>",)))


async def test_max_deliver_stops_redelivery(broker: Broker, namespace: str) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.>",)))
    await broker.ensure_consumer(stream, ConsumerConfig("workers", max_deliver=2))
    await broker.publish(Message(f"{prefix}.a", b"x"))
    with trio.fail_after(10):
        for attempt in (1, 2):
            delivery = await fetch_one(broker, stream)
            assert delivery.num_delivered == attempt
            await broker.nak(delivery)
        assert await broker.fetch(stream, "workers", 1, expires=0.5) == []


async def test_the_dedupe_window_outlives_an_acked_work_queue_message(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = await work_stream(broker, namespace)
    message = Message(f"{prefix}.task.a", b"once", {MSG_ID: "job-1"})
    await broker.publish(message)
    with trio.fail_after(10):
        await broker.ack(await fetch_one(broker, stream))
        assert (await broker.publish(message)).duplicate
        assert await broker.fetch(stream, "workers", 1, expires=0.3) == []


async def test_a_message_ttl_expires_the_message(broker: Broker, namespace: str) -> None:
    stream, prefix = names(namespace)
    config = StreamConfig(name=stream, subjects=(f"{prefix}.>",), allow_msg_ttl=True)
    await broker.ensure_stream(config)
    await broker.publish(Message(f"{prefix}.short", b"", {TTL: "1s"}))
    await broker.publish(Message(f"{prefix}.kept", b""))
    with pytest.raises(PublishFailed):
        await broker.publish(Message(f"{prefix}.bad", b"", {TTL: "500ms"}))
    with trio.fail_after(10):
        while await broker.get_last(stream, f"{prefix}.short") is not None:
            await trio.sleep(0.05)
    assert await broker.get_last(stream, f"{prefix}.kept") is not None


async def test_a_kv_watch_sees_a_key_expire(broker: Broker, namespace: str) -> None:
    await broker.ensure_kv(KvConfig(bucket=namespace, allow_per_key_ttl=True))
    with trio.fail_after(10):
        async with (
            broker.kv_watch(namespace, updates_only=True) as watch,
            aclosing(aiter(watch)) as it,
        ):
            assert isinstance(await anext(it), CaughtUp)
            await broker.kv_put(namespace, "lease", b"me", ttl=1.0)
            put, gone = await anext(it), await anext(it)
    assert isinstance(put, KvEntry)
    assert isinstance(gone, KvEntry)
    assert [(put.key, put.operation), (gone.key, gone.operation)] == [
        ("lease", Op.PUT),
        ("lease", Op.PURGE),
    ]
    assert await broker.kv_get(namespace, "lease") is None


async def test_get_next_skips_deleted_messages_and_filters_by_subject(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.result.>",)))
    for subject in ("a", "b", "a", "b"):
        await broker.publish(Message(f"{prefix}.result.{subject}", subject.encode()))
    await broker.delete_message(stream, 2)
    seen = []
    seq = 1
    while (stored := await broker.get_next(stream, seq)) is not None:
        seen.append((stored.seq, stored.data))
        seq = stored.seq + 1
    assert seen == [(1, b"a"), (3, b"a"), (4, b"b")]
    on_b = await broker.get_next(stream, 1, f"{prefix}.result.b")
    assert on_b is not None and on_b.seq == 4
    assert await broker.get_next(stream, 2, f"{prefix}.result.*") is not None
    assert await broker.get_next(stream, 5) is None


async def test_get_next_pages_through_a_stream(broker: Broker, namespace: str) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.>",)))
    for subject in ("a", "b", "a"):
        await broker.publish(Message(f"{prefix}.{subject}", subject.encode()))
    first = await broker.get_next(stream, 1)
    on_a = await broker.get_next(stream, 2, f"{prefix}.a")
    assert first is not None
    assert on_a is not None
    assert (first.seq, on_a.seq, on_a.data) == (1, 3, b"a")
    assert await broker.get_next(stream, 4) is None


async def test_an_expected_last_subject_sequence_that_does_not_hold_is_refused(
    broker: Broker, namespace: str
) -> None:
    stream, prefix = names(namespace)
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.>",)))
    first = Message(f"{prefix}.outcome", b"first", {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})
    ack = await broker.publish(first)
    with pytest.raises(WrongLastSequence) as refused:
        await broker.publish(
            Message(f"{prefix}.outcome", b"second", {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})
        )
    assert refused.value.last_seq == ack.seq
    [result] = await broker.publish_many(
        [Message(f"{prefix}.outcome", b"third", {EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})]
    )
    assert isinstance(result, WrongLastSequence)
    stored = await broker.get_last(stream, f"{prefix}.outcome")
    assert stored is not None and stored.data == b"first"


async def test_withdrawn_credits_receive_nothing(broker: Broker, namespace: str) -> None:
    stream, prefix = await work_stream(broker, namespace)
    with trio.fail_after(10):
        async with broker.pull(stream, "workers") as subscription:
            subscription.request(5)
            await broker.publish(Message(f"{prefix}.task.a", b"early"))
            early = await subscription.receive()
            assert subscription.withdraw() == 4
            assert subscription.credits == 0
            for n in range(3):
                await broker.publish(Message(f"{prefix}.task.a", str(n).encode()))
            with trio.move_on_after(0.5):
                extra = await subscription.receive()
                pytest.fail(f"delivered after withdraw: {extra}")
            info = await broker.consumer_info(stream, "workers")
            assert (info.num_pending, info.num_ack_pending) == (3, 1)
            subscription.request(2)
            later = await subscription.receive()
            while len(later) < 2:
                later += await subscription.receive()
    assert [d.data for d in early] == [b"early"]
    assert [d.data for d in later] == [b"0", b"1"]
