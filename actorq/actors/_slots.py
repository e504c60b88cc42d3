"""Slots: the worker's bounded pool of task runners, and the credits that keep it honest.

A worker has ``concurrency`` slots. Each free slot is one *credit* that a QueueActor may turn
into one pull credit on its consumer, so the worker never holds more messages than it can run
at once (no prefetch hoarding: a message waiting in a worker's memory is a message another
worker could be running). A slot that finishes its task gives its credit back.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import attrs
import trio
from trio_util import AsyncValue

from ..broker import Delivery
from ._stop import current_stop_signal


class SlotCredits:
    """Free slots not yet promised to any queue."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"concurrency must be at least 1, got {total}")
        self.total = total
        self.free = AsyncValue(total)

    async def acquire(self, most: int) -> int:
        """Wait until at least one slot is free, then take up to ``most`` of them."""
        await self.free.wait_value(lambda free: free > 0)
        taken = min(self.free.value, most)
        self.free.value -= taken
        return taken

    def release(self, count: int = 1) -> None:
        self.free.value += count


@attrs.frozen
class SlotStatistics:
    concurrency: int
    busy: int
    free_credits: int


class SlotPool:
    """Runs deliveries on ``concurrency`` slots, one task per slot at a time.

    QueueActors hand deliveries in through `submit` (never more than the credits they took, so
    a slot is always free for them). On a graceful stop the slots finish what they run and
    take nothing new; past the supervisor's grace they are cancelled, and the executor naks
    what they held for immediate redelivery.
    """

    def __init__(
        self,
        credits: SlotCredits,
        execute: Callable[[Delivery], Awaitable[None]],
        give_back: Callable[[Delivery], Awaitable[None]],
    ) -> None:
        self.credits = credits
        self._execute = execute
        self._give_back = give_back
        self._send, self._receive = trio.open_memory_channel[Delivery](math.inf)
        self.busy = AsyncValue(0)

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery for the next free slot (the caller holds a credit for it)."""
        self._send.send_nowait(delivery)

    def statistics(self) -> SlotStatistics:
        return SlotStatistics(self.credits.total, self.busy.value, self.credits.free.value)

    async def run(self, *, task_status: trio.TaskStatus[SlotPool] = trio.TASK_STATUS_IGNORED) -> None:
        stop = current_stop_signal()
        intakes: set[trio.CancelScope] = set()

        async def stop_intake() -> None:
            await stop.wait()
            for intake in list(intakes):
                intake.cancel()

        async def slot() -> None:
            # Once a stop is requested a slot starts nothing new: it finishes what it runs;
            # what is still queued is naked by the QueueActor's drain.
            while not stop.is_set():
                with trio.CancelScope() as intake:
                    intakes.add(intake)
                    try:
                        delivery = await self._receive.receive()
                    finally:
                        intakes.discard(intake)
                if intake.cancelled_caught:
                    return
                self.busy.value += 1
                try:
                    await self._execute(delivery)
                finally:
                    self.busy.value -= 1
                    self.credits.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_intake)
            for _ in range(self.credits.total):
                nursery.start_soon(slot)
            task_status.started(self)
        # Handed in but never started: give them back for immediate redelivery elsewhere.
        while True:
            try:
                delivery = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            await self._give_back(delivery)
