"""Leases on KV keys: acquire with a TTL, renew while alive, release only your own.

A lease is a key created (compare-and-set on "absent") with a per-key TTL, holding a
`LeaseRecord` with an owner id unique to the acquisition. It is what locks and leader election
are made of:

- **acquire**: ``kv_create`` with the TTL; a holder that dies simply stops renewing, and the
  server expires the key after its TTL. Waiting for a held lease watches the key (opened
  *before* the create is tried, so a release in between is not missed) and tries again the
  moment it is deleted or expires, and at least once per TTL in any case.
- **renew**: every TTL/3, a compare-and-set on the revision held *with* the TTL (a plain update
  would not restart the key's TTL). A refused renewal whose key still holds our owner id means
  an earlier renewal was stored but its answer lost: adopt its revision and go on.
- **detect loss**: a renewal refused because the key changed hands or vanished, a watch event
  showing another owner or a delete/expiry, or renewals failing (say, no connection) until the
  lease's local deadline: the send time of the last stored renewal plus the TTL, less a safety
  margin. The send time is before the server's write, so the holder gives up before the server
  could expire the key (the server keeps whole seconds; TTLs are rounded *up* for it).
- **release**: delete at the revision held (or at the revision of a key that still shows our
  owner id); any other revision is someone else's lease and is left alone.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import BrokerError, KeyExists, LockHeld, NotFound, WrongRevision
from .._names import validate_key
from ..broker import CaughtUp, KvOperation
from ._fencing import Fence, LeaseRecord, decode_record, encode_record
from ._store import whole_seconds

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..broker import Broker, KvConfig

logger = logging.getLogger("actorq.kv")


def default_holder(label: str = "") -> str:
    """A description of this process for lease records: ``host:pid`` and an optional label."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base} {label}" if label else base


@attrs.frozen
class Lease:
    """A lease this process holds (a lock, or a leadership)."""

    name: str
    """The lock's or role's name (the lease's key)."""
    holder: str
    """Who holds it (this process), as written in the lease record."""
    owner: str
    """The owner id unique to this acquisition."""
    token: int
    """The fencing token: the revision the lease was created at. A lease acquired later (by
    anyone) always has a higher token."""
    ttl: float
    """Seconds the lease lives without renewal."""
    acquired: float
    """When it was acquired, seconds since the epoch."""
    fence: Fence = attrs.field(repr=False)
    """Pass as ``fence=`` to a typed store's writes to make them fenced (see `Fence`)."""


@attrs.define(eq=False)
class Held:
    """A lease's live bookkeeping (private to its holder)."""

    lease: Lease
    record: bytes
    revision: int
    """The key's revision as last written by us."""
    valid_until: float
    """Trio time before which the server cannot have expired the key."""


