"""Slots: the worker's bounded pool of task runners, and the credits that keep it honest.

A worker has ``concurrency`` slots. Each free slot is one *credit* that a QueueActor may turn
into one pull credit on its consumer, so the worker never holds more messages than it can run
at once (no prefetch hoarding: a message waiting in a worker's memory is a message another
worker could be running). A slot that finishes its task gives its credit back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import trio
from trio_util import AsyncValue

from ..broker import Delivery
from ._stop import current_stop_signal


class SlotCredits:
    """Free slots not yet promised to any queue.

    Credits are handed out in batches when they can be: a queue asking for several waits until
    a quarter of the slots (or all it asked for) are free, so a busy worker sends one pull
    request per batch of finished tasks instead of one per task. A queue asking for one gets
    it as soon as one slot is free.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"concurrency must be at least 1, got {total}")
        self.total = total
        self.batch = max(1, total // 4)
        self.free = AsyncValue(total)

    async def acquire(self, most: int) -> int:
        """Wait until ``min(most, batch)`` slots are free (at least one), then take up to
        ``most`` of them."""
        least = max(1, min(most, self.batch))
        await self.free.wait_value(lambda free: free >= least)
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

    Idle slots wait in a parking lot and `submit` wakes one: on the hot path a slot takes its
    next delivery without a channel or a cancel scope per task.
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
        self._queue: deque[Delivery] = deque()
        self._idle = trio.lowlevel.ParkingLot()
        self._stopping = False
        self.busy = AsyncValue(0)

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery for the next free slot (the caller holds a credit for it)."""
        self._queue.append(delivery)
        self._idle.unpark()

    def statistics(self) -> SlotStatistics:
        return SlotStatistics(self.credits.total, self.busy.value, self.credits.free.value)

    async def run(self, *, task_status: trio.TaskStatus[SlotPool] = trio.TASK_STATUS_IGNORED) -> None:
        stop = current_stop_signal()
        self._stopping = False

        async def stop_intake() -> None:
            await stop.wait()
            self._stopping = True
            self._idle.unpark_all()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_intake)
            for _ in range(self.credits.total):
                nursery.start_soon(self._slot)
            task_status.started(self)
        # Handed in but never started: give them back for immediate redelivery elsewhere.
        while self._queue:
            await self._give_back(self._queue.popleft())

    async def _slot(self) -> None:
        # Once a stop is requested a slot starts nothing new: it finishes what it runs; what
        # is still queued is given back when the pool ends.
        queue = self._queue
        busy = self.busy
        while True:
            # A schedule point before every task (never between taking a delivery and running
            # it, so a cancellation here cannot lose one).
            await trio.lowlevel.checkpoint()
            while not queue and not self._stopping:
                await self._idle.park()
            if self._stopping:
                return
            delivery = queue.popleft()
            busy.value += 1
            try:
                await self._execute(delivery)
            finally:
                busy.value -= 1
                self.credits.release()
