"""A distributed rate limiter: at most N acquisitions per period, across every process.

Algorithm: a sliding-window log of *reservations*, one KV key per limited key, changed by
compare-and-set (`KvStore.update`). The key holds the times of the last N reservations. An
acquirer reserves the earliest slot that keeps every window of one period at N or fewer:

    slot = max(now, last reservation, N-th latest reservation + period + guard)

then sleeps until its slot. Slots are handed out in order, and each one is at least a period
after the reservation N places before it, so *no* window of one period — wherever it starts —
holds more than N slots: a full burst of N goes at once, the next N a period later. (A token
bucket of N per period lets 2N through within one second: a full bucket, then the refill.)

``guard`` (default 50 ms) widens each window a little, so the limit holds for the moments
callers actually observe — a slot is taken by a process some milliseconds after it was
computed, and two processes wake with different delays — not only for the computed slots. A
reservation that comes back later than half the guard (the write was slow, the process busy)
is left unused, still counted, and another one is made.

Time is the broker's clock (`Broker.now`): the wall clock on NATS, so processes on several
machines need synchronised clocks (the limit is off by the clock skew), and trio's clock on the
memory broker, so tests run with ``autojump_clock``. A reservation whose acquirer is cancelled
while waiting still counts (the limiter errs on the safe side).
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from .._names import validate_key
from ._store import KvStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..broker import Broker, KvConfig

logger = logging.getLogger("actorq.kv")

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([A-Za-z]+)\s*$")
MAX_LIMIT = 10_000
"""The most acquisitions per period one limiter keeps track of (its log is that long)."""


@attrs.frozen
class Rate:
    """At most ``limit`` acquisitions in any window of ``period`` seconds."""

    limit: int
    period: float

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(
                f"a rate limit must be 1 to {MAX_LIMIT} per period, got {self.limit!r}"
            )
        if not self.period > 0:
            raise ValueError(f"a rate's period must be positive, got {self.period!r}")

    def __str__(self) -> str:
        for unit, seconds in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
            if self.period == seconds:
                return f"{self.limit}/{unit}"
        return f"{self.limit}/{self.period:g}s"


def parse_rate(rate: str | Rate) -> Rate:
    """A `Rate` from text: ``"100/s"``, ``"20/m"``, ``"5/h"``, ``"1000/d"``, or with a number of
    units, ``"10/5s"`` (``sec``, ``min``, ``hour``, ``day`` and plurals work too).

    Raises:
        ValueError: text that is not a rate (the message names it).
    """
    if isinstance(rate, Rate):
        return rate
    match = _RATE.match(rate) if isinstance(rate, str) else None
    unit = _UNITS.get(match.group(3).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"invalid rate {rate!r}: use '<count>/<unit>' such as '100/s', '20/m', '5/h' or"
            " '10/5s' (units: s, m, h, d)"
        )
    count = float(match.group(2)) if match.group(2) else 1.0
    try:
        return Rate(int(match.group(1)), count * unit)
    except ValueError as exc:
        raise ValueError(f"invalid rate {rate!r}: {exc}") from None


@attrs.frozen
class RateWindow:
    """The value of a limited key: the times of its latest reservations, oldest first."""

    times: tuple[float, ...] = ()


class RateLimiter:
    """At most ``rate`` acquisitions per key, shared by every process of the app.

    Get one with ``client.rate_limiter(name, "100/s")``::

        async with limiter.acquire():          # the limiter's own key
            ...
        async with limiter.acquire("user-42"):  # a separate limit per key
            ...

    Args:
        broker: The broker the bucket lives on.
        bucket: The bucket of rate limits (it must allow per-key TTL: idle keys expire).
        name: The limiter's name (a key; ``acquire(key)`` uses ``<name>.<key>``).
        rate: ``"100/s"``-style text or a `Rate`.
        guard: Seconds added to every window (see the module's description); 0 for exact
            windows in tests on the memory broker.
        config: The bucket's config, ensured on first use.
    """

    def __init__(
        self,
        broker: Broker,
        bucket: str,
        name: str,
        rate: str | Rate,
        *,
        guard: float = 0.05,
        config: KvConfig | None = None,
    ) -> None:
        if guard < 0:
            raise ValueError(f"guard must be >= 0, got {guard!r}")
        self.broker = broker
        self.name = validate_key(name, "rate limiter name")
        self.rate = parse_rate(rate)
        self.guard = float(guard)
        self._store = KvStore(broker, bucket, RateWindow, config=config)

    def __repr__(self) -> str:
        return f"<RateLimiter {self.name!r} {self.rate}>"

    def _key(self, key: str | None) -> str:
        return self.name if key is None else f"{self.name}.{validate_key(key)}"

    async def reserve(self, key: str | None = None) -> float:
        """Reserve the next slot without waiting for it; returns its time (seconds since the
        epoch, the broker's clock). The caller must not start before then."""
        limit, window = self.rate.limit, self.rate.period + self.guard
        slot = 0.0

        def take(state: RateWindow) -> RateWindow:
            nonlocal slot
            now = self.broker.now()
            times = [t for t in state.times if t > now - window]
            slot = max(now, times[-1]) if times else now
            if len(times) >= limit:
                slot = max(slot, times[-limit] + window)
            times.append(slot)
            return RateWindow(tuple(times[-limit:]))

        def expiry(state: RateWindow) -> float:
            # Idle keys go away once their last reservation no longer matters.
            return max(1.0, state.times[-1] - self.broker.now() + window + 1.0)

        await self._store.update(self._key(key), take, default=RateWindow(), ttl=expiry)
        return slot

    async def wait(self, key: str | None = None) -> float:
        """Reserve a slot and sleep until it comes; returns its time.

        A reservation that comes back more than ``guard / 2`` after its slot (a slow write, a
        busy process) is not used — starting that late could crowd a later window — but stays
        counted, and another one is made.
        """
        while True:
            slot = await self.reserve(key)
            late = self.broker.now() - slot
            if late <= self.guard / 2:
                if late < 0:
                    await trio.sleep(-late)
                return slot
            logger.debug("rate limiter %r: slot came %.3f s late, taking another", self.name, late)

    @asynccontextmanager
    async def acquire(self, key: str | None = None) -> AsyncIterator[float]:
        """``async with limiter.acquire(key):`` runs the block no more than ``rate`` times per
        period (waiting as long as needed); yields the slot's time. Leaving the block releases
        nothing: it is a rate, not a concurrency limit."""
        yield await self.wait(key)
