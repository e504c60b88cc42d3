"""A worker process for the DAG chaos test: ``python dag_chaos_worker.py URL NAMESPACE LOG``.

It runs the chaos DAG's steps and is a candidate for the app's DAG scheduler. Each execution
appends ``start <step>`` and ``end <step>`` to LOG (flushed at once), so the test can tell what
this process had in flight when it was killed.
"""

from __future__ import annotations

import sys

import trio

import actorq

url, namespace, log_path = sys.argv[1:4]
app = actorq.App(namespace, replicas=3)
log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process


def _step() -> str:
    return actorq.current_task().headers.get("Actorq-Step", "?")


@app.task(name="chaos.link")
async def link(x: int) -> int:
    log.write(f"start {_step()}\n")
    await trio.sleep(0.2)
    log.write(f"end {_step()}\n")
    return x + 1


@app.task(name="chaos.leaf")
async def leaf(i: int, seed: int) -> int:
    log.write(f"start {_step()}\n")
    await trio.sleep(0.05)
    log.write(f"end {_step()}\n")
    return i + seed


@app.task(name="chaos.gather")
async def gather(last: int, leaves: list[int]) -> int:
    return last * 1000 + sum(leaves)


async def main() -> None:
    settings = actorq.DagSettings(sweep_interval=1.0, leader_ttl=2.0, phantom_after=4.0)
    async with actorq.connect(app, url) as client:
        worker = actorq.Worker(client, concurrency=8, ack_wait=2.0, dags=settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            print(f"ready {worker.id}", flush=True)


trio.run(main)
