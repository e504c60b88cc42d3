"""Talking to a real server from trio tests: nats-py on its own asyncio loop in a worker thread.

The embedded-server tests check that a node answers a real client; they do not go through
actorq's broker, so a broker bug cannot hide a server bug (or the other way round).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import nats
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")


async def in_asyncio(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` with ``asyncio.run`` in a worker thread; return its result."""

    def run() -> T:
        return asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return await trio.to_thread.run_sync(run)


async def put(
    servers: Sequence[str],
    stream: str,
    payloads: Sequence[bytes],
    *,
    replicas: int = 1,
    **options: Any,
) -> int:
    """Create ``stream`` (subjects ``<stream>.>``) if needed and publish; returns the last
    sequence."""
    nc = await nats.connect(servers=list(servers), connect_timeout=2, **options)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], num_replicas=replicas)
        seq = 0
        for payload in payloads:
            seq = (await js.publish(f"{stream}.x", payload)).seq
        return seq
    finally:
        await nc.close()


async def count(servers: Sequence[str], stream: str, **options: Any) -> int:
    """How many messages ``stream`` holds."""
    nc = await nats.connect(servers=list(servers), connect_timeout=2, **options)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.state.messages
    finally:
        await nc.close()


async def stream_leader(servers: Sequence[str], stream: str, **options: Any) -> str | None:
    """The server name leading ``stream``'s replica group."""
    nc = await nats.connect(servers=list(servers), connect_timeout=2, **options)
    try:
        info = await nc.jetstream().stream_info(stream)
        return None if info.cluster is None else info.cluster.leader
    finally:
        await nc.close()
