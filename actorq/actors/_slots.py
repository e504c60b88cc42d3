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

STARVATION_BREAK = 4
"""When queues of several priorities wait for slots, every fourth grant goes to the lowest
one waiting, so a busy high priority never starves the others."""


@attrs.define(eq=False)
class _Waiter:
    priority: int
    least: int
    most: int
    granted: trio.Event = attrs.field(factory=trio.Event)
    taken: int = 0


class SlotCredits:
    """Free slots not yet promised to any queue.

    Credits are handed out in batches when they can be: a queue asking for several waits until
    a quarter of the slots (or all it asked for) are free, so a busy worker sends one pull
    request per batch of finished tasks instead of one per task. A queue asking for one gets
    it as soon as one slot is free. Waiting queues are served highest priority first, but
    every `STARVATION_BREAK`-th grant goes to the lowest priority waiting.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"concurrency must be at least 1, got {total}")
        self.total = total
        self.batch = max(1, total // 4)
        self.free = AsyncValue(total)
        self.highest_waiting = AsyncValue(-1)
        """The highest priority of a queue waiting for slots (-1: none), so an idle queue
        holding a credit can give it up to a more urgent one."""
        self._waiters: list[_Waiter] = []
        self._grants = 0

    async def acquire(self, most: int, priority: int = 0) -> int:
        """Wait until ``min(most, batch)`` slots are free (at least one) and it is this
        priority's turn, then take up to ``most`` of them."""
        least = max(1, min(most, self.batch))
        if not self._waiters and self.free.value >= least:
            taken = min(self.free.value, most)
            self.free.value -= taken
            await trio.lowlevel.checkpoint()
            return taken
        waiter = _Waiter(priority, least, most)
        self._waiters.append(waiter)
        self._update_highest()
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(waiter.taken)
            else:
                self._waiters.remove(waiter)
                self._update_highest()
            raise
        return waiter.taken

    def release(self, count: int = 1) -> None:
        self.free.value += count
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            waiter = self._next_waiter()
            if self.free.value < waiter.least:
                break
            self._waiters.remove(waiter)
            waiter.taken = min(self.free.value, waiter.most)
            self.free.value -= waiter.taken
            self._grants += 1
            waiter.granted.set()
        self._update_highest()

    def _next_waiter(self) -> _Waiter:
        priorities = {waiter.priority for waiter in self._waiters}
        lowest_turn = (
            len(priorities) > 1 and self._grants % STARVATION_BREAK == STARVATION_BREAK - 1
        )
        chosen = min(priorities) if lowest_turn else max(priorities)
        return next(waiter for waiter in self._waiters if waiter.priority == chosen)

    def _update_highest(self) -> None:
        highest = max((waiter.priority for waiter in self._waiters), default=-1)
        if self.highest_waiting.value != highest:
            self.highest_waiting.value = highest


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

    ``execute(delivery, finished)`` runs a delivery and returns whether its settling goes on
    after it returned (the ack waiting for the server to store the result): then it calls
    ``finished()`` once the delivery is acked or naked, and until then the delivery keeps its
    credit and counts as busy, though its slot runs the next one. So the worker never holds
    more unsettled messages than it has slots, and a drain waits for every ack.
    """

    def __init__(
        self,
        credits: SlotCredits,
        execute: Callable[[Delivery, Callable[[], None]], Awaitable[bool]],
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

    async def run(
        self, *, task_status: trio.TaskStatus[SlotPool] = trio.TASK_STATUS_IGNORED
    ) -> None:
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
        await self.busy.wait_value(0)  # the last acks on their way

    def _finished(self) -> None:
        self.busy.value -= 1
        self.credits.release()

    async def _slot(self) -> None:
        # Once a stop is requested a slot starts nothing new: it finishes what it runs; what
        # is still queued is given back when the pool ends.
        queue = self._queue
        busy = self.busy
        while True:
            # One schedule point before every task — the wait for one, or a checkpoint when
            # one is queued already — and never between taking a delivery and running it, so
            # a cancellation cannot lose one.
            if queue and not self._stopping:
                await trio.lowlevel.checkpoint()
            while not queue and not self._stopping:
                await self._idle.park()
            if self._stopping:
                return
            delivery = queue.popleft()
            busy.value += 1
            later = False
            try:
                later = await self._execute(delivery, self._finished)
            finally:
                if not later:
                    self._finished()
