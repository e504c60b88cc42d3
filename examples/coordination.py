"""Coordination primitives from a connected client: one tour, about two seconds.

- a **typed store** of stock levels, updated by 10 concurrent tasks with read-modify-write
  (compare-and-set, retried on conflicts), and watched while it changes;
- a **lease lock**: two jobs want the same lock, the second waits for the first;
- **leader election**: three candidates, one leader; it stops, another takes over at once,
  and a write fenced with the old leader's token is refused;
- a **wait group**, a **counter** and a **rate limiter** (10 per second).

It runs on the in-process memory broker; point ``URL`` at a NATS server (``nats://...``) and
the same code coordinates processes on many machines.

Run it: ``python examples/coordination.py``
"""

from __future__ import annotations

import time
from functools import partial

import attrs
import trio
import trio_util

import actorq
from actorq.broker import CaughtUp
from actorq.kv import Entry, FencedOut

URL = "memory://coordination-demo"
app = actorq.App("shop")


@attrs.frozen
class Stock:
    item: str
    units: int


async def typed_store(client: actorq.Client) -> None:
    stock = client.kv("stock", Stock)
    await stock.put("book", Stock("book", 100))

    async def sell_one() -> None:
        await stock.update("book", lambda s: attrs.evolve(s, units=s.units - 1))

    seen = []
    async with stock.watch("book") as changes, trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(sell_one)
        async for change in changes:
            if isinstance(change, CaughtUp):
                continue
            assert isinstance(change, Entry)
            seen.append(change.value.units)
            if change.value.units == 90:
                break
    entry = await stock.get("book")
    assert entry is not None
    print(f"store: 10 concurrent sales, {entry.value.units} books left (revision {entry.revision})")
    print(f"store: the watch saw {' '.join(map(str, seen))}")


async def lease_lock(client: actorq.Client) -> None:
    order = []
    first_holds = trio.Event()

    async def job(name: str) -> None:
        async with client.lock("nightly-report", ttl=2, holder=name) as lease:
            order.append(f"{name} (token {lease.token})")
            first_holds.set()
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(job, "job-a")
        await first_holds.wait()
        nursery.start_soon(job, "job-b")  # waits until job-a releases the lock
    print(f"lock: held in turn by {', then '.join(order)}")


async def leader_election(client: actorq.Client) -> None:
    audit = client.kv("audit", Stock)
    candidates = [client.leader("scheduler", ttl=2, holder=f"node-{i}") for i in range(3)]
    scopes = [trio.CancelScope() for _ in candidates]

    async def run(index: int, *, task_status: trio.TaskStatus[None]) -> None:
        with scopes[index]:
            await candidates[index].run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        for index in range(3):
            await nursery.start(run, index)
        leader = next(i for i, c in enumerate(candidates) if c.is_leader.value)
        old_fence = candidates[leader].fence
        await audit.put("last-run", Stock("report", 1), fence=old_fence)
        print(f"leader: node-{leader} leads (fencing token {old_fence.token})")

        scopes[leader].cancel()  # it stops cleanly and releases the role
        others = [c for c in candidates if c is not candidates[leader]]
        await trio_util.wait_any(*(partial(c.is_leader.wait_value, True) for c in others))
        new = next(c for c in others if c.is_leader.value)
        await audit.put("last-run", Stock("report", 2), fence=new.fence)
        print(f"leader: it stopped; {new.lease.value.holder} leads now (token {new.token})")
        try:
            await audit.put("last-run", Stock("report", 3), fence=old_fence)
        except FencedOut:
            print("leader: a write with the old leader's fence was refused")
        nursery.cancel_scope.cancel()


async def wait_group_counter_rate_limiter(client: actorq.Client) -> None:
    batch = client.wait_group("batch-1")
    visits = client.counter("visits")
    await batch.add(3)

    async def part(n: int) -> None:
        await trio.sleep(0.1 * n)
        await visits.add(n)
        await batch.done()

    async with trio.open_nursery() as nursery:
        for n in (1, 2, 3):
            nursery.start_soon(part, n)
        await batch.wait()
        print(f"wait group: all 3 parts done; the counter says {await visits.value()}")

    limiter = client.rate_limiter("api", "10/s")
    start = time.monotonic()
    for _ in range(12):
        async with limiter.acquire():
            pass
    print(f"rate limiter: 12 calls at 10/s took {time.monotonic() - start:.1f} s")


async def main() -> None:
    async with actorq.connect(app, URL) as client:
        await typed_store(client)
        await lease_lock(client)
        await leader_election(client)
        await wait_group_counter_rate_limiter(client)


if __name__ == "__main__":
    trio.run(main)
