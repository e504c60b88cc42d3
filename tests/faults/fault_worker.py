"""A worker process for fault tests: ``python fault_worker.py URL NAMESPACE LOG``.

Each execution appends ``start <n>`` and ``end <n>`` lines to LOG (flushed at once), so the
test can tell which tasks this process had in flight when it was killed.
"""

from __future__ import annotations

import sys

import trio

import actorq

url, namespace, log_path = sys.argv[1:4]
app = actorq.App(namespace)
log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process


@app.task(name="fault.record")
async def record(n: int) -> int:
    log.write(f"start {n}\n")
    await trio.sleep(0.01)
    log.write(f"end {n}\n")
    return n


async def main() -> None:
    async with actorq.connect(app, url) as client:
        worker = actorq.Worker(client, concurrency=8, ack_wait=5.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            print("ready", flush=True)


trio.run(main)
