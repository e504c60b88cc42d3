"""Trio-side receivers for what the Bridge's loop pushes: deliveries, watch events, messages.

The loop side hands over whole batches through the Bridge's ``post``; these objects collect
them on the trio thread and wake the one waiting receiver. No trio task runs per item, and
receiving costs one schedule point: the wait, or a checkpoint when a batch is already there.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._protocol import Delivery

T = TypeVar("T")


class EventStream(Generic[T]):
    """An unbounded queue of items posted from the loop, read one at a time by trio.

    It is its own async iterator; ``aclose`` exists so ``contextlib.aclosing`` works on it.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._items: deque[T] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self._closed = False

    def push(self, batch: list[T]) -> None:
        """Trio thread (via the Bridge's post): append a batch and wake the reader."""
        if self._closed:
            return
        self._items.extend(batch)
        self._lot.unpark_all()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._lot.unpark_all()

    def close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._items:
            await trio.lowlevel.checkpoint()  # (waiting below is the schedule point otherwise)
        while not self._items:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            await self._lot.park()
        return self._items.popleft()

    def take_ready(self) -> list[T]:
        """The items already here, without waiting (an empty list when there are none): a
        reader that handles a burst as one batch takes the rest of it after one ``anext``."""
        items = list(self._items)
        self._items.clear()
        return items

    async def aclose(self) -> None:
        """Stop iterating (the subscription itself ends with its context manager)."""
        self._closed = True


class PullSubscription:
    """Trio side of a credit-based pull subscription (see `Broker.pull`)."""

    def __init__(
        self,
        stream: str,
        consumer: str,
        grant: Callable[[int], None],
        give_back: Callable[[list[Delivery]], None],
        withdraw: Callable[[], None],
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self._grant = grant
        self._withdraw = withdraw
        self._give_back = give_back
        self._credits = 0
        self._ready: list[Delivery] = []
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self._closed = False

    def request(self, n: int) -> None:
        """Grant ``n`` more credits. Never blocks."""
        if n < 0:
            raise ValueError(f"credits must be positive, got {n}")
        if n == 0:
            return
        if self._closed:
            raise trio.ClosedResourceError("the pull subscription is closed")
        self._credits += n
        self._grant(n)

    @property
    def credits(self) -> int:
        """Credits granted and not yet used by a delivery."""
        return self._credits

    def withdraw(self) -> int:
        """Take back what was granted and not handed out (see `PullSubscription.withdraw`)."""
        withdrawn = self._credits + len(self._ready)
        self._credits = 0
        self._give_back(self._ready)
        self._ready = []
        self._withdraw()
        return withdrawn

    async def receive(self) -> list[Delivery]:
        """Wait for the next batch of one or more deliveries.

        Raises:
            NotFound: the consumer (or its stream) was deleted.
            trio.ClosedResourceError: the subscription is closed.
        """
        if self._ready:
            await trio.lowlevel.checkpoint()  # (waiting below is the schedule point otherwise)
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise trio.ClosedResourceError("the pull subscription is closed")
            await self._lot.park()
        batch, self._ready = self._ready, []
        return batch

    def __aiter__(self) -> PullSubscription:
        return self

    async def __anext__(self) -> list[Delivery]:
        try:
            return await self.receive()
        except trio.ClosedResourceError:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """For ``contextlib.aclosing``; the subscription ends with its context manager."""

    # --- from the loop (trio thread, via post) ---------------------------------------

    def deliver(self, batch: list[Delivery]) -> None:
        if self._closed:
            self._give_back(batch)
            return
        if len(batch) > self._credits:
            # Sent for credits withdrawn meanwhile: not ours to hand out.
            self._give_back(batch[self._credits :])
            batch = batch[: self._credits]
            if not batch:
                return
        self._credits -= len(batch)
        if self._ready:
            self._ready.extend(batch)
        else:
            self._ready = batch
        self._lot.unpark_all()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._lot.unpark_all()

    def close(self) -> list[Delivery]:
        """Stop; returns the deliveries received here but never handed out."""
        self._closed = True
        self._lot.unpark_all()
        left, self._ready = self._ready, []
        return left
