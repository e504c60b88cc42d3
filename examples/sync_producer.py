"""A plain blocking program that gives actorq work: no async, no trio.

Django and Flask views, management commands, cron scripts: ``actorq.sync`` enqueues tasks and
blocks for their results. One producer per process, shared by every thread; it speaks the
same wire format as the trio client, so any actorq worker runs the tasks.

In a real deployment the worker is ``actorq run examples.sync_producer:app`` and the URL comes
from ``ACTORQ_URL``. Run as a script, this file starts an embedded NATS server and a worker
in a background thread first, so it runs on its own::

    python examples/sync_producer.py
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import actorq
import actorq.sync

app = actorq.App("invoices")


# Explicit names: producers and workers may import this module under different names.
@app.task(name="invoices.total")
def total(amounts: list[float], vat: float = 0.2) -> float:
    """Sum the amounts and add VAT (a plain ``def``: it runs in a worker thread)."""
    return round(sum(amounts) * (1 + vat), 2)


@app.task(name="invoices.send")
async def send(invoice: int, email: str) -> str:
    """Pretend to e-mail an invoice."""
    if "@" not in email:
        raise ValueError(f"not an e-mail address: {email!r}")
    return f"invoice {invoice} sent to {email}"


def produce() -> None:
    """What your blocking code does: connect once, enqueue, wait for results."""
    # No URL: ACTORQ_URL, else the local node of this folder.
    with actorq.sync.connect(app) as producer:
        # Arguments are checked against the signature before anything is published.
        try:
            producer.enqueue(total, "12.50")
        except TypeError as error:
            print("refused before publishing:", error)

        # Enqueue, keep the id (in a database, a response), wait later or elsewhere.
        handle = producer.enqueue(total, [10.0, 2.5])
        print("enqueued", handle.task, handle.id)
        print("total:", handle.result(timeout=10))

        # Any process can wait for a task by its id.
        print("the same result by id:", producer.handle(handle.id, total).result(timeout=10))

        # A batch: one call, many acks in flight at once.
        handles = producer.enqueue_many(send.bind(n, f"client{n}@example.com") for n in range(3))
        for sent in handles:
            print(sent.result(timeout=10))

        # A failure comes back as TaskFailed, with the worker's error and traceback.
        try:
            producer.call(send.options(retry=actorq.RetryPolicy(max_attempts=1)), 9, "nobody")
        except actorq.TaskFailed as failure:
            print(f"failed: [{failure.kind}] {failure.message}")

        # One producer, many threads (a threaded web server does exactly this).
        with ThreadPoolExecutor(max_workers=8) as pool:
            totals = list(pool.map(lambda n: producer.call(total, [float(n)], vat=0.0), range(20)))
        print("20 totals from 8 threads:", sum(totals))


def main() -> None:
    from actorq.testing import run_server, worker_thread

    with run_server() as server, worker_thread(app, server.url, concurrency=4):
        os.environ["ACTORQ_URL"] = server.url
        produce()


if __name__ == "__main__":
    main()
