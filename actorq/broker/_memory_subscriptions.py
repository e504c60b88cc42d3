"""The memory broker's receiving ends: credit-based pull subscriptions and plain subscriptions.

Both are async iterators written as classes (not async generators), so leaving them early
needs no ``aclosing``. Both wait on a `Waker`, so while they wait they also keep the broker's
clock running (due timers are run when they wake).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from .._errors import NotFound
from ._memory_consumer import PullRequest
from ._memory_time import Waker

if TYPE_CHECKING:
    from ._memory_consumer import MemConsumer
    from ._memory_time import Engine
    from ._protocol import CoreMessage, Delivery

MAX_PENDING_MESSAGES = 512 * 1024
"""A plain subscription that falls this far behind drops new messages (nats-py's default
pending limit; core NATS is at-most-once)."""


def give_back(consumer: MemConsumer, deliveries: list[Delivery]) -> None:
    """Nak deliveries that never reached their receiver (while disconnected a give-back is
    lost, and the ack wait redelivers them instead)."""
    if consumer.engine.connected and not consumer.deleted:
        for delivery in list(deliveries):
            consumer.nak(delivery.stream_seq, None)


class MemoryPullSubscription:
    """Credit-based consumption of one durable consumer (see `PullSubscription`).

    Credits granted with `request` form one standing pull request; each delivery uses one.
    While the broker is disconnected nothing is delivered; the credits wait for `reconnect`.
    """

    def __init__(self, engine: Engine, consumer: MemConsumer) -> None:
        self._consumer = consumer
        self._waker = Waker(engine)
        self._request = PullRequest(0, self._waker)
        self._closed = False

    def request(self, n: int) -> None:
        """Grant ``n`` more credits. Never blocks."""
        if n < 0:
            raise ValueError(f"credits must be >= 0, got {n}")
        if self._closed:
            raise RuntimeError("the pull subscription is closed")
        self._request.remaining += n
        if n and not self._consumer.deleted:
            self._consumer.engine.advance()  # due redeliveries go first
            self._consumer.add_request(self._request)

    @property
    def credits(self) -> int:
        """Credits granted and not yet used by a delivery."""
        return self._request.remaining

    def withdraw(self) -> int:
        """Take back what was granted and not handed out (see `PullSubscription.withdraw`)."""
        request = self._request
        unreceived, request.delivered = request.delivered, []
        withdrawn = request.remaining + len(unreceived)
        request.remaining = 0
        self._consumer.remove_request(request)
        give_back(self._consumer, unreceived)
        return withdrawn

    async def receive(self) -> list[Delivery]:
        """Wait for the next batch of one or more deliveries."""
        while True:
            if self._request.delivered:
                batch, self._request.delivered = self._request.delivered, []
                return batch
            if self._consumer.deleted:
                raise NotFound(
                    f"consumer {self._consumer.name!r} on stream"
                    f" {self._consumer.stream.config.name!r} was deleted"
                )
            await self._waker.wait()

    def __aiter__(self) -> MemoryPullSubscription:
        return self

    async def __anext__(self) -> list[Delivery]:
        return await self.receive()

    async def aclose(self) -> None:
        """End the iteration (for ``contextlib.aclosing``): the subscription closes."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Withdraw the standing request and give back (nak) deliveries not yet received, so
        they are redelivered at once, as the JetStream broker does."""
        if not self._closed:
            self._closed = True
            self._consumer.remove_request(self._request)
            self._waker.close()
            give_back(self._consumer, self._request.delivered)
            self._request.delivered = []


class CoreSubscription:
    """Every message published to a subject matching ``pattern``, from now on."""

    def __init__(self, engine: Engine, pattern: str) -> None:
        self.pattern = pattern
        self.dropped = 0
        """Messages dropped because the subscriber fell too far behind."""
        self._waker = Waker(engine)
        self._queue: deque[CoreMessage] = deque()
        self._closed = False

    def push(self, message: CoreMessage) -> None:
        if self._closed:
            return
        if len(self._queue) >= MAX_PENDING_MESSAGES:
            self.dropped += 1
            return
        self._queue.append(message)
        self._waker.wake()

    def __aiter__(self) -> CoreSubscription:
        return self

    async def __anext__(self) -> CoreMessage:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self._waker.wait()
        return self._queue.popleft()

    def take_ready(self) -> list[CoreMessage]:
        """The messages already here, without waiting (see `take_ready`)."""
        items = list(self._queue)
        self._queue.clear()
        return items

    async def aclose(self) -> None:
        """End the iteration (for ``contextlib.aclosing``): the subscription closes."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._closed = True
        self._waker.wake()
        self._waker.close()
