"""JetStream's wire protocol spoken by bare nats-py on asyncio: the floors actorq is measured
against.

No actorq code runs on these paths. nats-py is used the way the design prescribes for a hot
path — as a connection — and JetStream is spoken over it directly:

- `PubAckWindow`: core publishes whose reply subject is ``<inbox>.<n>`` under one wildcard
  subscription, at most ``window`` PubAcks outstanding, each PubAck parsed with ``json.loads``;
- `Puller`: pull requests (``{"batch": n, "expires": ns}``) to
  ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` on a core inbox subscription; deliveries
  arrive with their ``$JS.ACK`` subject as reply, request-expiry statuses without one;
- acks: a core publish of ``+ACK`` to the delivery's reply subject.

Also here: the JSON API requests the benchmarks use for setup (`api`, `wait_acked`) and the
machine line every benchmark prints.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import nats.aio.msg
from _server import server_version

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

WINDOW = 4000
"""PubAcks outstanding at once (the JetStream broker's default ``publish_window``)."""

Msg = nats.aio.msg.Msg


async def api(nc: nats.NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``$JS.API`` request; fails loudly on an error answer."""
    payload = json.dumps(body).encode() if body is not None else b""
    answer: dict[str, Any] = json.loads((await nc.request(subject, payload, timeout=10)).data)
    assert "error" not in answer, answer
    return answer


async def wait_acked(nc: nats.NATS, stream: str, consumer: str) -> None:
    """Until the consumer has nothing pending and nothing awaiting an ack."""
    while True:
        info = await api(nc, f"$JS.API.CONSUMER.INFO.{stream}.{consumer}")
        if info["num_ack_pending"] == 0 and info["num_pending"] == 0:
            return
        await asyncio.sleep(0.001)


class PubAckWindow:
    """Publishes with a reply inbox each; at most ``window`` PubAcks outstanding.

    ``publish`` returns once the message is written (it waits only for room in the window);
    ``on_ack``, if given, is awaited when the message's PubAck arrives.
    """

    def __init__(self, nc: nats.NATS, window: int = WINDOW) -> None:
        self.nc = nc
        self.window = window
        self.resume_below = window * 3 // 4
        self.outstanding = 0
        self._prefix = ""
        self._next = 0
        self._callbacks: dict[str, Callable[[], Awaitable[None]] | None] = {}
        self._room: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        on_ack: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        while self.outstanding >= self.window:
            self._room = asyncio.Event()
            await self._room.wait()
        token = str(self._next)
        self._next += 1
        self._callbacks[token] = on_ack
        self.outstanding += 1
        await self.nc.publish(subject, data, reply=self._prefix + token, headers=headers)

    async def drained(self) -> None:
        """Until every PubAck has arrived."""
        while self.outstanding:
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def _on_ack(self, msg: Msg) -> None:
        answer = json.loads(msg.data)
        assert "seq" in answer, answer
        callback = self._callbacks.pop(msg.subject[len(self._prefix) :])
        self.outstanding -= 1
        if self._room is not None and self.outstanding <= self.resume_below:
            self._room.set()
            self._room = None
        if self._idle is not None and not self.outstanding:
            self._idle.set()
            self._idle = None
        if callback is not None:
            await callback()


class Puller:
    """Keeps pull requests outstanding for ``credits`` deliveries; `grant` gives more.

    Deliveries go to ``on_delivery`` one by one, in order (nats-py's subscription task). A
    request that expires reports what it still owed (``Nats-Pending-Messages``), which is asked
    for again.
    """

    def __init__(
        self,
        nc: nats.NATS,
        stream: str,
        consumer: str,
        on_delivery: Callable[[Msg], Awaitable[None]],
        *,
        expires: float = 30.0,
    ) -> None:
        self.nc = nc
        self.on_delivery = on_delivery
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.expires = int(expires * 1_000_000_000)
        self.asked = 0
        """Deliveries asked for by requests still alive."""
        self.inbox = ""

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        await self.nc.subscribe(self.inbox, cb=self._on_message)

    async def grant(self, credits: int) -> None:
        self.asked += credits
        request = json.dumps({"batch": credits, "expires": self.expires}).encode()
        await self.nc.publish(self.subject, request, reply=self.inbox)

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:
            self.asked -= 1
            await self.on_delivery(msg)
            return
        owed = (msg.headers or {}).get("Nats-Pending-Messages")
        if owed is not None:  # the request expired owing these: ask again
            self.asked -= int(owed)
            await self.grant(int(owed))


def machine() -> str:
    """CPU, OS and the versions that matter, on one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import trio

    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"nats-py {importlib.metadata.version('nats-py')}, {server_version()}"
    )