class LeaseKey:
    """Lease operations on one key of one bucket.

    Args:
        broker: The broker the bucket lives on.
        bucket: A bucket that allows per-key TTL.
        name: The key.
        ttl: Seconds a lease lives without renewal (at least 1; the server keeps whole seconds,
            so a fraction is rounded up for it and counts as given for the holder).
        holder: Who acquires (for people); defaults to ``host:pid``.
        config: The bucket's config, ensured before the first acquisition; None if it exists.
        what: What the name is, for errors (``lock name``, ``role name``).
    """

    def __init__(
        self,
        broker: Broker,
        bucket: str,
        name: str,
        *,
        ttl: float,
        holder: str | None = None,
        config: KvConfig | None = None,
        what: str = "lease name",
    ) -> None:
        self.broker = broker
        self.bucket = bucket
        self.name = validate_key(name, what)
        self.server_ttl = whole_seconds(ttl)
        self.ttl = float(ttl)
        self.holder = holder or default_holder()
        self.config = config
        self.renew_every = self.ttl / 3
        self.safety = min(self.ttl / 10, 1.0)
        """Seconds before the deadline at which a holder that could not renew gives up."""
        self.retry_every = min(self.renew_every / 3, 1.0)
        self._ensured = config is None

    async def ensure(self) -> None:
        if not self._ensured and self.config is not None:
            await self.broker.ensure_kv(self.config)
        self._ensured = True

    # --- acquiring -------------------------------------------------------------------------

    async def try_acquire(self) -> Held | None:
        """Take the lease if nobody holds it; None if someone does."""
        await self.ensure()
        owner = secrets.token_hex(8)
        record = LeaseRecord(owner, self.holder, self.broker.now(), self.ttl)
        data = encode_record(record)
        sent = trio.current_time()
        try:
            revision = await self.broker.kv_create(
                self.bucket, self.name, data, ttl=self.server_ttl
            )
        except KeyExists:
            return None
        except NotFound:
            self._ensured = self.config is None  # the bucket was deleted: create it next time
            raise
        fence = Fence(self.broker, self.bucket, self.name, owner, revision)
        lease = Lease(self.name, self.holder, owner, revision, self.ttl, record.acquired, fence)
        return Held(lease, data, revision, sent + self.ttl)

    async def current_holder(self) -> str | None:
        """Who holds the lease now (as its record says), or None."""
        entry = await self.broker.kv_get(self.bucket, self.name)
        record = decode_record(entry.value) if entry is not None else None
        return record.holder if record is not None else None

    async def acquire(self, timeout: float | None = None) -> Held:  # noqa: ASYNC109
        """Take the lease, waiting up to ``timeout`` seconds (None: forever; 0: try once).

        Raises:
            LockHeld: still held by someone else when the timeout ran out.
        """
        await self.ensure()
        deadline = trio.current_time() + timeout if timeout is not None else float("inf")
        while True:
            async with self.broker.kv_watch(self.bucket, self.name, updates_only=True) as events:
                await anext(aiter(events))  # CaughtUp: from here on no change is missed
                held = await self.try_acquire()
                if held is not None:
                    return held
                if trio.current_time() < deadline:
                    # Woken by a delete or an expiry; at least once per TTL in any case.
                    with trio.move_on_at(min(deadline, trio.current_time() + self.ttl)):
                        async for event in events:
                            if isinstance(event, CaughtUp) or event.operation is KvOperation.PUT:
                                continue
                            break
            if trio.current_time() >= deadline:
                holder = await self.current_holder()
                raise LockHeld(
                    f"lock {self.name!r} is held by {holder or 'another holder'}"
                    + (f" (waited {timeout} s)" if timeout else ""),
                    holder=holder or "",
                )

    # --- keeping ---------------------------------------------------------------------------

    async def keep(self, held: Held) -> str:
        """Renew the lease until it is lost, then return why. Never returns while it is held;
        cancel it to stop renewing (the lease then expires after its TTL unless released)."""
        reason = "unknown"
        async with trio.open_nursery() as nursery:

            async def until(check: Callable[[Held], Awaitable[str]]) -> None:
                nonlocal reason
                try:
                    reason = await check(held)
                except Exception as exc:  # a bug must not leak into the holder's block
                    logger.exception("lease %r: keeping it failed", self.name)
                    reason = f"keeping it failed: {exc!r}"
                nursery.cancel_scope.cancel()

            nursery.start_soon(until, self._renew)
            nursery.start_soon(until, self._watch)
        return reason

    async def _renew(self, held: Held) -> str:
        due = trio.current_time() + self.renew_every
        while True:
            await trio.sleep_until(min(due, held.valid_until - self.safety))
            if trio.current_time() >= held.valid_until - self.safety:
                return f"it could not be renewed within its TTL of {self.ttl:g} s"
            sent = trio.current_time()
            try:
                with trio.move_on_at(held.valid_until - self.safety):
                    held.revision = await self.broker.kv_update(
                        self.bucket, self.name, held.record, held.revision, ttl=self.server_ttl
                    )
                    held.valid_until = sent + self.ttl
                    due = sent + self.renew_every
                continue
            except WrongRevision:
                try:
                    taken = await self._adopt(held)
                except BrokerError:
                    due = trio.current_time() + self.retry_every
                    continue
                if taken is not None:
                    return taken
                due = trio.current_time()  # ours after all: renew again at once
            except BrokerError as exc:
                logger.warning("lease %r: renewal failed, retrying: %s", self.name, exc)
                due = trio.current_time() + self.retry_every

    async def _adopt(self, held: Held) -> str | None:
        """After a refused renewal: None if the key still shows our owner id (its revision is
        adopted), else why the lease is gone."""
        entry = await self.broker.kv_get(self.bucket, self.name)
        record = decode_record(entry.value) if entry is not None else None
        if entry is None or record is None:
            return "it expired or was deleted"
        if record.owner != held.lease.owner:
            return f"it expired and {record.holder} holds it now"
        held.revision = entry.revision
        return None

    async def _watch(self, held: Held) -> str:
        try:
            async with self.broker.kv_watch(self.bucket, self.name, updates_only=True) as events:
                async for event in events:
                    if isinstance(event, CaughtUp):
                        continue
                    if event.operation is not KvOperation.PUT:
                        return "it was deleted, or expired"
                    record = decode_record(event.value)
                    if record is None or record.owner != held.lease.owner:
                        holder = record.holder if record is not None else "someone else"
                        return f"{holder} holds it now"
        except BrokerError as exc:  # the renewals still notice a loss, only later
            logger.warning("lease %r: watch failed, relying on renewals: %s", self.name, exc)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- releasing -------------------------------------------------------------------------

    async def release(self, held: Held) -> bool:
        """Delete the lease if it is still ours; True if it was. Never deletes another
        holder's lease: the delete is a compare-and-set on a revision known to be ours."""
        try:
            await self.broker.kv_delete(self.bucket, self.name, revision=held.revision)
            return True
        except WrongRevision:
            pass
        if await self._adopt(held) is not None:
            return False
        try:
            await self.broker.kv_delete(self.bucket, self.name, revision=held.revision)
        except WrongRevision:
            return False
        return True
