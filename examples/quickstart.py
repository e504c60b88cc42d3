"""Quickstart: an app with a few tasks, a worker that runs them, and a producer.

Run a worker for this app from the repository root (no URL: the local NATS node under
``.actorq/`` is started for you)::

    actorq run examples.quickstart:app

and, from another terminal, give it work and look at it::

    actorq enqueue -A examples.quickstart:app quickstart.add --args '[1, 2]' --wait
    actorq queues examples.quickstart:app

Or run this file (``python examples/quickstart.py``): a worker and a producer in one process,
on the in-process memory broker — no NATS needed.
"""

from __future__ import annotations

import logging

import trio

import actorq
from actorq.testing import running_worker

app = actorq.App("quickstart")


# Explicit names: the module is ``examples.quickstart`` for a worker started by ``actorq run``
# but ``__main__`` when this file runs as a script; a default name would differ between them.
@app.task(name="quickstart.add")
async def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@app.task(name="quickstart.sleep")
async def sleep(seconds: float) -> str:
    """Take a while (to watch a worker drain on Ctrl-C)."""
    await trio.sleep(seconds)
    return f"slept {seconds:g}s"


@app.task(name="quickstart.word_count")
def word_count(text: str) -> int:
    """A plain ``def``: it runs in a worker thread."""
    return len(text.split())


@app.task(
    name="quickstart.fail",
    retry=actorq.RetryPolicy(max_attempts=2, backoff=actorq.Backoff.constant(0.5)),
)
async def fail(message: str) -> None:
    """Always fails: tried twice, then it lands in the dead-letter queue."""
    raise ValueError(message)


async def main(url: str = "memory://quickstart") -> None:
    async with actorq.connect(app, url) as client, running_worker(client, concurrency=4):
        print("add(1, 2) =", await client.call(add, 1, 2))
        print("word_count(...) =", await client.call(word_count, "the quick brown fox"))
        handle = await client.enqueue(sleep, 0.1)
        print(f"sleep(0.1) -> {await handle.result(timeout=10)!r} (task {handle.id})")
        try:
            await client.call(fail, "on purpose")
        except actorq.TaskFailed as failure:
            print(f"fail(...) failed after {failure.attempts} attempts: {failure.message}")
        letters = await client.dlq.list()
        print("dead letters:", [letter.task for letter in letters])


if __name__ == "__main__":
    logging.basicConfig(format="  worker log: %(message)s")  # retries and failures
    trio.run(main)
