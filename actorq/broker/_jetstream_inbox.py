"""Hot inboxes: messages for the broker's own subscriptions, straight from nats-py's parser.

A nats-py subscription turns every message into a ``Msg``, parses its headers, queues it,
and runs the callback from a per-subscription task: general-purpose work that costs about as
much as everything else on the hot path together. The broker's own inboxes (the PubAck inbox
and the pull-request inboxes) need none of it, so `Inboxes` takes their messages at nats-py's
dispatch point (``Client._process_msg``, which the protocol parser calls with the raw subject,
reply, payload and header bytes) and hands them to a plain function. Every other subscription
goes through nats-py unchanged.

The subscriptions themselves stay ordinary nats-py subscriptions, so nats-py still replays them
after a reconnect. If the dispatch point is missing (a nats-py without it), `Inboxes` falls
back to ordinary callbacks with the same handler signature.

Loop side of the Bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

logger = logging.getLogger("actorq.jetstream")

Handler = Callable[[str, str, bytes, "dict[str, str] | None"], None]
"""``handler(subject, reply, data, headers)``; a status message has ``Status`` (and
``Description``) in its headers, as with nats-py."""


def parse_headers(raw: bytes) -> dict[str, str]:
    """Headers from a ``NATS/1.0[ <status>[ <description>]]`` block, the way nats-py reads
    them: an inline status becomes ``Status`` and ``Description``."""
    lines = raw.split(b"\r\n")
    headers: dict[str, str] = {}
    first = lines[0]
    if len(first) > 9:  # b"NATS/1.0 408 Request Timeout"
        status, _, description = first[9:].partition(b" ")
        if status.isdigit():
            headers["Status"] = status.decode()
        if description:
            headers["Description"] = description.decode("utf-8", "replace")
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().decode("ascii", "replace")] = value.strip().decode(
                    "utf-8", "replace"
                )
    return headers


class Inboxes:
    """Subscriptions whose messages skip nats-py's per-message machinery."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._handlers: dict[int, Handler] = {}
        original = getattr(nc, "_process_msg", None)
        self.fast = callable(original)
        if self.fast:
            self._original: Callable[..., Awaitable[None]] = original  # type: ignore[assignment]
            nc._process_msg = self._process_msg  # type: ignore[method-assign]

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._handlers.get(sid)
        if handler is None:
            await self._original(sid, subject, reply, data, headers)
            return
        try:
            handler(
                subject.decode(),
                reply.decode(),
                data,
                parse_headers(headers) if headers else None,
            )
        except Exception:  # noqa: BLE001 - never let one message break the read loop
            logger.exception("handling a message on %s failed", subject)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        if not self.fast:  # pragma: no cover - only on a nats-py without the dispatch point

            async def callback(msg: Msg) -> None:
                handler(msg.subject, msg.reply, msg.data, msg.headers)

            return await self.nc.subscribe(subject, cb=callback)
        sub = await self.nc.subscribe(subject)
        self._handlers[_sid(sub)] = handler
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        self._handlers.pop(_sid(sub), None)
        try:
            await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - closed or gone: the interest is gone too
            pass


def _sid(sub: Subscription) -> int:
    sid: Any = sub._id
    return int(sid)
