"""Credit-based pull subscriptions, loop side (runs on the Bridge's asyncio loop).

The owner grants credits; this keeps pull requests outstanding for exactly the credits not yet
covered, so a QueueActor receives as many messages as it has free slots and no more. The
server answers a pull request with up to ``batch`` deliveries; when the request expires it
sends a ``408`` status carrying ``Nats-Pending-Messages`` (what the request still owed), and
those credits are requested again. Idle heartbeats (status ``100``) prove that a request is
still alive; when they stop, or after a reconnect, the requests are presumed lost and issued
again on a fresh inbox, so a stale request cannot deliver into the new accounting. A delivery
that arrives without a credit anyway is given back at once (``-NAK``).

While the connection is down nothing is requested; the subscription resumes by itself after
the reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from .._errors import BrokerError, NotFound
from ._jetstream_codec import parse_delivery
from ._jetstream_wire import NAK, Handoff, Wire, next_subject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.subscription import Subscription

    from ._protocol import Delivery

logger = logging.getLogger("actorq.jetstream")

_NANOS = 1_000_000_000
_RETRY_AFTER_REFUSAL = 0.5
"""Seconds to wait before asking again after the server refused a pull request (409)."""


class PullState:
    """The loop side of one `pull()` subscription."""

    def __init__(
        self,
        wire: Wire,
        stream: str,
        consumer: str,
        deliver: Callable[[list[Delivery]], None],
        fail: Callable[[BaseException], None],
        check_consumer: Callable[[], Awaitable[object]],
        *,
        expires: float,
        heartbeat: float,
    ) -> None:
        self.wire = wire
        self.nc = wire.nc
        self.stream = stream
        self.consumer = consumer
        self._fail = fail
        self._check_consumer = check_consumer
        """Raises `NotFound` when the consumer does not exist."""
        self._checking = False
        self.expires = expires
        self.heartbeat = min(heartbeat, expires / 2)
        self.credits = 0
        """Granted and not yet delivered (the loop's view)."""
        self.pending = 0
        """Asked of the server by requests still alive."""
        self._subject = next_subject(stream, consumer)
        self._request = b""
        self._inbox = ""
        self._sub: Subscription | None = None
        self._handoff: Handoff[Delivery] = Handoff(wire.side.post, deliver)
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._resetting = False

    async def open(self) -> None:
        await self._subscribe()
        self.wire.side.reconnect_listeners.append(self._on_reconnect)
        self._watchdog = self._loop.call_later(self.heartbeat, self._check_alive)

    async def _subscribe(self) -> None:
        old = self._sub
        self._inbox = self.nc.new_inbox()
        self._sub = await self.wire.inboxes.subscribe(self._inbox, self._on_message)
        if old is not None:
            await self.wire.inboxes.unsubscribe(old)

    def grant(self, credits: int) -> None:
        """Cast from trio: ``credits`` more may be delivered."""
        self.credits += credits
        self._top_up()

    def withdraw(self) -> None:
        """Cast from trio: forget every credit and abandon the outstanding requests — on a
        fresh inbox, because the server drops a request nobody listens to. What is still
        buffered here was delivered for those credits; trio gives it back when it arrives."""
        self.credits = 0
        if self.pending:
            asyncio.ensure_future(self._reset())

    def _top_up(self) -> None:
        if self._closed or self._resetting or not self.nc.is_connected:
            return
        want = self.credits - self.pending
        if want <= 0:
            return
        if self.pending == 0:
            self._last_seen = self._loop.time()
        self.pending += want
        request = {
            "batch": want,
            "expires": int(self.expires * _NANOS),
            "idle_heartbeat": int(self.heartbeat * _NANOS),
        }
        self.wire.queue_publish(self._subject, json.dumps(request).encode(), self._inbox)

    def _on_message(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self._last_seen = self._loop.time()
        if reply.startswith("$JS.ACK."):
            if self.credits <= 0 or self._closed:
                # A request we stopped counting (before a reset) delivered past the credits.
                self.wire.queue_publish(reply, NAK)
                return
            self.credits -= 1
            if self.pending > 0:
                self.pending -= 1
            self._handoff.put(parse_delivery(subject, reply, data, headers))
            return
        if subject != self._inbox:
            return  # a status for an inbox we left behind
        headers = headers or {}
        status = headers.get("Status", "")
        if status == "100":
            return
        description = headers.get("Description", "")
        if status == "409" and "deleted" in description.lower():
            self._stop_with(self._gone())
            return
        if status == "503":
            # Nobody took the request: the consumer is gone, or (just after a server
            # restart) JetStream has not loaded it yet. Ask the API which.
            if not self._checking:
                self._checking = True
                asyncio.ensure_future(self._recheck())
            return
        owed = headers.get("Nats-Pending-Messages")
        if owed is not None:
            # The request ended (expired, or cut short) owing this many: ask again.
            self.pending = max(self.pending - int(owed), 0)
            self._top_up()
        elif status in ("409", "400"):
            # Refused outright (e.g. "Exceeded MaxWaiting"); we cannot tell which request,
            # so forget them all and ask again shortly (extra deliveries are given back).
            logger.warning(
                "pull request on %s/%s refused: %s %s",
                self.stream,
                self.consumer,
                status,
                description,
            )
            if status == "400":
                self._stop_with(BrokerError(f"pull request refused: {description}"))
                return
            self.pending = 0
            self._loop.call_later(_RETRY_AFTER_REFUSAL, self._top_up)

    async def _recheck(self) -> None:
        try:
            try:
                await self._check_consumer()
            except NotFound:
                self._stop_with(self._gone())
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet: try again shortly
                logger.debug("consumer check on %s/%s failed: %r", self.stream, self.consumer, exc)
            await asyncio.sleep(_RETRY_AFTER_REFUSAL)
        finally:
            self._checking = False
        self.pending = 0
        self._top_up()

    def _gone(self) -> NotFound:
        return NotFound(f"no consumer {self.consumer!r} on stream {self.stream!r}")

    def _check_alive(self) -> None:
        if self._closed:
            return
        self._watchdog = self._loop.call_later(self.heartbeat, self._check_alive)
        silent = self._loop.time() - self._last_seen
        if self.pending > 0 and self.nc.is_connected and silent > 2 * self.heartbeat:
            logger.info(
                "pull requests on %s/%s went silent for %.1fs; asking again",
                self.stream,
                self.consumer,
                silent,
            )
            asyncio.ensure_future(self._reset())

    def _on_reconnect(self) -> None:
        asyncio.ensure_future(self._reset())

    async def _reset(self) -> None:
        if self._closed or self._resetting:
            return
        self._resetting = True
        try:
            await self._subscribe()
        except Exception as exc:  # noqa: BLE001 - retried by the watchdog or next reconnect
            logger.debug("re-subscribing the pull inbox failed: %r", exc)
            return
        finally:
            self._resetting = False
        self.pending = 0
        self._last_seen = self._loop.time()
        self._top_up()

    def _stop_with(self, error: BaseException) -> None:
        if not self._closed:
            self._closed = True
            self.wire.side.post(self._fail, error)

    async def close(self) -> None:
        """Called from trio when the subscription closes: stop asking, give back what was
        delivered here but not yet handed over."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        try:
            self.wire.side.reconnect_listeners.remove(self._on_reconnect)
        except ValueError:
            pass
        for delivery in self._handoff.drain():
            self.wire.queue_publish(delivery.token, NAK)  # type: ignore[arg-type]
        sub, self._sub = self._sub, None
        if sub is not None:
            await self.wire.inboxes.unsubscribe(sub)
