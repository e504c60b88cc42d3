"""Bounded mailboxes: the only way actors talk to each other.

A mailbox is a trio memory channel with an overflow policy on top. `open_mailbox` hands out the
two ends: an `ActorRef` that anyone may hold and send through, and the `Inbox` the owning actor
reads. Closing the mailbox (leaving its ``async with``) wakes every blocked sender and every
pending `ActorRef.ask` with `ActorGone`, so talking to a stopped actor fails fast instead of
hanging.

Why the policies are built this way: trio memory channels can block or refuse a send, but they
cannot drop the *oldest* queued item by themselves. For `Overflow.DROP_OLDEST` the mailbox keeps
a private clone of the receive end and, when the buffer is full, takes the oldest message out
of it before adding the new one. Both steps are synchronous, so no other task can slip in
between, and the buffer, its FIFO order and trio's fairness stay trio's own.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import attrs
import trio

from .._errors import ActorGone, AskTimeout, MailboxFull
from ._reply import Reply as Reply  # re-exported: Reply belongs to the mailbox API

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

M = TypeVar("M")
R = TypeVar("R")


class Overflow(enum.Enum):
    """What a send does when the mailbox is full.

    ``BLOCK``
        Wait for room (back-pressure). ``send_nowait`` raises `MailboxFull` instead.
    ``DROP_NEWEST``
        Discard the message being sent; the queued ones stay.
    ``DROP_OLDEST``
        Discard the oldest queued message to make room for the new one (needs a capacity of at
        least 1). An `ActorRef.ask` whose request is discarded fails with `MailboxFull`.
    ``REJECT``
        Raise `MailboxFull` to the sender.
    """

    BLOCK = "block"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    REJECT = "reject"


@attrs.frozen
class MailboxStatistics:
    """A snapshot of a mailbox, from `ActorRef.statistics` or `Inbox.statistics`.

    Attributes:
        name: The mailbox's name (for logs and reprs).
        capacity: How many messages may wait in the mailbox (``math.inf``: unbounded).
        overflow: The overflow policy.
        queued: Messages waiting to be received now.
        sent: Messages accepted into the mailbox so far.
        received: Messages the actor has taken out so far.
        dropped: Messages discarded by ``DROP_NEWEST`` or ``DROP_OLDEST``.
        rejected: Sends refused with `MailboxFull`.
        senders_waiting: Tasks blocked in `ActorRef.send` (``BLOCK`` only).
        receivers_waiting: Tasks blocked in `Inbox.receive`.
        closed: Whether the mailbox no longer accepts messages (closed, or sealed).
    """

    name: str
    capacity: int | float
    overflow: Overflow
    queued: int
    sent: int
    received: int
    dropped: int
    rejected: int
    senders_waiting: int
    receivers_waiting: int
    closed: bool


class _Core(Generic[M]):
    """State shared by the two ends of one mailbox."""

    def __init__(self, name: str, capacity: int | float, overflow: Overflow) -> None:
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.send_channel, self.receive_channel = trio.open_memory_channel[M](capacity)
        # Only DROP_OLDEST needs a way to take messages out from the sending side.
        self.spare_receiver = (
            self.receive_channel.clone() if overflow is Overflow.DROP_OLDEST else None
        )
        self.closed = False
        self.sent = self.received = self.dropped = self.rejected = 0
        # Every reply slot an `ask` is waiting on, failed with ActorGone when the mailbox closes.
        self.outstanding: set[Reply[Any]] = set()
        # DROP_OLDEST only: requests still queued, by message identity, so a discarded request
        # fails its asker at once instead of leaving it waiting.
        self.queued_asks: dict[int, Reply[Any]] = {}

    def gone(self) -> ActorGone:
        return ActorGone(f"the actor behind mailbox {self.name!r} has stopped")

    def full(self) -> MailboxFull:
        return MailboxFull(f"mailbox {self.name!r} is full ({self.capacity} messages)")

    def offer(self, message: M) -> bool:
        """Put a message in without waiting; apply the overflow policy when there is no room.

        ``BLOCK`` cannot wait here, so it refuses like ``REJECT`` (the ``*_nowait`` contract).
        """
        try:
            self.send_channel.send_nowait(message)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self.gone() from None
        else:
            self.sent += 1
            return True
        if self.overflow is Overflow.DROP_NEWEST:
            self.dropped += 1
            return False
        if self.overflow is Overflow.DROP_OLDEST:
            assert self.spare_receiver is not None
            self.discard(self.spare_receiver.receive_nowait())
            self.send_channel.send_nowait(message)
            self.sent += 1
            return True
        self.rejected += 1
        raise self.full()

    def discard(self, message: object) -> None:
        self.dropped += 1
        reply = self.queued_asks.pop(id(message), None)
        if reply is not None:
            reply._abandon(MailboxFull(f"mailbox {self.name!r} dropped this request to make room"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.send_channel.close()
        self.receive_channel.close()
        if self.spare_receiver is not None:
            self.spare_receiver.close()
        for reply in list(self.outstanding):
            reply._abandon(self.gone())
        self.outstanding.clear()
        self.queued_asks.clear()

    def statistics(self) -> MailboxStatistics:
        channel = self.send_channel.statistics()
        return MailboxStatistics(
            name=self.name,
            capacity=self.capacity,
            overflow=self.overflow,
            queued=channel.current_buffer_used,
            sent=self.sent,
            received=self.received,
            dropped=self.dropped,
            rejected=self.rejected,
            senders_waiting=channel.tasks_waiting_send,
            receivers_waiting=channel.tasks_waiting_receive,
            closed=self.closed or channel.open_send_channels == 0,  # closed or sealed
        )


@final
class ActorRef(Generic[M]):
    """The sending end of an actor's mailbox: what other actors hold to talk to it.

    A reference is a plain shareable handle: any number of tasks may send through the same
    reference at once. It stays valid until the mailbox closes; after that every call raises
    `ActorGone`. References come from `open_mailbox` only.
    """

    __slots__ = ("_core",)

    def __init__(self, core: _Core[M]) -> None:
        self._core = core

    @property
    def name(self) -> str:
        """The mailbox's name."""
        return self._core.name

    async def send(self, message: M) -> bool:
        """Send a message without waiting for it to be handled ("fire").

        With ``Overflow.BLOCK`` this waits for room when the mailbox is full; the other
        policies never wait. Cancellation: with ``BLOCK`` a cancelled send did not deliver;
        otherwise a send that delivered is never cancelled afterwards.

        Returns:
            True if the message is in the mailbox; False if ``DROP_NEWEST`` discarded it.

        Raises:
            ActorGone: The mailbox is closed (also raised in a sender blocked when it closes).
            MailboxFull: ``REJECT`` found no room.
        """
        core = self._core
        if core.overflow is Overflow.BLOCK:
            try:
                await core.send_channel.send(message)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise core.gone() from None
            core.sent += 1
            return True
        await trio.lowlevel.checkpoint_if_cancelled()
        accepted = core.offer(message)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return accepted

    def send_nowait(self, message: M) -> bool:
        """Send a message if that can be done at once.

        Same as `send`, except that with ``Overflow.BLOCK`` a full mailbox raises
        `MailboxFull` instead of waiting.

        Returns:
            True if the message is in the mailbox; False if ``DROP_NEWEST`` discarded it.

        Raises:
            ActorGone: The mailbox is closed.
            MailboxFull: No room (``BLOCK`` or ``REJECT``).
        """
        return self._core.offer(message)

    async def ask(
        self,
        make_request: Callable[[Reply[R]], M],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - AskTimeout is part of the contract
    ) -> R:
        """Send a request and wait for its reply (request/reply).

        ``make_request`` receives a fresh `Reply` and returns the message to send, e.g.
        ``await counter.ask(Get)`` for ``@attrs.frozen class Get: reply: Reply[int]``. The
        actor answers with ``reply.send(value)`` or ``reply.fail(error)``.

        Args:
            make_request: Builds the request message around the reply slot.
            timeout: Seconds to wait for the whole exchange (sending included); ``None`` waits
                until the actor answers or stops.

        Returns:
            The value the actor sent.

        Raises:
            AskTimeout: No answer within ``timeout``.
            ActorGone: The mailbox closed before the actor answered.
            MailboxFull: The request was refused (``REJECT``) or dropped (``DROP_*``).
            Exception: Whatever the actor passed to ``reply.fail``.
        """
        core = self._core
        reply: Reply[R] = Reply(core.name)
        request = make_request(reply)
        core.outstanding.add(reply)
        if core.overflow is Overflow.DROP_OLDEST:
            core.queued_asks[id(request)] = reply
        try:
            if timeout is None:  # no cancel scope to enter and leave on the common path
                await self._exchange(request, reply)
            else:
                with trio.move_on_after(timeout):
                    await self._exchange(request, reply)
            if not reply._event.is_set():
                raise AskTimeout(f"no reply from mailbox {core.name!r} within {timeout} s")
            return reply._unwrap()
        finally:
            core.outstanding.discard(reply)
            core.queued_asks.pop(id(request), None)
            reply._given_up = not reply._done

    async def _exchange(self, request: M, reply: Reply[Any]) -> None:
        if not await self.send(request):
            raise MailboxFull(f"mailbox {self._core.name!r} is full; the request was dropped")
        await reply._event.wait()

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the mailbox's counters (see `MailboxStatistics`)."""
        return self._core.statistics()

    def __repr__(self) -> str:
        return f"<ActorRef {self._core.name!r}>"


