"""Slots: a delivery whose settling goes on after its run keeps its credit until it is settled.

A worker settles a successful task without waiting for the server: the result's PubAck acks
the delivery on the transport's side later. Meanwhile the slot runs its next delivery, but the
credit stays taken (no more unsettled messages than slots), and the pool does not end before
every such delivery is settled.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from actorq.actors._slots import SlotCredits, SlotPool
from actorq.actors._stop import StopSignal, set_stop_signal
from actorq.broker import Delivery


def delivery(seq: int) -> Delivery:
    return Delivery(
        subject="t.task.default.job",
        data=b"{}",
        headers={},
        stream="T",
        consumer="workers",
        stream_seq=seq,
        consumer_seq=seq,
        num_delivered=1,
        num_pending=0,
        timestamp=0.0,
        token=f"ack.{seq}",
    )


class SettlesLater:
    """An executor whose every run is settled later, when the test says so."""

    def __init__(self) -> None:
        self.ran: list[int] = []
        self.unsettled: list[Callable[[], None]] = []

    async def execute(self, delivery: Delivery, finished: Callable[[], None]) -> bool:
        self.ran.append(delivery.stream_seq)
        self.unsettled.append(finished)
        await trio.lowlevel.checkpoint()
        return True

    def settle_all(self) -> None:
        while self.unsettled:
            self.unsettled.pop(0)()


async def give_back(delivery: Delivery) -> None:
    raise AssertionError(f"nothing is left to give back, got {delivery}")


async def test_a_delivery_settled_later_keeps_its_credit_and_the_pool_waits_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    credits = SlotCredits(2)
    executor = SettlesLater()
    pool = SlotPool(credits, executor.execute, give_back)
    stop = StopSignal()
    pool_ended = trio.Event()

    async def run_pool() -> None:
        set_stop_signal(stop)
        await pool.run()
        pool_ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_pool)
        taken = await credits.acquire(2)
        assert taken == 2
        pool.submit(delivery(1))
        pool.submit(delivery(2))
        await trio.testing.wait_all_tasks_blocked()

        # Both ran, and their slots are free again, but neither credit came back.
        assert executor.ran == [1, 2]
        assert pool.busy.value == 2
        assert credits.free.value == 0

        stop._request(trio.current_time() + 60)
        await trio.testing.wait_all_tasks_blocked()
        assert not pool_ended.is_set()  # the pool waits for the acks on their way

        executor.settle_all()
        await pool_ended.wait()
    assert pool.busy.value == 0
    assert credits.free.value == 2
