"""A process for the coordination tests: ``python kv_process.py MODE URL NAMESPACE [ARGS...]``.

Every mode prints ``ready ...`` once it is set up; modes that wait for ``go`` read it from
stdin, so the test starts several processes' work at the same moment. Lines are flushed at
once (the test reads them as they come).

- ``update WRITERS N``: WRITERS tasks add 1 to the typed store's key ``k`` N times each, then
  ``done``.
- ``lock TTL``: holds the lock ``job`` (``ready <token>``) until killed.
- ``leader TTL``: campaigns for ``scheduler``; ``ready leader <token>`` or ``ready follower``,
  then ``leader <token>`` / ``follower`` on every change. From each gain on, it writes the
  fenced key ``state`` every 0.1 s with that leadership's fence — like work started as leader
  that carries on — printing ``wrote <token>`` after the first write and ``fenced-out <token>``
  when a write is refused.
- ``ratelimit RATE TASKS N``: TASKS tasks acquire the limiter ``api`` N times each, printing
  ``t <wall time>`` after every acquisition, then ``done``.
"""

from __future__ import annotations

import os
import sys
import time

import attrs
import trio

import actorq
from actorq.kv import Fence, FencedOut


@attrs.frozen
class Count:
    n: int = 0


@attrs.frozen
class State:
    pid: int
    token: int


def say(line: str) -> None:
    print(line, flush=True)


async def wait_for_go() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    received = b""
    while b"go" not in received:
        chunk = await stdin.receive_some()
        if not chunk:
            raise SystemExit("stdin closed before 'go'")
        received += chunk


async def update(client: actorq.Client, writers: int, n: int) -> None:
    store = client.kv("counts", Count)
    await store.ensure()
    say("ready")
    await wait_for_go()
    async with trio.open_nursery() as nursery:
        for _ in range(writers):

            async def writer() -> None:
                for _ in range(n):
                    await store.update("k", lambda c: Count(c.n + 1), default=Count())

            nursery.start_soon(writer)
    say("done")


async def lock(client: actorq.Client, ttl: float) -> None:
    async with client.lock("job", ttl=ttl) as lease:
        say(f"ready {lease.token}")
        await trio.sleep_forever()


async def leader(client: actorq.Client, ttl: float) -> None:
    elector = client.leader("scheduler", ttl=ttl)
    store = client.kv("state", State)

    async def keep_writing(fence: Fence) -> None:
        first = True
        while True:
            try:
                await store.put("state", State(os.getpid(), fence.token), fence=fence)
            except FencedOut:
                say(f"fenced-out {fence.token}")
                return
            if first:
                say(f"wrote {fence.token}")
                first = False
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery, elector.changes() as changes:
        await nursery.start(elector.run)
        reported = elector.token
        say(f"ready leader {reported}" if reported is not None else "ready follower")
        if reported is not None:
            nursery.start_soon(keep_writing, elector.fence)
        async for change in changes:
            if change.leader and change.lease is not None:
                if change.lease.token != reported:
                    reported = change.lease.token
                    say(f"leader {reported}")
                    nursery.start_soon(keep_writing, change.lease.fence)
            else:
                reported = None
                say("follower")


async def ratelimit(client: actorq.Client, rate: str, tasks: int, n: int) -> None:
    limiter = client.rate_limiter("api", rate)
    say("ready")
    await wait_for_go()
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):

            async def acquirer() -> None:
                for _ in range(n):
                    async with limiter.acquire():
                        say(f"t {time.time():.6f}")

            nursery.start_soon(acquirer)
    say("done")


async def main() -> None:
    mode, url, namespace, *args = sys.argv[1:]
    async with actorq.connect(actorq.App(namespace), url) as client:
        if mode == "update":
            await update(client, int(args[0]), int(args[1]))
        elif mode == "lock":
            await lock(client, float(args[0]))
        elif mode == "leader":
            await leader(client, float(args[0]))
        elif mode == "ratelimit":
            await ratelimit(client, args[0], int(args[1]), int(args[2]))
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    trio.run(main)
