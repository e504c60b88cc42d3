"""The LeaderElector: an actor that campaigns for a named role and holds it as a KV lease.

At most one candidate per role holds the lease at a time, and the holder renews it while it
runs (see ``actorq.kv._lease``). Followers watch the lease key and campaign again the moment it
is deleted (a leader that stopped cleanly releases it) or expires (a leader that died stops
renewing), so a new leader is elected at most one TTL after the old one died. Leadership is
observable — `is_leader` is a trio-util `AsyncValue`, and `changes` delivers every gain and
loss as an event — and carries a fencing token, the lease's creation revision: writes made on
the leader's behalf with ``fence=elector.fence`` are refused once a newer leader exists, so a
deposed leader that has not noticed yet cannot corrupt anything.

It is an actor like the others: ``run`` is started with ``nursery.start`` (under a supervisor
or not), reports ready once its first campaign has an outcome, and stops on
`current_stop_signal` or cancellation, releasing the lease if it holds it so a successor need
not wait out the TTL.
"""

from __future__ import annotations

import logging
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio
from trio_util import AsyncValue

from .._errors import BrokerError, FencedOut
from ..broker import CaughtUp, KvOperation
from ..kv._lease import Held, Lease, LeaseKey
from ._stop import current_stop_signal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..broker import Broker, KvConfig
    from ..kv._fencing import Fence

logger = logging.getLogger("actorq.kv")

RELEASE_TIMEOUT = 5.0


@attrs.frozen
class LeadershipChange:
    """An edge: this candidate gained or lost its role."""

    leader: bool
    """True when it became the leader, False when it stopped being one."""
    lease: Lease | None
    """The new lease (with its fencing token) on a gain; the lost one on a loss."""
    reason: str
    """Why: ``elected``, or what ended the leadership (lost lease, stopped...)."""


class LeaderElector:
    """Campaigns for ``role`` while it runs; exactly one running candidate leads at a time.

    Get one from a client (``client.leader("scheduler", ttl=10)``) and start it like any actor::

        elector = client.leader("scheduler", ttl=10)
        async with trio.open_nursery() as nursery:
            await nursery.start(elector.run)
            await elector.is_leader.wait_value(True)
            await store.put("state", value, fence=elector.fence)

    Args:
        broker: The broker the bucket lives on.
        bucket: The bucket of roles (it must allow per-key TTL).
        role: The role's name (a key).
        ttl: Seconds the leadership lease lives without renewal: a leader that dies is replaced
            within about this long. At least 1 second.
        holder: This candidate, for people (default ``host:pid``).
        config: The bucket's config, ensured when the elector starts.
    """

    def __init__(
        self,
        broker: Broker,
        bucket: str,
        role: str,
        *,
        ttl: float = 10.0,
        holder: str | None = None,
        config: KvConfig | None = None,
    ) -> None:
        self._key = LeaseKey(
            broker, bucket, role, ttl=ttl, holder=holder, config=config, what="role name"
        )
        self.role = self._key.name
        self.ttl = self._key.ttl
        self.is_leader: AsyncValue[bool] = AsyncValue(False)
        """Whether this candidate leads now (observable: ``wait_value``, ``eventual_values``)."""
        self.lease: AsyncValue[Lease | None] = AsyncValue(None)
        """The leadership lease while leading, else None."""
        self._subscribers: set[trio.MemorySendChannel[LeadershipChange]] = set()

    def __repr__(self) -> str:
        state = "leader" if self.is_leader.value else "follower"
        return f"<LeaderElector {self.role!r} {state}>"

    @property
    def token(self) -> int | None:
        """The fencing token of the current leadership, or None when not leading."""
        lease = self.lease.value
        return lease.token if lease is not None else None

    @property
    def fence(self) -> Fence:
        """The fence of the current leadership, for fenced writes.

        Raises:
            FencedOut: this candidate is not the leader.
        """
        lease: Lease | None = self.lease.value
        if lease is None:
            raise FencedOut(f"not the leader of {self.role!r}: no fenced write is possible")
        return lease.fence

    @asynccontextmanager
    async def changes(self) -> AsyncIterator[trio.MemoryReceiveChannel[LeadershipChange]]:
        """Every gain and loss of leadership from now on, in order, none missed.

        Each subscriber gets its own unbounded channel, closed when the block ends::

            async with elector.changes() as changes:
                async for change in changes:
                    if change.leader:
                        ...
        """
        send, receive = trio.open_memory_channel[LeadershipChange](math.inf)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def _set(self, lease: Lease | None, reason: str) -> None:
        was = self.lease.value
        if (was is None) == (lease is None):
            return
        self.lease.value = lease
        self.is_leader.value = lease is not None
        change = LeadershipChange(lease is not None, lease or was, reason)
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(change)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(subscriber)  # it stopped listening
        if lease is not None:
            logger.info("%r: leader of %r (token %d)", self._key.holder, self.role, lease.token)
        else:
            logger.info("%r: no longer leader of %r: %s", self._key.holder, self.role, reason)

    async def run(
        self, *, task_status: trio.TaskStatus[LeaderElector] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Campaign until stopped (`current_stop_signal`) or cancelled.

        Reports ready (``task_status.started(self)``) once the first campaign decided whether
        this candidate leads (or failed: it is then a follower until the server answers).
        Connection errors are logged and retried; it never gives up.
        """
        stop = current_stop_signal()
        held: Held | None = None
        ready = False
        try:
            with stop.move_on():
                while True:
                    try:
                        held = await self._campaign()
                    except BrokerError as exc:
                        logger.warning("%r: campaign for %r failed, retrying: %s",
                                       self._key.holder, self.role, exc)  # fmt: skip
                        held = None
                        if not ready:  # a follower until the server answers
                            ready = True
                            task_status.started(self)
                        await trio.sleep(self._key.retry_every)
                        continue
                    if held is not None:
                        self._set(held.lease, "elected")
                    if not ready:
                        ready = True
                        task_status.started(self)
                    if held is None:
                        await self._wait_vacancy()
                        continue
                    reason = await self._key.keep(held)
                    self._set(None, f"the lease was lost: {reason}")
                    # Free it at once if it is still ours (it was not renewable in time).
                    await self._release(held)
                    held = None
        finally:
            self._set(None, "stopped")
            if held is not None:
                await self._release(held)

    async def _campaign(self) -> Held | None:
        return await self._key.try_acquire()

    async def _wait_vacancy(self) -> None:
        """Return when the lease key is deleted or expires, or after one TTL at most."""
        with trio.move_on_after(self.ttl):
            try:
                async with self._key.broker.kv_watch(self._key.bucket, self.role) as events:
                    seen = False
                    async for event in events:
                        if isinstance(event, CaughtUp):
                            if not seen:
                                return  # vacant already: it went between the try and the watch
                            continue
                        seen = True
                        if event.operation is not KvOperation.PUT:
                            return
            except BrokerError as exc:
                logger.warning("%r: watch of %r failed: %s", self._key.holder, self.role, exc)
                await trio.sleep(self._key.retry_every)

    async def _release(self, held: Held) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
            try:
                await self._key.release(held)
            except Exception as exc:  # noqa: BLE001 - it expires by its TTL instead
                logger.warning("%r: release of %r failed: %s", self._key.holder, self.role, exc)
