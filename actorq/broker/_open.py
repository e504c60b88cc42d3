"""`open_broker`: one URL names every transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from .._errors import InvalidUrl
from ._protocol import Broker

MEMORY_SCHEME = "memory"
NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


@asynccontextmanager
async def open_broker(url: str, **nats_options: Any) -> AsyncIterator[Broker]:
    """Open the broker a URL names, and close it on exit.

    - ``memory://NAME`` (or ``memory://``, named ``default``): the in-process memory broker
      registered under NAME; every opener of the same name in this process shares it.
    - ``nats://``, ``tls://``, ``ws://``, ``wss://`` (several comma-separated for a cluster):
      a NATS server through the Bridge. ``nats_options`` are passed to nats-py's ``connect``
      (user/password, token, credentials, TLS context, reconnect settings, ...).

    Raises:
        InvalidUrl: the URL names no transport actorq knows.
    """
    scheme = urlsplit(url.split(",")[0].strip()).scheme
    if scheme == MEMORY_SCHEME:
        if nats_options:
            raise InvalidUrl(
                f"memory broker {url!r} takes no NATS options, got {sorted(nats_options)}"
            )
        from ._memory import open_memory_broker

        async with open_memory_broker(url[len("memory://") :] or "default") as broker:
            yield broker
    elif scheme in NATS_SCHEMES:
        from ._jetstream import open_jetstream_broker

        async with open_jetstream_broker(url, **nats_options) as broker:
            yield broker
    else:
        raise InvalidUrl(
            f"unsupported broker URL {url!r}: use nats://HOST:PORT (or tls://, ws://, wss://)"
            " for a NATS server, or memory://NAME for the in-process memory broker"
        )
