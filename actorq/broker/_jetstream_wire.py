"""The JetStream hot path, spoken over nats-py's core connection (loop side of the Bridge).

nats-py's JetStream helpers (``js.publish``, ``publish_async``, ``fetch``, ``msg.ack``) cost
about five times the raw protocol on the hot path, so publishing, pulling and acking speak
JetStream's wire protocol here, with nats-py used only as a connection:

- publish: a core publish with a reply subject under one wildcard inbox; the PubAck JSON
  (``{"stream":..,"seq":..,"duplicate":..}`` or ``{"error":..}``) is parsed here, and a
  window bounds the PubAcks outstanding across every caller;
- pull: a JSON pull request (``batch``, ``expires``, ``idle_heartbeat``, in nanoseconds) to
  ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` with a core inbox as its reply subject;
  deliveries arrive there with the ``$JS.ACK...`` subject as their reply, status messages
  (100 heartbeat, 404, 408, 409, 503) without one;
- ack: a core publish of ``+ACK``, ``-NAK`` (optionally ``{"delay": nanoseconds}``),
  ``+WPI`` or ``+TERM`` to the delivery's ack subject. Trio queues acks on a `ReplyLane`;
  the loop writes everything queued with one Bridge cast per batch.

Publishes and acks are written as finished protocol commands into nats-py's outgoing buffer
(`RawWriter`); nats-py's flusher task sends them, and its reconnect logic replays what was
buffered while disconnected. Everything here runs on the Bridge's asyncio loop; what goes back
to trio are actorq values, batched through the Bridge's ``post``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import NotConnected, NotFound, PublishFailed, WrongLastSequence
from ._jetstream_codec import (
    EncodeError,
    parse_delivery,
    parse_puback,
    pub_command,
    reply_command,
)
from ._jetstream_inbox import Inboxes
from ._protocol import CoreMessage, Delivery, Message, PubAck

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

    from ..actors._bridge import Answer
    from ..actors._bridge_loop import LoopSide

logger = logging.getLogger("actorq.jetstream")

T = TypeVar("T")

ACK = b"+ACK"
NAK = b"-NAK"
PROGRESS = b"+WPI"
TERM = b"+TERM"

_STATUS = "Status"
_DESCRIPTION = "Description"
_NANOS = 1_000_000_000


def next_subject(stream: str, consumer: str) -> str:
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"


def nak_body(delay: float | None) -> bytes:
    if delay is None or delay <= 0:
        return NAK
    return b'-NAK {"delay": %d}' % int(delay * _NANOS)


def is_delivery(reply: str) -> bool:
    return reply.startswith("$JS.ACK.")


class RawWriter:
    """Appends finished protocol commands to nats-py's outgoing buffer.

    This is what ``nc.publish`` does after validating and formatting, minus the per-call
    overhead; `_jetstream_codec` does the validation once per distinct subject and header
    name. It relies on three attributes of nats-py's client that have been stable throughout
    nats-py 2.x (``_pending``, ``_pending_data_size``, ``_flush_pending``); if they are
    missing, `usable` is False and the caller falls back to ``nc.publish``. When the flusher's
    queue and task are there too (``_flush_queue``, ``_flusher_task``) it wakes the flusher
    directly.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.usable = all(
            hasattr(nc, name) for name in ("_pending", "_pending_data_size", "_flush_pending")
        )
        self._kicked = False

    def check_open(self) -> None:
        if not self.nc.is_connected:
            state = "closed" if self.nc.is_closed else "reconnecting"
            raise NotConnected(f"cannot publish: not connected to NATS ({state})")

    def write(self, command: bytes) -> None:
        nc: Any = self.nc
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        queue: asyncio.Queue[asyncio.Future[None]] | None = getattr(nc, "_flush_queue", None)
        flusher: asyncio.Task[None] | None = getattr(nc, "_flusher_task", None)
        if (
            queue is not None
            and flusher is not None
            and not flusher.done()
            and nc.is_connected
            and not self.over_limit()
        ):
            # Wake nats-py's flusher directly — what `_flush_pending` does, without a task
            # and a loop iteration of its own. While a wake-up is queued, the flusher will
            # write this command with the others.
            if queue.empty():
                queue.put_nowait(asyncio.get_running_loop().create_future())
            return
        if not self._kicked:
            # One flush per loop iteration, however many commands were written meanwhile.
            self._kicked = True
            asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        self._kicked = False
        nc: Any = self.nc
        force = nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size
        await nc._flush_pending(force_flush=force)

    def over_limit(self) -> bool:
        nc: Any = self.nc
        limit: int = nc._max_pending_size
        size: int = nc._pending_data_size
        return limit > 0 and size > limit


