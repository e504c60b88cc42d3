"""How the memory broker keeps time without a background task.

A memory broker is shared by every opener of its name, each in its own nursery, so it cannot
own a task in any of them. Instead, everything time-based (ack-wait expiry, nak delays,
schedule firings, message expiry, consumer inactivity) is a *timer*: an instant on trio's clock
and a callback. Timers are run lazily, in time order, by `Engine.advance`, which every broker
operation calls first, and which every waiting operation calls when it wakes. A waiter sleeps
until its own deadline or the next timer, whichever is first (`trio.sleep_until` semantics), so
a due timer is run exactly on time when somebody is waiting, and otherwise by the next
operation, with the timestamps it would have had. Under ``autojump_clock`` hours of retries
therefore pass in milliseconds.

Wall-clock values (message timestamps, ``@at`` times) come from an anchor: the wall time when
the engine was created plus the trio time elapsed since, so they too follow a mock clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Hashable

import trio

TimerCallback = Callable[[float], None]
"""Called with the instant (trio time) the timer was due."""


class Waker:
    """Wakes one waiting task: set by whoever changes what it waits for."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._event = trio.Event()
        engine.wakers.add(self)

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._engine.wakers.discard(self)

    async def wait(self, deadline: float = math.inf) -> None:
        """Sleep until woken, until ``deadline``, or until the next timer is due; then run
        every due timer. Returns at once if woken since the last wait."""
        deadline = min(deadline, self._engine.next_due())
        if not self._event.is_set():
            with trio.move_on_at(deadline):
                await self._event.wait()
        else:
            await trio.lowlevel.checkpoint()
        self._event = trio.Event()
        self._engine.advance()


class Engine:
    """The clock, the timers and the wakers of one memory broker."""

    def __init__(self) -> None:
        self._t0 = trio.current_time()
        self._wall0 = time.time()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._timers: dict[Hashable, tuple[float, int, TimerCallback]] = {}
        self._counter = itertools.count()
        self._running_at: float | None = None
        self.wakers: set[Waker] = set()
        self.connected = True
        """False while the broker simulates a lost connection: nothing is delivered."""

    # --- time -----------------------------------------------------------------------------

    def now(self) -> float:
        """Trio time of the current operation (the due instant while a timer runs)."""
        return self._running_at if self._running_at is not None else trio.current_time()

    def wall(self, at: float | None = None) -> float:
        """Seconds since the epoch at trio time ``at`` (default: now)."""
        return self._wall0 + ((self.now() if at is None else at) - self._t0)

    def at_wall(self, wall: float) -> float:
        """The trio time at which the wall clock reads ``wall``."""
        return self._t0 + (wall - self._wall0)

    # --- timers ---------------------------------------------------------------------------

    def set_timer(self, key: Hashable, when: float, callback: TimerCallback) -> None:
        """Run ``callback`` at ``when`` (replacing any timer with the same key)."""
        counter = next(self._counter)
        earliest = not self._heap or when < self._heap[0][0]
        self._timers[key] = (when, counter, callback)
        heapq.heappush(self._heap, (when, counter, key))
        if earliest:
            # Sleepers chose their deadline before this timer existed: let them choose again.
            self.wake_all()

    def cancel_timer(self, key: Hashable) -> None:
        # The heap entry stays and is skipped when it surfaces (its counter no longer matches).
        self._timers.pop(key, None)

    def next_due(self) -> float:
        """When the earliest timer is due (infinity if none)."""
        while self._heap:
            when, counter, key = self._heap[0]
            entry = self._timers.get(key)
            if entry is not None and entry[1] == counter:
                return when
            heapq.heappop(self._heap)
        return math.inf

    @property
    def timer_count(self) -> int:
        return len(self._timers)

    def advance(self) -> None:
        """Run every timer due by now, in time order, each at its own instant."""
        now = trio.current_time()
        while self.next_due() <= now:
            when, counter, key = heapq.heappop(self._heap)
            _, _, callback = self._timers.pop(key)
            self._running_at = when
            try:
                callback(when)
            finally:
                self._running_at = None

    def wake_all(self) -> None:
        for waker in list(self.wakers):
            waker.wake()
