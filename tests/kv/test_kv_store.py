"""The typed store on the memory broker: reads, writes, compare-and-set updates, watches, TTLs,
fenced writes and the errors users can hit."""

from __future__ import annotations

import json
from functools import partial

import attrs
import pytest
import trio
import trio.lowlevel

import actorq
from actorq import KeyExists, NotFound, WrongRevision
from actorq.broker import CaughtUp, KvOperation
from actorq.kv import Deleted, Entry, FencedOut, KvStore


@attrs.frozen
class Count:
    n: int = 0


@attrs.frozen
class Order:
    item: str
    quantity: int = 1


def inc(count: Count) -> Count:
    return Count(count.n + 1)


async def test_put_get_create_delete_keys_and_purge(client: actorq.Client) -> None:
    orders = client.kv("orders", Order)
    first = await orders.put("o1", Order("book"))
    assert await orders.create("o2", Order("pen", 3)) > first
    with pytest.raises(KeyExists):
        await orders.create("o1", Order("other"))
    entry = await orders.get("o1")
    assert entry is not None
    assert (entry.key, entry.value, entry.revision, entry.fence) == (
        "o1",
        Order("book"),
        first,
        None,
    )
    assert await orders.keys() == ["o1", "o2"]
    await orders.delete("o1")
    assert await orders.get("o1") is None
    await orders.create("o1", Order("again"))  # a deleted key can be created again
    await orders.purge("o2")
    assert await orders.keys() == ["o1"]
    assert orders.bucket == f"actorq_{client.app.namespace}_kv_orders"


async def test_values_are_plain_json_on_the_wire(client: actorq.Client) -> None:
    orders = client.kv("orders", Order)
    await orders.put("o1", Order("book", 2))
    raw = await client.broker.kv_get(orders.bucket, "o1")
    assert raw is not None
    assert json.loads(raw.value) == {"item": "book", "quantity": 2}


async def test_concurrent_updates_lose_nothing(client: actorq.Client) -> None:
    counts = client.kv("counts", Count)
    async with trio.open_nursery() as nursery:
        for _ in range(20):

            async def writer() -> None:
                for _ in range(50):
                    await counts.update("k", inc, default=Count())

            nursery.start_soon(writer)
    entry = await counts.get("k")
    assert entry is not None
    assert entry.value == Count(1000)


async def test_update_returns_the_new_revision_and_aborts_on_an_exception(
    client: actorq.Client,
) -> None:
    counts = client.kv("counts", Count)
    revision = await counts.update("k", inc, default=Count(41))
    entry = await counts.get("k")
    assert entry is not None
    assert (entry.value, entry.revision) == (Count(42), revision)

    def refuse(count: Count) -> Count:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await counts.update("k", refuse)
    assert (await counts.get("k")) == entry


async def test_update_of_an_absent_key_needs_a_default(client: actorq.Client) -> None:
    counts = client.kv("counts", Count)
    with pytest.raises(NotFound, match="default="):
        await counts.update("missing", inc)


async def test_an_async_update_function(client: actorq.Client) -> None:
    counts = client.kv("counts", Count)

    async def slow_inc(count: Count) -> Count:
        await trio.lowlevel.checkpoint()
        return Count(count.n + 1)

    await counts.update("k", slow_inc, default=Count())
    entry = await counts.get("k")
    assert entry is not None
    assert entry.value == Count(1)