class ReplyLane:
    """Acks and other fire-and-forget publishes from trio: trio appends ``(subject, body)``;
    when it finds the lane idle it casts `Wire.drain_replies` once; the loop writes
    everything queued by then. Deque appends and pops are safe across the two threads."""

    __slots__ = ("items", "scheduled")

    def __init__(self) -> None:
        self.items: deque[tuple[str, bytes]] = deque()
        self.scheduled = False


class Handoff(Generic[T]):
    """Items the loop receives for one trio receiver, handed over with one post per batch.

    The loop `put`s items; the first one after trio's last take posts `take`, which runs on
    the trio thread and gives ``emit`` everything queued by then. So the first item leaves at
    once (no waiting for the loop's next iteration), and items that arrive before trio gets
    to it go with it. Deque appends and pops are safe across the two threads.
    """

    __slots__ = ("_emit", "_items", "_post", "_scheduled")

    def __init__(self, post: Callable[..., None], emit: Callable[[list[T]], None]) -> None:
        self._post = post
        self._emit = emit
        self._items: deque[T] = deque()
        self._scheduled = False

    def put(self, item: T) -> None:
        """Loop thread."""
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._post(self.take)

    def take(self) -> None:
        """Trio thread (posted): emit everything queued."""
        self._scheduled = False
        items = self._items
        batch = [items.popleft() for _ in range(len(items))]
        if batch:
            self._emit(batch)

    def drain(self) -> list[T]:
        """Loop thread: take back what trio has not taken yet."""
        items = self._items
        return [items.popleft() for _ in range(len(items))]


class PublishLane:
    """Single publishes from trio that wait for their PubAck without an asyncio task each.

    Trio appends ``(message, answer)`` (see `Bridge.answer`); when it finds the lane idle it
    casts `Wire.drain_publishes` once; the loop writes everything queued by then, and each
    PubAck (or failure) goes back to trio through its answer. A ``publish`` awaited on its own
    costs two thread crossings, shared with every other publish and ack in flight.
    """

    __slots__ = ("items", "scheduled")

    def __init__(self) -> None:
        self.items: deque[tuple[Message, Answer | SettleAfterPublish]] = deque()
        self.scheduled = False


class SettleAfterPublish:
    """A lane publish whose PubAck settles a delivery right here on the loop thread (see
    `Broker.publish_then_settle`): ack when stored or refused as `WrongLastSequence`, nak
    otherwise; then the trio side hears of it through ``notice``."""

    __slots__ = ("nak", "notice", "token", "wire")

    def __init__(self, notice: Answer, wire: Wire, token: object, nak: bytes) -> None:
        self.notice = notice
        self.wire = wire
        self.token = token
        self.nak = nak

    def send(self, value: object) -> None:
        self.wire.reply(self.token, ACK)  # type: ignore[arg-type]
        self.notice.send(None)

    def fail(self, error: BaseException) -> None:
        stored_before = isinstance(error, WrongLastSequence)
        self.wire.reply(self.token, ACK if stored_before else self.nak)  # type: ignore[arg-type]
        self.notice.fail(error)


class _Batch:
    """A `Wire.publish_many` call waiting for its PubAcks."""

    __slots__ = ("messages", "results", "remaining", "done")

    def __init__(self, messages: Sequence[Message], done: asyncio.Future[None]) -> None:
        self.messages = messages
        self.results: list[PubAck | PublishFailed | None] = [None] * len(messages)
        self.remaining = len(messages)
        self.done = done

    def subject(self, index: int) -> str:
        return self.messages[index].subject

    def settle(self, index: int, result: PubAck | PublishFailed) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class _Single:
    """A publish from the `PublishLane` waiting for its PubAck."""

    __slots__ = ("answer", "topic")

    def __init__(self, topic: str, answer: Answer | SettleAfterPublish) -> None:
        self.topic = topic
        self.answer = answer

    def subject(self, index: int) -> str:
        return self.topic

    def settle(self, index: int, result: PubAck | PublishFailed) -> None:
        if type(result) is PubAck:
            self.answer.send(result)
        else:
            self.answer.fail(result)  # type: ignore[arg-type]


