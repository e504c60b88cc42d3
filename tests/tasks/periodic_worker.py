"""A worker process with a periodic task: ``python periodic_worker.py URL NAMESPACE LOG``.

Each tick it runs appends ``<task id> <unix time>`` to LOG.
"""

from __future__ import annotations

import sys
import time

import trio

import actorq

url, namespace, log_path = sys.argv[1:4]
app = actorq.App(namespace)
log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process


@app.task(name="periodic.tick")
async def tick() -> None:
    log.write(f"{actorq.current_task().id} {time.time():.3f}\n")


app.periodic("* * * * * *", tick)


async def main() -> None:
    async with actorq.connect(app, url) as client:
        async with trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client, concurrency=4).run)
            print("ready", flush=True)


trio.run(main)
