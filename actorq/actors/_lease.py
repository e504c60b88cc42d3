"""The LeaseKeeper: renews the ack-wait lease of long-running deliveries.

A delivery not acknowledged within the consumer's ``ack_wait`` is redelivered, even if its
handler is still running — the trap behind duplicate runs of long tasks in many queues. One
actor per worker sends an in-progress ack (``+WPI``) for every delivery that has been running
for a third of ``ack_wait``, so a live handler is never redelivered, a short one costs nothing,
and a crashed worker's deliveries come back after ``ack_wait``.
"""

from __future__ import annotations

import logging
from contextlib import aclosing

import trio
import trio_util

from ..broker import Broker, Delivery

logger = logging.getLogger("actorq.worker")


class LeaseKeeper:
    """Renews the leases of a worker's in-flight deliveries every ``ack_wait / 3`` seconds."""

    def __init__(self, broker: Broker, ack_wait: float) -> None:
        self.broker = broker
        self.interval = ack_wait / 3
        self._running: dict[int, tuple[Delivery, float]] = {}
        self.renewals = 0

    def started(self, delivery: Delivery) -> None:
        self._running[id(delivery)] = (delivery, trio.current_time())

    def ended(self, delivery: Delivery) -> None:
        self._running.pop(id(delivery), None)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(
        self, *, task_status: trio.TaskStatus[LeaseKeeper] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started(self)
        async with aclosing(trio_util.periodic(self.interval)) as ticks:
            async for _ in ticks:
                await self._renew_due()

    async def _renew_due(self) -> None:
        due_before = trio.current_time() - self.interval
        for key, (delivery, renewed_at) in list(self._running.items()):
            if renewed_at > due_before or key not in self._running:
                continue
            try:
                await self.broker.in_progress(delivery)
            except Exception as error:  # the delivery may just have been settled
                logger.debug("lease renewal of %s failed: %s", delivery.subject, error)
                continue
            if key in self._running:
                self._running[key] = (delivery, trio.current_time())
                self.renewals += 1