class Wire:
    """Loop-side state of the hot path for one connection."""

    def __init__(self, side: LoopSide, *, window: int = 4000, ack_timeout: float = 10.0) -> None:
        self.side = side
        self.nc = side.nc
        self.window = window
        self.resume_below = max(window * 3 // 4, 1)
        self.ack_timeout = ack_timeout
        self.writer = RawWriter(side.nc)
        self.inboxes = Inboxes(side.nc)
        self.replies = ReplyLane()
        self.publishes = PublishLane()
        self._prefix = ""
        self._next_token = 0
        self._pending: dict[str, tuple[_Batch | _Single, int]] = {}
        self._window_waiters: list[asyncio.Future[None]] = []
        self._lane_blocked = False
        """The publish lane waits for room in the window."""
        # Tokens and deadlines only: the publishes themselves live in `_pending` alone, so an
        # answered one is freed at once rather than kept for the sweeper (which would push
        # thousands of objects a second into the collector's old generations).
        self._singles: deque[tuple[str, float]] = deque()
        """Lane publishes in the order they were written, for their timeouts."""
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_interval = min(1.0, ack_timeout / 4)

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        await self.inboxes.subscribe(self._prefix + "*", self._on_puback)

    # --- publishing -----------------------------------------------------------------

    async def publish_many(self, messages: Sequence[Message]) -> list[PubAck | PublishFailed]:
        """Publish with a reply inbox each; wait for every PubAck (or failure)."""
        if not messages:
            return []
        self.writer.check_open()
        loop = asyncio.get_running_loop()
        batch = _Batch(messages, loop.create_future())
        pending = self._pending
        prefix = self._prefix
        raw = self.writer.usable
        write = self.writer.write
        tokens: list[str] = []
        try:
            for index, message in enumerate(messages):
                if len(pending) >= self.window:
                    waiter = loop.create_future()
                    self._window_waiters.append(waiter)
                    await waiter
                if raw and self.writer.over_limit():
                    await self.writer.flush()
                token = str(self._next_token)
                self._next_token += 1
                reply = prefix + token
                try:
                    if raw:
                        if len(message.data) > self.nc.max_payload:
                            raise EncodeError(f"payload larger than {self.nc.max_payload} bytes")
                        write(pub_command(message.subject, reply, message.data, message.headers))
                    else:  # pragma: no cover - only without nats-py's buffer internals
                        await self.nc.publish(
                            message.subject, message.data, reply, dict(message.headers) or None
                        )
                except Exception as exc:  # noqa: BLE001 - reported in place, per message
                    self._settle(batch, index, _publish_error(message.subject, exc))
                    continue
                pending[token] = (batch, index)
                tokens.append(token)
            if batch.remaining:
                try:
                    await asyncio.wait_for(asyncio.shield(batch.done), self.ack_timeout)
                except TimeoutError:
                    pass
        finally:
            # Whatever is still unanswered (timeout, cancellation) leaves the window.
            for token in tokens:
                entry = pending.pop(token, None)
                if entry is not None:
                    subject = messages[entry[1]].subject
                    self._settle(
                        batch,
                        entry[1],
                        PublishFailed(
                            f"publish to {subject!r}: no PubAck from the server within "
                            f"{self.ack_timeout:g}s"
                        ),
                    )
            self._open_window()
        return batch.results  # type: ignore[return-value]

    def _on_puback(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        entry = self._pending.pop(subject[len(self._prefix) :], None)
        if entry is None:
            return  # timed out or cancelled meanwhile
        target, index = entry
        target.settle(index, _puback_result(target.subject(index), data, headers))
        if (self._window_waiters or self._lane_blocked) and len(self._pending) < self.resume_below:
            self._open_window()

    def _settle(self, batch: _Batch, index: int, result: PubAck | PublishFailed) -> None:
        batch.settle(index, result)

    def _open_window(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._lane_blocked:
            self._lane_blocked = False
            self.drain_publishes()

    def drain_publishes(self) -> None:
        """Cast from trio: write every publish queued on the `PublishLane`."""
        lane = self.publishes
        lane.scheduled = False
        items = lane.items
        if not items:
            return
        if self._lane_blocked:
            return  # the window or nats-py's buffer is full: drained again when it is not
        if not self.nc.is_connected or not self.writer.usable:
            while items:
                message, answer = items.popleft()
                if self.nc.is_connected:  # pragma: no cover - without nats-py's buffer internals
                    asyncio.ensure_future(self._publish_one(message, answer))
                else:
                    state = "closed" if self.nc.is_closed else "reconnecting"
                    answer.fail(NotConnected(f"cannot publish: not connected to NATS ({state})"))
            return
        pending = self._pending
        write = self.writer.write
        prefix = self._prefix
        max_payload = self.nc.max_payload
        deadline = self.side.loop.time() + self.ack_timeout
        singles = self._singles
        while items:
            if len(pending) >= self.window:
                self._lane_blocked = True  # `_open_window` drains the rest
                return
            if self.writer.over_limit():
                # nats-py's buffer is full: let its flusher catch up, then go on.
                self._lane_blocked = True
                asyncio.ensure_future(self._flush_then_drain())
                return
            message, answer = items.popleft()
            token = str(self._next_token)
            self._next_token += 1
            subject = message.subject
            try:
                if len(message.data) > max_payload:
                    raise EncodeError(f"payload larger than {max_payload} bytes")
                write(pub_command(subject, prefix + token, message.data, message.headers))
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                answer.fail(_publish_error(subject, exc))
                continue
            pending[token] = (_Single(subject, answer), 0)
            singles.append((token, deadline))
        if self._sweeper is None and singles:
            self._sweeper = self.side.loop.call_later(self._sweep_interval, self._sweep)

    async def _flush_then_drain(self) -> None:
        try:
            await self.writer.flush()
        finally:
            self._lane_blocked = False
            self.drain_publishes()

    async def _publish_one(
        self, message: Message, answer: Answer | SettleAfterPublish
    ) -> None:  # pragma: no cover - only without nats-py's buffer internals
        [result] = await self.publish_many([message])
        _Single(message.subject, answer).settle(0, result)

    def _sweep(self) -> None:
        """Forget answered lane publishes; fail those whose PubAck did not come within
        ``ack_timeout``. Runs every `_sweep_interval` while lane publishes are tracked."""
        self._sweeper = None
        singles = self._singles
        pending = self._pending
        now = self.side.loop.time()
        while singles:
            token, deadline = singles[0]
            if token in pending:
                if deadline > now:
                    break
                single = pending.pop(token)[0]
                single.settle(
                    0,
                    PublishFailed(
                        f"publish to {single.subject(0)!r}: no PubAck from the server within "
                        f"{self.ack_timeout:g}s"
                    ),
                )
            singles.popleft()
        if singles:
            self._sweeper = self.side.loop.call_later(self._sweep_interval, self._sweep)
        if self._lane_blocked and len(pending) < self.resume_below:
            self._open_window()

    async def publish_core(self, message: Message) -> None:
        await self.nc.publish(message.subject, message.data, headers=dict(message.headers) or None)

    # --- acks and other fire-and-forget publishes -------------------------------------

    def reply(self, subject: str, body: bytes) -> None:
        """Loop thread: write one ack-like reply now (queued by nats-py while reconnecting)."""
        if self.writer.usable and not self.nc.is_closed:
            self.writer.write(reply_command(subject, body))
        else:  # pragma: no cover - without nats-py's buffer internals, or closed
            self.queue_publish(subject, body)

    def drain_replies(self) -> None:
        """Cast from trio: write every queued ``(subject, body)``."""
        lane = self.replies
        lane.scheduled = False
        items = lane.items
        if self.writer.usable and not self.nc.is_closed:
            write = self.writer.write
            while items:
                subject, body = items.popleft()
                write(reply_command(subject, body))
            return
        while items:  # pragma: no cover - without nats-py's buffer internals, or closed
            subject, body = items.popleft()
            self.queue_publish(subject, body)

    def queue_publish(self, subject: str, body: bytes, reply: str = "") -> None:
        """Loop side: a fire-and-forget core publish, in order with the other writes."""
        if self.nc.is_closed:
            return  # an ack lost is a redelivery after ack_wait
        if self.writer.usable:
            self.writer.write(pub_command(subject, reply, body))
        else:  # pragma: no cover - only without nats-py's buffer internals
            asyncio.ensure_future(self._publish_quietly(subject, body, reply))

    async def _publish_quietly(self, subject: str, body: bytes, reply: str) -> None:
        try:
            await self.nc.publish(subject, body, reply)
        except Exception as exc:  # noqa: BLE001 - an ack lost is a redelivery later
            logger.debug("publish to %s not sent: %r", subject, exc)

    # --- one-shot pull --------------------------------------------------------------

    async def fetch(
        self,
        stream: str,
        consumer: str,
        batch: int,
        expires: float,
        check_consumer: Callable[[], Awaitable[object]],
    ) -> list[Delivery]:
        """One pull request; returns when ``batch`` arrived or the server expired it.

        ``check_consumer`` raises `NotFound` when the consumer does not exist.
        """
        loop = asyncio.get_running_loop()
        got: list[Delivery] = []
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def on_message(
            subject: str, reply: str, data: bytes, headers: dict[str, str] | None
        ) -> None:
            if done.done():
                if is_delivery(reply):  # raced with the end of the request: give it back
                    self.queue_publish(reply, NAK)
                return
            if is_delivery(reply):
                got.append(parse_delivery(subject, reply, data, headers))
                if len(got) >= batch:
                    done.set_result(None)
                return
            status = (headers or {}).get(_STATUS, "")
            if status == "100":
                return
            description = (headers or {}).get(_DESCRIPTION, "")
            if status == "503":
                done.set_result(_NO_RESPONDERS)
            elif status == "409" and "deleted" in description.lower():
                done.set_result(_no_consumer(stream, consumer))
            else:  # 404 / 408 / other 409: the request is over
                done.set_result(None)

        if not self.nc.is_connected:
            raise NotConnected("cannot fetch: not connected to NATS")
        inbox = self.nc.new_inbox()
        sub = await self.inboxes.subscribe(inbox, on_message)
        request = json.dumps({"batch": batch, "expires": max(int(expires * _NANOS), 1)})
        try:
            self.queue_publish(next_subject(stream, consumer), request.encode(), inbox)
            try:
                error = await asyncio.wait_for(asyncio.shield(done), expires + 5.0)
            except TimeoutError:
                error = None  # the server never answered; return what arrived
            if error is _NO_RESPONDERS:
                # The consumer is gone, or JetStream has not loaded it yet (just after a
                # restart): an existing consumer means "nothing yet".
                await check_consumer()
            elif error is not None:
                raise error
        except BaseException:
            for delivery in got:  # cancelled or failed: let these go back at once
                self.queue_publish(delivery.token, NAK)  # type: ignore[arg-type]
            raise
        finally:
            if not done.done():
                done.set_result(None)
            await self.inboxes.unsubscribe(sub)
        return got


_NO_RESPONDERS = NotFound("no responders")


def _no_consumer(stream: str, consumer: str) -> NotFound:
    return NotFound(f"no consumer {consumer!r} on stream {stream!r}")


def _publish_error(subject: str, exc: BaseException) -> PublishFailed:
    return PublishFailed(f"publish to {subject!r} failed: {exc}")


def _puback_result(
    subject: str, data: bytes, headers: dict[str, str] | None
) -> PubAck | PublishFailed:
    if not data:
        headers = headers or {}
        status = headers.get(_STATUS)
        if status == "503":
            return PublishFailed(f"publish to {subject!r}: no stream listens on this subject")
        return PublishFailed(
            f"publish to {subject!r}: status {status} {headers.get(_DESCRIPTION, '')}".rstrip()
        )
    try:
        answer = parse_puback(data)
    except (ValueError, KeyError, AttributeError, IndexError):
        return PublishFailed(f"publish to {subject!r}: unreadable PubAck {data[:200]!r}")
    if isinstance(answer, PubAck):
        return answer
    description = f"publish to {subject!r} refused: {answer.get('description', answer)}"
    err_code = answer.get("err_code", 0)
    if err_code in WRONG_LAST_SEQUENCE:
        found = LAST_SEQUENCE_PATTERN.search(description)
        return ApiWrongLastSequence(description, err_code, int(found.group(1)) if found else None)
    return ApiPublishFailed(description, err_code)


class ApiPublishFailed(PublishFailed):
    """A publish the JetStream API refused, with its error code (10071 = wrong last sequence)."""

    def __init__(self, message: str, err_code: int) -> None:
        super().__init__(message)
        self.err_code = err_code


class ApiWrongLastSequence(ApiPublishFailed, WrongLastSequence):
    """The API refused a publish because an expected last sequence did not hold."""

    def __init__(self, message: str, err_code: int, last_seq: int | None) -> None:
        ApiPublishFailed.__init__(self, message, err_code)
        self.last_seq = last_seq


WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream API error codes of a failed last-sequence expectation."""
LAST_SEQUENCE_PATTERN = re.compile(r"wrong last sequence: (\d+)")


class CoreSubscription:
    """A plain subscription whose messages go to trio in batches.

    Its messages are taken at nats-py's dispatch point (`Inboxes`), like the broker's own
    inboxes, and handed to trio at once (`Handoff`): a client's result subscription is on the
    hot path.
    """

    def __init__(self, wire: Wire, subject: str, emit: Callable[[list[CoreMessage]], None]) -> None:
        self.wire = wire
        self.subject = subject
        self._handoff: Handoff[CoreMessage] = Handoff(wire.side.post, emit)
        self._sub: Subscription | None = None

    async def open(self) -> None:
        try:
            self._sub = await self.wire.inboxes.subscribe(self.subject, self._on_message)
        except BaseException:
            await self.close()
            raise

    def _on_message(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self._handoff.put(CoreMessage(subject, data, headers or {}, reply or None))

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await self.wire.inboxes.unsubscribe(sub)
