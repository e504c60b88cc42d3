"""The lease lock: ``async with client.lock(name, ttl=...)`` runs a block while holding a lease.

Mutual exclusion across processes, with a lease instead of a session: the holder renews in the
background while the block runs, a holder that dies stops renewing and its lease expires after
its TTL, and release deletes the lease only if it is still the holder's own (see `_lease`).

Losing the lease inside the block (it could not be renewed in time, someone deleted it, it
expired during a long pause and another holder took it) is structured: the block is cancelled
at that moment — the code inside sees `trio.Cancelled` at its next checkpoint, like any
cancellation — and the ``async with`` then raises `LeaseLost` naming the lock and the reason.
Cancellation cannot stop code that does not reach a checkpoint, so a write that must never
happen after the loss should be fenced: pass ``lease.fence`` to the typed store's writes.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .._errors import LeaseLost
from ._lease import LeaseKey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

    from ..broker import Broker, KvConfig
    from ._lease import Held, Lease

logger = logging.getLogger("actorq.kv")

RELEASE_TIMEOUT = 5.0
"""Seconds a release may take before it is abandoned (the lease then expires by its TTL)."""


class Lock:
    """A distributed lock held as a lease. Get one with ``client.lock(name, ttl=...)``.

    ``async with lock as lease:`` waits until the lock is free (up to ``timeout``), holds it
    while the block runs (renewing every ``ttl / 3``), and releases it afterwards. ``lease``
    carries the fencing token (`Lease.token`) and a `Fence` for fenced writes.

    One `Lock` object is one holder: it is not re-entrant, and entering it again while it is
    held (from any task) raises `RuntimeError`. Create one per concurrent holder.

    Args:
        broker: The broker the bucket lives on.
        bucket: The bucket of locks (it must allow per-key TTL).
        name: The lock's name (a key: letters, digits, ``_=/-``, dot-separated).
        ttl: Seconds the lease lives without renewal: how long a crashed holder blocks others.
            At least 1 (the server's minimum); the server keeps whole seconds, rounded up.
        timeout: Seconds to wait for the lock; None waits as long as it takes, 0 tries once.
        holder: Who holds it, for people (default ``host:pid``).
        config: The bucket's config, ensured before the first acquisition.

    Raises (from ``async with``):
        LockHeld: ``timeout`` ran out while another holder had the lock.
        LeaseLost: the lease was lost while the block ran (the block was cancelled).
    """

    def __init__(
        self,
        broker: Broker,
        bucket: str,
        name: str,
        *,
        ttl: float = 10.0,
        timeout: float | None = None,
        holder: str | None = None,
        config: KvConfig | None = None,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
        self._key = LeaseKey(
            broker, bucket, name, ttl=ttl, holder=holder, config=config, what="lock name"
        )
        self.name = self._key.name
        self.ttl = self._key.ttl
        self.timeout = timeout
        self._stack: AsyncExitStack | None = None
        self.lease: Lease | None = None
        """The lease while this object holds the lock, else None."""

    def __repr__(self) -> str:
        state = f"held, token {self.lease.token}" if self.lease else "not held"
        return f"<Lock {self.name!r} ttl={self.ttl:g} {state}>"

    async def holder(self) -> str | None:
        """Who holds the lock now (from its lease record), or None if nobody does."""
        await self._key.ensure()
        return await self._key.current_holder()

    async def __aenter__(self) -> Lease:
        if self._stack is not None:
            raise RuntimeError(f"lock {self.name!r}: this Lock object is already entered")
        stack = AsyncExitStack()
        self._stack = stack
        try:
            self.lease = await stack.enter_async_context(self._hold())
        except BaseException:
            self._stack = None
            raise
        return self.lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        stack, self._stack = self._stack, None
        assert stack is not None
        try:
            return bool(await stack.__aexit__(exc_type, exc, tb))
        finally:
            self.lease = None

    @asynccontextmanager
    async def _hold(self) -> AsyncIterator[Lease]:
        held = await self._key.acquire(self.timeout)
        lost: str | None = None
        error: BaseException | None = None
        body = trio.CancelScope()
        try:
            async with trio.open_nursery() as nursery:

                async def keep() -> None:
                    nonlocal lost
                    lost = await self._key.keep(held)
                    logger.warning("lock %r: lease lost: %s", self.name, lost)
                    body.cancel()

                nursery.start_soon(keep)
                try:
                    with body:
                        yield held.lease
                except BaseException as exc:  # noqa: BLE001 - handed out below, unwrapped
                    error = exc
                nursery.cancel_scope.cancel()
        finally:
            await self._release(held)
        if error is not None and (lost is None or isinstance(error, trio.Cancelled)):
            raise error
        if lost is not None:
            raise LeaseLost(self.name, lost) from error

    async def _release(self, held: Held) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
            try:
                await self._key.release(held)
            except Exception as exc:  # noqa: BLE001 - it will expire by its TTL instead
                logger.warning(
                    "lock %r: release failed (it expires by its TTL): %s", self.name, exc
                )
