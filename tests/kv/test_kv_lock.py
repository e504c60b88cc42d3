"""The lease lock on the memory broker, on virtual time: exclusion, renewal, expiry of a
crashed holder, release of only one's own lease, and loss inside the block."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actorq
from actorq import LeaseLost
from actorq.broker._memory import open_memory_broker
from actorq.kv import LockHeld


async def test_a_second_holder_is_refused_or_waits(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with client.lock("report", ttl=5, holder="first") as lease:
        assert lease.holder == "first"
        with pytest.raises(LockHeld, match="'report' is held by first") as refused:
            async with client.lock("report", ttl=5, timeout=0):
                pytest.fail("two holders at once")
        assert refused.value.holder == "first"
        assert isinstance(refused.value, actorq.KeyExists)
        start = trio.current_time()
        with pytest.raises(LockHeld, match=r"waited 2 s"):
            async with client.lock("report", ttl=5, timeout=2):
                pytest.fail("two holders at once")
        assert trio.current_time() - start == 2.0
        assert await client.lock("report").holder() == "first"
    assert await client.lock("report").holder() is None


async def test_a_waiting_holder_gets_the_lock_when_it_is_released(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    log: list[tuple[str, float]] = []

    async def hold(name: str, seconds: float) -> None:
        async with client.lock("report", ttl=5):
            log.append((f"{name} in", trio.current_time()))
            await trio.sleep(seconds)
            log.append((f"{name} out", trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "a", 12.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, "b", 1.0)
    assert log == [("a in", 0.0), ("a out", 12.0), ("b in", 12.0), ("b out", 13.0)]


async def test_renewal_keeps_the_lock_past_three_ttls(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with client.lock("report", ttl=3) as lease:
        for _ in range(10):  # 10 s = 3.3 TTLs; the TTL would have expired at 3 s
            await trio.sleep(1)
            with pytest.raises(LockHeld):
                async with client.lock("report", ttl=3, timeout=0):
                    pass
        entry = await client.broker.kv_get(client.app.layout.locks_bucket, "report")
        assert entry is not None
        assert entry.revision > lease.token
    assert trio.current_time() == 10.0


async def test_a_crashed_holder_is_replaced_after_its_ttl(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    crashed = await client.lock("report", ttl=3)._key.try_acquire()  # then never renews
    assert crashed is not None
    await trio.sleep(1.5)
    async with client.lock("report", ttl=3) as lease:
        assert trio.current_time() == 3.0  # exactly when the crashed holder's TTL ran out
        assert lease.token > crashed.lease.token


async def test_release_deletes_the_holders_own_lease_with_default_settings(
    client: actorq.Client,
) -> None:
    bucket = client.app.layout.locks_bucket
    async with client.lock("report"):
        assert await client.broker.kv_get(bucket, "report") is not None
    assert await client.broker.kv_get(bucket, "report") is None


async def test_release_never_deletes_someone_elses_lease(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    key = client.lock("report", ttl=2)._key
    stalled = await key.try_acquire()
    assert stalled is not None
    await trio.sleep(2)  # its lease expired while it stalled
    async with client.lock("report", ttl=2, holder="successor") as lease:
        assert await key.release(stalled) is False  # the stalled holder tries to unlock
        assert await client.lock("report").holder() == "successor"
        assert lease.token > stalled.lease.token


async def test_a_lost_lease_cancels_the_block_and_raises_lease_lost(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    seen_cancelled = False
    with pytest.raises(LeaseLost, match="lease 'report' was lost: it was deleted") as lost:  # noqa: PT012
        async with client.lock("report", ttl=5):
            await trio.sleep(1)
            await client.broker.kv_delete(client.app.layout.locks_bucket, "report")
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                seen_cancelled = True
                raise
    assert seen_cancelled
    assert trio.current_time() == 1.0
    assert lost.value.name == "report"


async def test_a_holder_that_cannot_renew_gives_up_before_the_server_could_expire_it(
    client: actorq.Client, memory_url: str, autojump_clock: trio.abc.Clock
) -> None:
    async with open_memory_broker(memory_url.removeprefix("memory://")) as broker:
        with pytest.raises(LeaseLost, match="could not be renewed within its TTL of 3 s"):  # noqa: PT012
            async with client.lock("report", ttl=3):
                await trio.sleep(1.5)  # renewed at 1.0: the server keeps it until 4.0
                broker.disconnect()
                await trio.sleep(100)
        # The holder gave up at 4.0 less its safety margin (a tenth of the TTL).
        assert trio.current_time() == pytest.approx(3.7)
        broker.reconnect()


async def test_the_blocks_own_exception_comes_out_unwrapped_and_the_lock_is_released(
    client: actorq.Client,
) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with client.lock("report"):
            raise KeyError("mine")
    assert await client.lock("report").holder() is None


async def test_cancelling_the_holder_releases_the_lock(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    with trio.move_on_after(2):
        async with client.lock("report"):
            await trio.sleep_forever()
    assert await client.lock("report").holder() is None


async def test_a_lock_object_is_not_reentrant(client: actorq.Client) -> None:
    lock = client.lock("report")
    async with lock as lease:
        assert lock.lease == lease
        with pytest.raises(RuntimeError, match="already entered"):
            async with lock:
                pass
    assert lock.lease is None


async def test_bad_arguments_are_refused_clearly(client: actorq.Client) -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        client.lock("report", ttl=0.5)
    with pytest.raises(ValueError, match="invalid lock name 'a b'"):
        client.lock("a b")
    with pytest.raises(ValueError, match="timeout"):
        client.lock("report", timeout=-1)
