"""A worker process with a rate-limited task: ``python rate_limited_worker.py URL NS LOG``.

Each run appends the time the handler started (seconds since the epoch) to LOG.
"""

from __future__ import annotations

import sys
import time

import trio

import actorq

url, namespace, log_path = sys.argv[1:4]
app = actorq.App(namespace)
log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process


@app.task(name="limited.call_partner")
async def call_partner(n: int) -> int:
    log.write(f"{time.time():.6f}\n")
    return n


async def main() -> None:
    async with actorq.connect(app, url) as client:
        async with trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client, concurrency=16).run)
            print("ready", flush=True)


trio.run(main)