@final
class Inbox(Generic[M]):
    """The receiving end of a mailbox, owned by its actor.

    Iterate it with ``async for message in inbox``; iteration ends when the mailbox is sealed
    (`seal`) and drained, or closed.
    """

    __slots__ = ("_core",)

    def __init__(self, core: _Core[M]) -> None:
        self._core = core

    async def receive(self) -> M:
        """Wait for the next message.

        Raises:
            trio.EndOfChannel: The mailbox is sealed and empty.
            trio.ClosedResourceError: The mailbox is closed.
        """
        message = await self._core.receive_channel.receive()
        return self._took(message)

    def receive_nowait(self) -> M:
        """Take the next message if one is queued.

        Raises:
            trio.WouldBlock: Nothing is queued.
            trio.EndOfChannel: The mailbox is sealed and empty.
            trio.ClosedResourceError: The mailbox is closed.
        """
        return self._took(self._core.receive_channel.receive_nowait())

    def _took(self, message: M) -> M:
        core = self._core
        core.received += 1
        if core.queued_asks:
            core.queued_asks.pop(id(message), None)
        return message

    def seal(self) -> None:
        """Stop accepting messages but keep the queued ones for the actor to drain.

        Senders (including blocked ones) get `ActorGone` from now on; `receive` returns the
        queued messages, then raises `trio.EndOfChannel`. This is how an actor drains its
        mailbox on a graceful stop.
        """
        self._core.send_channel.close()

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the mailbox's counters (see `MailboxStatistics`)."""
        return self._core.statistics()

    def __aiter__(self) -> Inbox[M]:
        return self

    async def __anext__(self) -> M:
        try:
            return await self.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return f"<Inbox {self._core.name!r}>"


