"""A distributed counter on a JetStream counter stream (nats-server 2.12+, ADR-49).

Every counter is one subject of the app's counter stream (``allow_msg_counter``). An increment
is a publish carrying only ``Nats-Incr: +n``; the server adds it to the subject's total
atomically and answers with the new total, so an increment is one round trip whatever the
contention — no read, no compare-and-set, no retry, unlike a counter kept in a KV key.
Values are arbitrary-precision integers. The memory broker implements the same stream feature,
so counters behave the same in tests.

An increment may carry an idempotency key (``Nats-Msg-Id``): a retried increment with the same
key within the stream's duplicate window is counted once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .._errors import BrokerError
from ..broker import INCR, MSG_ID, Message

if TYPE_CHECKING:
    from ..broker import Broker, StreamConfig


class Counter:
    """An integer shared by every process; increments are atomic on the server.

    Get one with ``client.counter(name)``; the counter starts at 0.

    Args:
        broker: The broker the stream lives on.
        stream: The counter stream's name.
        subject: This counter's subject in the stream.
        name: The counter's name (for messages).
        config: The stream's config, ensured on first use.
    """

    def __init__(
        self,
        broker: Broker,
        stream: str,
        subject: str,
        name: str,
        *,
        config: StreamConfig | None = None,
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.subject = subject
        self.name = name
        self._config = config

    def __repr__(self) -> str:
        return f"<Counter {self.name!r}>"

    async def _ensure(self) -> None:
        if self._config is not None:
            await self.broker.ensure_stream(self._config)
            self._config = None

    async def add(self, delta: int = 1, *, idempotency_key: str | None = None) -> int:
        """Add ``delta`` (negative subtracts) and return the total after it.

        Args:
            idempotency_key: Count this increment once, however often it is retried with the
                same key within the stream's duplicate window (two minutes). A repeat returns
                the current total.

        Raises:
            BrokerError: the server has no counter streams (nats-server before 2.12).
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"counter {self.name!r}: add() takes an int, got {delta!r}")
        await self._ensure()
        headers = {INCR: f"{delta:+d}"}
        if idempotency_key is not None:
            headers[MSG_ID] = f"{self.name}:{idempotency_key}"
        ack = await self.broker.publish(Message(self.subject, b"", headers))
        if ack.duplicate:
            return await self.value()
        if ack.value is None:
            raise BrokerError(
                f"counter {self.name!r}: the server did not count the increment (counter"
                " streams need nats-server 2.12 or later)"
            )
        return ack.value

    async def increment(self) -> int:
        """Add 1; returns the new total."""
        return await self.add(1)

    async def decrement(self) -> int:
        """Subtract 1; returns the new total."""
        return await self.add(-1)

    async def value(self) -> int:
        """The current total (0 for a counter never added to)."""
        await self._ensure()
        stored = await self.broker.get_last(self.stream, self.subject)
        if stored is None:
            return 0
        try:
            return int(json.loads(stored.data)["val"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerError(
                f"counter {self.name!r}: unreadable value {stored.data[:100]!r}"
            ) from exc

    async def reset(self) -> None:
        """Set the counter back to 0 (removes its history). Increments racing the reset are
        counted from 0 if they land after it."""
        await self._ensure()
        await self.broker.purge_stream(self.stream, self.subject)