async def test_a_conflict_is_retried_from_a_fresh_read(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    counts = client.kv("counts", Count)
    await counts.put("k", Count(0))
    seen: list[int] = []

    async def racing_inc(count: Count) -> Count:
        seen.append(count.n)
        if len(seen) == 1:  # another process writes between our read and our write
            await client.broker.kv_put(counts.bucket, "k", counts.encode(Count(10)))
        return Count(count.n + 1)

    await counts.update("k", racing_inc)
    entry = await counts.get("k")
    assert seen == [0, 10]
    assert entry is not None
    assert entry.value == Count(11)


async def test_updates_of_one_key_are_serialised_within_the_process(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    # Two store objects on the same bucket: still one update of the key at a time, so no
    # update ever conflicts (each function runs exactly once) although every one sleeps.
    stores = [client.kv("counts", Count), client.kv("counts", Count)]
    calls = 0
    running = 0

    async def slow_inc(count: Count) -> Count:
        nonlocal calls, running
        calls += 1
        running += 1
        assert running == 1
        await trio.sleep(0.1)
        running -= 1
        return Count(count.n + 1)

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(partial(stores[index % 2].update, "k", slow_inc, default=Count()))
    entry = await stores[0].get("k")
    assert entry is not None
    assert entry.value == Count(20)
    assert calls == 20


async def test_update_gives_up_after_max_attempts_with_bounded_waits(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    await client.kv("counts", Count).put("k", Count(0))
    counts: KvStore[Count] = KvStore(
        client.broker, client.app.layout.kv_bucket("counts"), Count, max_attempts=5,
        backoff=(0.01, 0.02),
    )  # fmt: skip

    async def always_loses(count: Count) -> Count:
        await client.broker.kv_put(counts.bucket, "k", counts.encode(Count(count.n + 100)))
        return Count(count.n + 1)

    start = trio.current_time()
    with pytest.raises(WrongRevision, match="gave up after 5 attempts"):
        await counts.update("k", always_loses)
    assert trio.current_time() - start <= 0.01 + 0.02 * 3


async def test_per_key_ttl_expires_and_writes_renew_it(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    sessions = client.kv("sessions", Count, ttl=5)
    await sessions.put("a", Count())
    await sessions.put("b", Count())
    await trio.sleep(3)
    await sessions.update("b", inc)  # a write with the store's TTL restarts it
    await trio.sleep(2)
    assert await sessions.get("a") is None
    assert await sessions.get("b") is not None
    await trio.sleep(3)
    assert await sessions.get("b") is None
    assert trio.current_time() == 8.0


async def test_a_ttl_needs_a_bucket_that_allows_it(client: actorq.Client) -> None:
    plain = client.kv("plain", Count)
    with pytest.raises(actorq.PublishFailed, match="per-key TTL"):
        await plain.put("k", Count(), ttl=5)
    flexible = client.kv("flexible", Count, per_key_ttl=True)
    await flexible.put("k", Count(), ttl=5)
    with pytest.raises(ValueError, match="at least 1 second"):
        await flexible.put("k", Count(), ttl=0.5)


async def test_watch_yields_entries_caught_up_then_changes_and_deletes(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    orders = client.kv("orders", Order, ttl=10)
    await orders.put("o1", Order("book"))
    events: list[object] = []
    async with orders.watch() as watch:
        async for event in watch:
            events.append(event)
            if isinstance(event, CaughtUp):
                await orders.put("o2", Order("pen"))
                await orders.delete("o1")
            elif isinstance(event, Deleted) and event.key == "o2":
                break
    assert [type(e).__name__ for e in events] == [
        "Entry",
        "CaughtUp",
        "Entry",
        "Deleted",
        "Deleted",
    ]
    first, _, second, deleted, expired = events
    assert isinstance(first, Entry)
    assert first.value == Order("book")
    assert isinstance(second, Entry)
    assert second.value == Order("pen")
    assert isinstance(deleted, Deleted)
    assert deleted.operation is KvOperation.DELETE
    assert isinstance(expired, Deleted)
    assert expired.operation is KvOperation.PURGE
    assert trio.current_time() == 10.0  # the TTL expired o2


async def test_watch_history_and_filters(client: actorq.Client) -> None:
    counts = client.kv("counts", Count, history=3)
    for n in range(4):
        await counts.put("a.x", Count(n))
    await counts.put("b.x", Count(9))
    async with counts.watch("a.*", include_history=True) as watch:
        values = []
        async for event in watch:
            if isinstance(event, CaughtUp):
                break
            assert isinstance(event, Entry)
            values.append(event.value.n)
    assert values == [1, 2, 3]


async def test_undecodable_values_fail_a_get_and_are_skipped_by_a_watch(
    client: actorq.Client,
) -> None:
    counts = client.kv("counts", Count)
    await counts.ensure()
    await client.broker.kv_put(counts.bucket, "bad", b'{"n": "many"}')
    await counts.put("good", Count(1))
    with pytest.raises(ValueError, match="'bad'.*not a valid Count"):
        await counts.get("bad")
    async with counts.watch() as watch:
        first = await anext(aiter(watch))
    assert isinstance(first, Entry)
    assert first.key == "good"


async def test_names_and_keys_are_validated(client: actorq.Client) -> None:
    with pytest.raises(ValueError, match="invalid bucket name 'no spaces'"):
        client.kv("no spaces", Count)
    counts = client.kv("counts", Count)
    for key in ("a b", "", "a..b", ".a", "a*"):
        with pytest.raises(ValueError, match="invalid key"):
            await counts.get(key)


async def test_a_fenced_write_carries_its_token(client: actorq.Client) -> None:
    counts = client.kv("counts", Count)
    async with client.lock("writer", ttl=5) as lease:
        revision = await counts.put("k", Count(1), fence=lease.fence)
        await counts.update("k", inc, fence=lease.fence)
    entry = await counts.get("k")
    assert entry is not None
    assert (entry.value, entry.fence) == (Count(2), lease.token)
    assert entry.revision > revision
    raw = await client.broker.kv_get(counts.bucket, "k")
    assert raw is not None
    assert json.loads(raw.value) == {"n": 2, "_actorq_fence": lease.token}


async def test_a_fenced_write_after_the_lease_is_gone_is_refused(client: actorq.Client) -> None:
    counts = client.kv("counts", Count)
    async with client.lock("writer", ttl=5) as lease:
        await counts.put("k", Count(1), fence=lease.fence)
    with pytest.raises(FencedOut, match="no longer held"):
        await counts.update("k", inc, fence=lease.fence)
    with pytest.raises(FencedOut):
        await counts.delete("k", fence=lease.fence)
    entry = await counts.get("k")
    assert entry is not None
    assert entry.value == Count(1)


async def test_a_key_written_under_a_newer_lease_refuses_an_older_one(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    counts = client.kv("counts", Count)
    old = await client.lock("writer", ttl=2)._key.try_acquire()  # a holder that then stalls
    assert old is not None
    await trio.sleep(2)  # its lease expires...
    async with client.lock("writer", ttl=2, timeout=0) as new:  # ...and someone else takes it
        await counts.put("k", Count(7), fence=new.fence)
        assert new.token > old.lease.token
        with pytest.raises(FencedOut, match="newer lease"):
            await counts.put("k", Count(666), fence=old.lease.fence)
        await counts.delete("k", fence=new.fence)
    assert await counts.get("k") is None