@final
class open_mailbox(Generic[M]):  # noqa: N801 - an async context manager, named like trio's open_*
    """Open a bounded mailbox; yields ``(ActorRef[M], Inbox[M])`` and closes both on exit.

    Write the message type in brackets so references are typed, as with
    `trio.open_memory_channel`::

        async with open_mailbox[CounterMsg](16) as (ref, inbox):
            task_status.started(ref)
            async for message in inbox:
                ...

    Leaving the block closes the mailbox: queued messages are discarded, blocked senders and
    pending asks get `ActorGone`, later sends raise `ActorGone`.

    Args:
        capacity: How many messages may wait (``0`` makes every send a hand-over to a waiting
            receiver; ``math.inf`` is unbounded, for control channels only).
        overflow: What a send does when the mailbox is full (default `Overflow.BLOCK`).
        name: A name for reprs, statistics and error messages.

    Raises:
        ValueError: A negative capacity, or ``DROP_OLDEST`` with capacity 0 (nothing to drop).
    """

    def __init__(
        self,
        capacity: int | float,
        overflow: Overflow = Overflow.BLOCK,
        *,
        name: str = "mailbox",
    ) -> None:
        if capacity != math.inf and (not isinstance(capacity, int) or capacity < 0):
            raise ValueError(f"capacity must be an int >= 0 or math.inf, not {capacity!r}")
        if overflow is Overflow.DROP_OLDEST and capacity < 1:
            raise ValueError("Overflow.DROP_OLDEST needs a capacity of at least 1")
        self._capacity = capacity
        self._overflow = overflow
        self._name = name
        self._core: _Core[M] | None = None

    async def __aenter__(self) -> tuple[ActorRef[M], Inbox[M]]:
        if self._core is not None:
            raise RuntimeError("this open_mailbox(...) was already entered")
        self._core = _Core(self._name, self._capacity, self._overflow)
        return ActorRef(self._core), Inbox(self._core)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._core is not None
        self._core.close()
