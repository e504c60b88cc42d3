"""The QueueActor: one queue's pull consumer, fetching only what free slots can run.

The actor turns free slots into pull credits on the queue's durable consumer (shared by every
worker of the queue), and hands each delivery to the SlotPool. While the connection is down
it pauses; when it comes back it re-ensures the stream and consumer (the server may have
lost them) and resumes. On a graceful stop it grants nothing more and gives back anything that
still arrives, so another worker gets it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import trio
import trio_util

from ..broker import Broker, ConnectionState, ConsumerConfig, PullSubscription
from ._slots import SlotCredits, SlotPool
from ._stop import current_stop_signal

logger = logging.getLogger("actorq.worker")

class QueueActor:
    """Consumes one queue for one worker.

    Args:
        broker: The transport.
        stream: The tasks stream.
        consumer: The queue's durable consumer config (created or updated at start).
        credits: The worker's free slots.
        slots: Where deliveries run.
        share: How many credits this queue may hold when it has a backlog; a queue with none
            keeps one outstanding, so the worker's other queues get the rest.
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
        prepare: Callable[[], Awaitable[None]],
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.consumer = consumer
        self.credits = credits
        self.slots = slots
        self.share = share
        self.prepare = prepare
        self.backlog = True
        """Whether the last delivery said more messages were waiting."""
        self.batches = trio_util.AsyncValue(0)
        """Batches received so far (observable: each one used up credits)."""
        self.received = 0

    async def run(self, *, task_status: trio.TaskStatus[QueueActor] = trio.TASK_STATUS_IGNORED) -> None:
        await self.broker.ensure_consumer(self.stream, self.consumer)
        stop = current_stop_signal()
        async with self.broker.pull(self.stream, self.consumer.name) as subscription:
            task_status.started(self)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._grant, subscription, stop.wait)
                nursery.start_soon(self._reensure_after_reconnect)
                async with trio_util.move_on_when(stop.wait):
                    await self._receive(subscription)
                nursery.cancel_scope.cancel()
        # Closing the subscription gives back (naks) what it received and we did not take.

    async def _grant(self, subscription: PullSubscription, stopped: Callable[[], Awaitable[None]]) -> None:
        """Turn free slots into pull credits, up to this queue's share."""
        async with trio_util.move_on_when(stopped):
            while True:
                batches_seen = self.batches.value
                want = (self.share if self.backlog else 1) - subscription.credits
                if want <= 0:
                    # Credits are only used up by deliveries: wait for the next batch.
                    await self.batches.wait_value(lambda seen: seen != batches_seen)
                    continue
                taken = await self.credits.acquire(want)
                subscription.request(taken)

    async def _receive(self, subscription: PullSubscription) -> None:
        while True:
            batch = await subscription.receive()
            for delivery in batch:
                self.slots.submit(delivery)
            self.received += len(batch)
            self.backlog = batch[-1].num_pending > 0
            self.batches.value += 1

    async def _reensure_after_reconnect(self) -> None:
        async with aclosing(self.broker.connection.transitions()) as transitions:
            async for state, previous in transitions:
                if state is ConnectionState.CONNECTED and previous is not ConnectionState.CONNECTING:
                    logger.info("reconnected: ensuring stream %s and consumer %s",
                                self.stream, self.consumer.name)
                    await self.prepare()
                    await self.broker.ensure_consumer(self.stream, self.consumer)
