"""The worker processes of the task benchmark: ``python _task_worker.py raw|actorq URL NS C``.

- ``raw``: bare nats-py on asyncio — pull requests for ``C`` deliveries, each delivery's body
  decoded and a no-op coroutine called, its result published with a PubAck, and the delivery
  acked (``+ACK``) when that PubAck arrives; credits are asked for again in halves.
- ``bridge``: the same through actorq's JetStream broker from trio (the Bridge), with no task
  layer: a credit-based pull, ``broker.publish`` of the result, ``broker.ack``.
- ``actorq``: an `actorq.Worker` with ``C`` slots on the app of namespace ``NS``.

The result messages are shaped like actorq's (subject, headers, body), including the
expected-last-subject-sequence header with which actorq stores only a task's first outcome.

Either prints ``ready`` once it takes work and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

TASK_NAME = "bench.noop"
QUEUE = "default"
FIRST_OUTCOME = {"Nats-Expected-Last-Subject-Sequence": "0"}


def bench_app(namespace: str) -> tuple[Any, Any]:
    """The benchmark's app and its one task, a no-op coroutine (same on every side)."""
    import actorq

    app = actorq.App(namespace)

    @app.task(name=TASK_NAME)
    async def noop() -> None:
        return None

    return app, noop


# --- bare nats-py ---------------------------------------------------------------------------


async def _noop() -> None:
    return None


async def run_task(
    data: bytes, headers: Mapping[str, str], prefix: str, worker: str
) -> tuple[str, bytes, dict[str, str]]:
    """Decode a task message, call the no-op, and return its result message (subject, body,
    headers) as actorq writes it. Awaitable from asyncio and from trio alike."""
    document = json.loads(data)
    value = await _noop(*document["args"], **document["kwargs"])
    task_id, task = headers["Actorq-Id"], headers["Actorq-Task"]
    record = {
        "id": task_id,
        "task": task,
        "status": "succeeded",
        "value": value,
        "error": None,
        "attempts": 1,
        "finished_at": time.time(),
        "worker": worker,
    }
    body = json.dumps(record, separators=(",", ":")).encode()
    result_headers = {"Actorq-Id": task_id, "Actorq-Task": task, "Actorq-Status": "succeeded"}
    return f"{prefix}{task_id[:12]}.{task_id}", body, result_headers | FIRST_OUTCOME


async def run_raw(url: str, namespace: str, concurrency: int) -> None:
    import nats
    from _raw import Msg, PubAckWindow, Puller

    nc = await nats.connect(url)
    results = PubAckWindow(nc)
    await results.start()
    prefix = f"actorq.{namespace}.result."
    worker = f"{socket.gethostname()}:raw"
    regrant_at = max(1, concurrency // 2)
    free = 0

    async def on_delivery(msg: Msg) -> None:
        subject, body, headers = await run_task(msg.data, msg.headers or {}, prefix, worker)
        ack_subject = msg.reply

        async def settle() -> None:
            nonlocal free
            await nc.publish(ack_subject, b"+ACK")
            free += 1
            if free >= regrant_at:
                credits, free = free, 0
                await puller.grant(credits)

        await results.publish(subject, body, headers, settle)

    layout_stream = f"ACTORQ_{namespace.upper().replace('-', '_')}_TASKS"
    puller = Puller(nc, layout_stream, f"queue-{QUEUE}", on_delivery)
    await puller.start()
    await puller.grant(concurrency)
    await nc.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await nc.close()


# --- the Bridge alone -----------------------------------------------------------------------


async def run_bridge(url: str, namespace: str, concurrency: int) -> None:
    """Through actorq's broker, one batch of deliveries at a time (for round trips)."""
    import trio
    from _task_floors import worker_consumer

    from actorq._names import Layout
    from actorq.broker import Message
    from actorq.broker._jetstream import open_jetstream_broker

    layout = Layout(namespace)
    prefix = f"actorq.{namespace}.result."
    worker = f"{socket.gethostname()}:bridge"
    consumer = worker_consumer(layout)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_jetstream_broker(url) as broker:
            await broker.ensure_consumer(layout.tasks_stream, consumer)
            async with broker.pull(layout.tasks_stream, consumer.name) as pull:
                pull.request(concurrency)

                async def serve() -> None:
                    while True:
                        batch = await pull.receive()
                        for delivery in batch:
                            subject, body, headers = await run_task(
                                delivery.data, delivery.headers, prefix, worker
                            )
                            await broker.publish(Message(subject, body, headers))
                            await broker.ack(delivery)
                        pull.request(len(batch))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve)
                    print("ready", flush=True)
                    async for _ in signals:
                        break
                    nursery.cancel_scope.cancel()


# --- actorq ---------------------------------------------------------------------------------


async def run_actorq(url: str, namespace: str, concurrency: int) -> None:
    import trio

    import actorq

    app, _ = bench_app(namespace)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with actorq.connect(app, url) as client, trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client, concurrency=concurrency).run)
            print("ready", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main() -> None:
    kind, url, namespace, concurrency = sys.argv[1:5]
    if kind == "raw":
        asyncio.run(run_raw(url, namespace, int(concurrency)))
        return
    import trio

    trio.run(run_bridge if kind == "bridge" else run_actorq, url, namespace, int(concurrency))


if __name__ == "__main__":
    main()
