"""Several worker processes sharing one queue — and what happens when one of them dies.

Every worker of a queue pulls from the same durable JetStream consumer, and each pulls only as
many tasks as it has free slots, so work spreads across processes (and machines) by itself.
This example starts an embedded NATS server and three worker processes, enqueues a batch,
kills one worker with SIGKILL while it holds tasks, and shows every task still completing:
the dead worker's unacknowledged tasks are redelivered to the others after ``ack_wait``. That
is at-least-once delivery — a task killed mid-run runs again, so make side effects
idempotent (docs/concepts.md).

In production ``actorq run module:app --processes 3`` starts and supervises the processes
for you (docs/cli.md); this file shows the mechanics with nothing but Python::

    python examples/multiprocess_worker.py
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter

import trio

import actorq

app = actorq.App("multiprocess")

ACK_WAIT = 1.0
"""Seconds before a silent worker's tasks are redelivered (default 30; short for the demo)."""


@app.task(name="multiprocess.work")
async def work(n: int) -> int:
    """Some work that takes a moment; returns the id of the process that ran it."""
    await trio.sleep(0.2)
    return os.getpid()


# --- a worker process --------------------------------------------------------------------


async def run_worker(url: str, ready: multiprocessing.synchronize.Event) -> None:
    async with actorq.connect(app, url) as client, trio.open_nursery() as nursery:
        await nursery.start(actorq.Worker(client, concurrency=2, ack_wait=ACK_WAIT).run)
        ready.set()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()  # drain: running tasks finish, then exit
                break


def worker_process(url: str, ready: multiprocessing.synchronize.Event) -> None:
    trio.run(run_worker, url, ready)


# --- the program --------------------------------------------------------------------------


async def main() -> None:
    spawn = multiprocessing.get_context("spawn")
    async with actorq.start_server() as server:
        events = [spawn.Event() for _ in range(3)]
        workers = [
            spawn.Process(target=worker_process, args=(server.url, ready), daemon=True)
            for ready in events
        ]
        for process in workers:
            process.start()
        for ready in events:
            assert await trio.to_thread.run_sync(ready.wait, 30), "a worker did not start"
        print("workers:", [process.pid for process in workers])

        async with actorq.connect(app, server.url) as client:
            handles = await client.enqueue_many(work.bind(n) for n in range(24))
            await trio.sleep(0.3)  # every worker now holds tasks
            victim = workers[0]
            os.kill(victim.pid or 0, signal.SIGKILL)
            print(f"killed worker {victim.pid} while it ran tasks")
            with trio.fail_after(30):
                ran_by = Counter([await handle.result() for handle in handles])

        print("tasks per worker:", dict(ran_by))
        assert sum(ran_by.values()) == 24
        survivors = {process.pid for process in workers[1:]}
        assert survivors <= set(ran_by), "both survivors took part"
        print(f"all 24 done: the killed worker finished {ran_by[victim.pid]} before it died;")
        print(f"the ones it held were redelivered to the survivors after ack_wait ({ACK_WAIT:g} s)")

        for process in workers[1:]:
            os.kill(process.pid or 0, signal.SIGTERM)
        for process in workers:
            await trio.to_thread.run_sync(process.join, 10)
        assert all(process.exitcode is not None for process in workers)
        print("survivors exit codes:", [process.exitcode for process in workers[1:]])


if __name__ == "__main__":
    trio.run(main)
