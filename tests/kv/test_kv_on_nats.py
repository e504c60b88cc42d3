"""The coordination primitives against a real nats-server: the same behaviours as on the memory
broker, on the real clock (short TTLs of about a second, every test bounded by fail_after)."""

from __future__ import annotations

import time
from functools import partial

import attrs
import pytest
import trio
import trio_util

import actorq
from actorq import LeaseLost
from actorq.broker import CaughtUp, KvOperation
from actorq.kv import Deleted, Entry, FencedOut, LockHeld

pytestmark = pytest.mark.integration


@attrs.frozen
class Count:
    n: int = 0


def inc(count: Count) -> Count:
    return Count(count.n + 1)


async def test_store_updates_watches_and_ttls(nats_client: actorq.Client) -> None:
    counts = nats_client.kv("counts", Count, per_key_ttl=True)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(10):

                async def writer() -> None:
                    for _ in range(20):
                        await counts.update("k", inc, default=Count())

                nursery.start_soon(writer)
        entry = await counts.get("k")
        assert entry is not None
        assert entry.value == Count(200)
        async with counts.watch("t") as watch:
            events = []
            async for event in watch:
                events.append(event)
                if isinstance(event, CaughtUp):
                    await counts.put("t", Count(1), ttl=1)
                elif isinstance(event, Deleted):
                    break
        assert [type(e).__name__ for e in events] == ["CaughtUp", "Entry", "Deleted"]
        assert isinstance(events[2], Deleted)
        assert events[2].operation is KvOperation.PURGE
        assert isinstance(events[1], Entry)
        assert events[1].value == Count(1)


async def test_lock_exclusion_renewal_and_loss(nats_client: actorq.Client) -> None:
    with trio.fail_after(15):
        async with nats_client.lock("job", ttl=1, holder="first") as lease:
            with pytest.raises(LockHeld, match="held by first"):
                async with nats_client.lock("job", ttl=1, timeout=0):
                    pytest.fail("two holders")
            start = time.monotonic()
            while time.monotonic() - start < 3.2:  # more than 3 TTLs
                await trio.sleep(0.5)
                assert await nats_client.lock("job").holder() == "first"
            counts = nats_client.kv("counts", Count)
            await counts.put("fenced", Count(1), fence=lease.fence)
        assert await nats_client.lock("job").holder() is None
        with pytest.raises(FencedOut):
            await counts.put("fenced", Count(2), fence=lease.fence)

        with pytest.raises(LeaseLost, match="deleted"):  # noqa: PT012
            async with nats_client.lock("job", ttl=1):
                await nats_client.broker.kv_delete(nats_client.app.layout.locks_bucket, "job")
                await trio.sleep_forever()


async def test_a_crashed_holders_lock_is_taken_after_its_ttl(nats_client: actorq.Client) -> None:
    with trio.fail_after(10):
        crashed = await nats_client.lock("job", ttl=1)._key.try_acquire()
        assert crashed is not None
        start = time.monotonic()
        async with nats_client.lock("job", ttl=1) as lease:
            waited = time.monotonic() - start
        assert lease.token > crashed.lease.token
        assert 0.5 < waited < 2.5


async def test_leader_election_and_failover(nats_client: actorq.Client) -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            candidates = []
            for index in range(3):
                elector = nats_client.leader("scheduler", ttl=1, holder=f"c{index}")
                scope = trio.CancelScope()

                async def run(
                    elector: actorq.kv.LeaderElector = elector,
                    scope: trio.CancelScope = scope,
                    *,
                    task_status: trio.TaskStatus[
                        actorq.kv.LeaderElector
                    ] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    with scope:
                        await elector.run(task_status=task_status)

                await nursery.start(run)
                candidates.append((elector, scope))
            assert [e.is_leader.value for e, _ in candidates] == [True, False, False]
            # A crash: no release, the lease must expire.
            candidates[0][0]._release = _no_release  # type: ignore[method-assign]
            candidates[0][1].cancel()
            start = time.monotonic()
            others = [e for e, _ in candidates[1:]]
            await trio_util.wait_any(*(partial(e.is_leader.wait_value, True) for e in others))
            assert time.monotonic() - start < 2.5
            assert sum(e.is_leader.value for e in others) == 1
            # A clean stop hands over at once.
            [leader] = [pair for pair in candidates[1:] if pair[0].is_leader.value]
            [follower] = [e for e in others if e is not leader[0]]
            leader[1].cancel()
            start = time.monotonic()
            await follower.is_leader.wait_value(True)
            assert time.monotonic() - start < 0.5
            nursery.cancel_scope.cancel()


async def _no_release(held: object) -> None:
    return


async def test_wait_group_counter_and_rate_limiter(nats_client: actorq.Client) -> None:
    with trio.fail_after(15):
        group = nats_client.wait_group("batch")
        await group.add(3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(group.wait)
            for _ in range(3):
                await group.done()
        with pytest.raises(ValueError, match="negative"):
            await group.done()

        hits = nats_client.counter("hits")
        assert await hits.add(2) == 2
        assert await hits.add(2, idempotency_key="x") == 4
        assert await hits.add(2, idempotency_key="x") == 4
        assert await hits.value() == 4
        await hits.reset()
        assert await hits.value() == 0

        limiter = nats_client.rate_limiter("api", "10/s")
        times = []
        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(5):

                async def acquirer() -> None:
                    for _ in range(5):
                        async with limiter.acquire():
                            times.append(time.monotonic())

                nursery.start_soon(acquirer)
        assert time.monotonic() - start >= 2.0
        times.sort()
        for index, first in enumerate(times):
            assert sum(1 for t in times[index:] if t < first + 1.0) <= 10
