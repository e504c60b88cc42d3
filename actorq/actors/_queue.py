"""The QueueActor: one priority level of one queue, fetching only what free slots can run.

The actor turns free slots into pull credits on its durable consumer (shared by every worker
of the queue), and hands each delivery to the SlotPool. A pull credit reserves a slot until a
message uses it, so how many credits a level holds is the whole scheduling policy:

- a level with a backlog (the last delivery said more are waiting) asks for up to its share
  of the slots;
- the default level (0) of an idle queue keeps one credit outstanding, so a new task starts
  without a round trip;
- a higher level holds nothing while idle: a plain subscription on its subjects (and, for
  tasks fired by a schedule, a periodic look at the consumer) tells it when work arrives;
- an idle level (or one whose credits went unused for `IDLE_AFTER` seconds) gives back the
  credits it does not need (`PullSubscription.withdraw`) when another queue or level is
  waiting for a slot — and the default level its last one when a more urgent level waits.

While the connection is down it pauses; when it comes back it re-ensures the stream and
consumer (the server may have lost them) and resumes. On a graceful stop it grants nothing
more and closes the subscription, which gives back what it had received and not handed over.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import trio
import trio_util

from ..broker import Broker, ConnectionState, ConsumerConfig, Delivery, PullSubscription
from ._slots import SlotCredits, SlotPool
from ._stop import current_stop_signal

logger = logging.getLogger("actorq.worker")

IDLE_AFTER = 2.0
"""Seconds without a delivery after which a level that believed it had a backlog is idle."""
PROBE_EVERY = 2.0
"""Seconds between looks at an idle higher level's consumer (for schedule-fired tasks, which
plain subscribers do not see)."""


class QueueActor:
    """Consumes one priority level of one queue for one worker.

    Args:
        broker: The transport.
        stream: The tasks stream.
        consumer: The level's durable consumer config (created or updated at start).
        credits: The worker's free slots.
        slots: Where deliveries run.
        share: How many credits this level may hold when it has a backlog.
        priority: The level (0 = default); higher levels get free slots first.
        prepare: Re-creates the app's streams (after a reconnect).
    """

    def __init__(
        self,
        broker: Broker,
        stream: str,
        consumer: ConsumerConfig,
        credits: SlotCredits,
        slots: SlotPool,
        *,
        share: int,
        priority: int = 0,
        prepare: Callable[[], Awaitable[None]],
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.consumer = consumer
        self.credits = credits
        self.slots = slots
        self.share = share
        self.priority = priority
        self.prepare = prepare
        self.backlog = priority == 0
        """Whether more messages are believed to be waiting on the consumer."""
        self._changed = trio_util.AsyncValue(0)
        """Bumped by everything that may change how many credits this level wants."""
        self._holding = 0
        """Slots taken from `credits` and not yet handed to the pool with a delivery."""
        self.received = 0

    def _poke(self) -> None:
        self._changed.value += 1

    def _wanted(self) -> int:
        if self.backlog:
            return self.share
        return 1 if self.priority == 0 else 0

    async def run(
        self, *, task_status: trio.TaskStatus[QueueActor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.broker.ensure_consumer(self.stream, self.consumer)
        if self.priority:
            await self._probe()
        stop = current_stop_signal()
        try:
            # Closing the subscription gives back (naks) what it received and we did not take.
            async with self.broker.pull(self.stream, self.consumer.name) as subscription:
                task_status.started(self)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._grant, subscription, stop.wait)
                    nursery.start_soon(self._reensure_after_reconnect)
                    nursery.start_soon(self._follow_waiters)
                    if self.priority:
                        nursery.start_soon(self._watch_arrivals)
                        nursery.start_soon(self._probe_while_idle)
                    async with trio_util.move_on_when(stop.wait):
                        await self._receive(subscription)
                    nursery.cancel_scope.cancel()
        finally:
            self.credits.release(self._holding)
            self._holding = 0

    async def _grant(
        self, subscription: PullSubscription, stopped: Callable[[], Awaitable[None]]
    ) -> None:
        """Hold as many credits as this level wants: ask for more, or give some back."""
        async with trio_util.move_on_when(stopped):
            while True:
                seen = self._changed.value
                held = subscription.credits
                waiting = self.credits.highest_waiting.value
                if (
                    held
                    and not self.backlog
                    and waiting >= 0
                    and (held > self._wanted() or waiting > self.priority)
                ):
                    # Another queue or level needs slots these idle credits hold. (Never
                    # otherwise: on JetStream a message in flight at the moment of a
                    # withdrawal waits for the ack wait.)
                    withdrawn = subscription.withdraw()
                    self._holding -= withdrawn
                    self.credits.release(withdrawn)
                    continue
                want = self._wanted() - held
                if want <= 0:
                    await self._changed.wait_value(lambda value: value != seen)
                    continue
                taken = await self.credits.acquire(want, self.priority)
                self._holding += taken
                subscription.request(taken)

    async def _receive(self, subscription: PullSubscription) -> None:
        while True:
            batch: list[Delivery] = []
            with trio.move_on_after(IDLE_AFTER):
                batch = await subscription.receive()
            if not batch:
                if self.backlog and subscription.credits:
                    self.backlog = False  # credits nobody used: nothing is waiting
                    self._poke()
                continue
            self._holding -= len(batch)
            for delivery in batch:
                self.slots.submit(delivery)
            self.received += len(batch)
            self.backlog = batch[-1].num_pending > 0
            self._poke()

    async def _follow_waiters(self) -> None:
        """Wake the granting loop when some queue or level starts waiting for slots."""
        async with aclosing(self.credits.highest_waiting.transitions()) as transitions:
            async for highest, _ in transitions:
                if highest >= 0:
                    self._poke()

    async def _watch_arrivals(self) -> None:
        """An idle higher level learns of new tasks from a plain subscription."""
        async with self.broker.subscribe(self.consumer.filter_subjects[0]) as messages:
            async for _ in messages:
                if not self.backlog:
                    self.backlog = True
                    self._poke()

    async def _probe_while_idle(self) -> None:
        while True:
            await trio.sleep(PROBE_EVERY)
            if not self.backlog and self.broker.connection.value is ConnectionState.CONNECTED:
                await self._probe()

    async def _probe(self) -> None:
        info = await self.broker.consumer_info(self.stream, self.consumer.name)
        if info.num_pending and not self.backlog:
            self.backlog = True
            self._poke()

    async def _reensure_after_reconnect(self) -> None:
        async with aclosing(self.broker.connection.transitions()) as transitions:
            async for state, previous in transitions:
                if (
                    state is ConnectionState.CONNECTED
                    and previous is not ConnectionState.CONNECTING
                ):
                    logger.info(
                        "reconnected: ensuring stream %s and consumer %s",
                        self.stream,
                        self.consumer.name,
                    )
                    await self.prepare()
                    await self.broker.ensure_consumer(self.stream, self.consumer)
