"""The wait group and the counter on the memory broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

if TYPE_CHECKING:
    import actorq


async def test_wait_returns_when_the_last_of_n_is_done(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    group = client.wait_group("batch-7")
    assert await group.add(3) == 3
    finished_at: list[float] = []

    async def waiter() -> None:
        await group.wait()
        finished_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        for _ in range(3):
            await trio.sleep(1)
            await trio.testing.wait_all_tasks_blocked()
            assert finished_at == []
            await group.done()
    assert finished_at == [3.0]
    await group.wait()  # a second wait returns at once
    assert trio.current_time() == 3.0


async def test_a_group_nobody_added_to_is_zero(client: actorq.Client) -> None:
    group = client.wait_group("fresh")
    assert await group.count() == 0
    await group.wait()


async def test_the_count_never_goes_negative(client: actorq.Client) -> None:
    group = client.wait_group("batch")
    await group.add(1)
    await group.done()
    with pytest.raises(ValueError, match="negative"):
        await group.done()
    with pytest.raises(ValueError, match="negative"):
        await group.add(-5)
    assert await group.count() == 0
    with pytest.raises(TypeError):
        await group.add(1.5)  # type: ignore[arg-type]


async def test_concurrent_adds_and_dones_end_at_zero(client: actorq.Client) -> None:
    group = client.wait_group("batch")
    await group.add(200)
    async with trio.open_nursery() as nursery:
        for _ in range(20):

            async def worker() -> None:
                for _ in range(10):
                    await group.add(1)
                    await group.done()
                    await group.done()

            nursery.start_soon(worker)
        nursery.start_soon(group.wait)
    assert await group.count() == 0


async def test_close_purges_and_a_later_add_starts_again(client: actorq.Client) -> None:
    group = client.wait_group("batch")
    await group.add(2)
    await group.close()
    assert await group.count() == 0
    await group.wait()
    assert await group.add(1) == 1
    await group.close()
    await group.close()  # closing a closed group is fine


async def test_counter_adds_atomically(client: actorq.Client) -> None:
    hits = client.counter("pages.home")
    assert await hits.value() == 0
    assert await hits.add(5) == 5
    assert await hits.increment() == 6
    assert await hits.decrement() == 5
    assert await hits.add(-10) == -5
    async with trio.open_nursery() as nursery:
        for _ in range(20):

            async def clicker() -> None:
                for _ in range(50):
                    await hits.increment()

            nursery.start_soon(clicker)
    assert await hits.value() == 995
    assert await client.counter("pages.other").value() == 0
    await hits.reset()
    assert await hits.value() == 0
    assert await hits.add(10**30) == 10**30


async def test_an_increment_with_an_idempotency_key_counts_once(client: actorq.Client) -> None:
    hits = client.counter("orders")
    assert await hits.add(3, idempotency_key="order-1") == 3
    assert await hits.add(3, idempotency_key="order-1") == 3
    assert await hits.add(1, idempotency_key="order-2") == 4


async def test_counter_arguments_are_checked(client: actorq.Client) -> None:
    with pytest.raises(ValueError, match="invalid counter name"):
        client.counter("a b")
    with pytest.raises(ValueError, match="invalid wait group name"):
        client.wait_group("")
    with pytest.raises(TypeError, match="takes an int"):
        await client.counter("c").add("1")  # type: ignore[arg-type]
