"""The floors of the task benchmark: the same work without actorq's task layer.

- **bare** — nats-py on asyncio speaking JetStream's protocol over core connections (`_raw`),
  with task messages of actorq's shape (subject, headers, body) on the app's own streams and a
  consumer configured as an actorq worker's: the producer side here, the worker in
  `_task_worker` (``raw``);
- **Bridge alone** — the round trip through actorq's JetStream broker (the Bridge, trio on one
  side and nats-py's asyncio loop on the other, in both processes) with no task layer at all:
  what the architecture itself costs a round trip. The worker is `_task_worker` (``bridge``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from typing import TYPE_CHECKING

import nats
from _raw import Msg, PubAckWindow, api
from _task_worker import QUEUE, TASK_NAME

from actorq._names import Layout
from actorq.broker import ConsumerConfig, Message
from actorq.broker._jetstream import open_jetstream_broker
from actorq.broker._jetstream_admin import consumer_json

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BODY = b'{"args":[],"kwargs":{}}'
"""A no-argument task's body, as actorq encodes it."""

Figures = dict[str, float]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_figures(latencies: list[float], prefix: str = "") -> Figures:
    """The p50 and p99 of round-trip times, named ``<prefix>p50`` and ``<prefix>p99``."""
    return {
        f"{prefix}p50": percentile(latencies, 0.50),
        f"{prefix}p99": percentile(latencies, 0.99),
    }


def task_headers(task_id: str) -> dict[str, str]:
    """The headers actorq puts on a fresh task message."""
    return {
        "Actorq-Task": TASK_NAME,
        "Actorq-Id": task_id,
        "Actorq-Enqueued": repr(time.time()),
        "Nats-Msg-Id": task_id,
    }


def worker_consumer(layout: Layout) -> ConsumerConfig:
    """The queue's consumer, configured exactly as an actorq worker's (default options)."""
    return ConsumerConfig(
        name=layout.queue_consumer(QUEUE), filter_subjects=(layout.queue_subjects(QUEUE),)
    )


# --- bare nats-py ---------------------------------------------------------------------------


class BareProducer:
    """Publishes task messages of actorq's shape; receives results on one core subscription."""

    def __init__(self, nc: nats.NATS, namespace: str) -> None:
        self.nc = nc
        self.layout = Layout(namespace)
        self.subject = self.layout.task_subject(QUEUE, TASK_NAME)
        self.origin = secrets.token_hex(6)
        self.ids = itertools.count(secrets.randbits(32))
        self.window = PubAckWindow(nc)
        self.received = 0
        self.expected = 0
        self.all_in: asyncio.Future[None] | None = None
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self.window.start()
        await self.nc.subscribe(self.layout.result_origin_subjects(self.origin), cb=self._on_result)

    async def publish(self, on_ack: Callable[[], Awaitable[None]] | None = None) -> str:
        task_id = f"{self.origin}{next(self.ids):020x}"
        await self.window.publish(self.subject, BODY, task_headers(task_id), on_ack)
        return task_id

    async def _on_result(self, msg: Msg) -> None:
        record = json.loads(msg.data)
        assert record["status"] == "succeeded", record
        waiter = self.waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if waiter is not None:
            waiter.set_result(None)
        self.received += 1
        if self.received == self.expected and self.all_in is not None:
            self.all_in.set_result(None)


async def bare_consumer(nc: nats.NATS, layout: Layout) -> None:
    consumer = worker_consumer(layout)
    body = {"stream_name": layout.tasks_stream, "config": consumer_json(consumer)}
    await api(nc, f"$JS.API.CONSUMER.CREATE.{layout.tasks_stream}.{consumer.name}", body)


async def bare_enqueue(url: str, namespace: str, n: int) -> Figures:
    nc = await nats.connect(url)
    try:
        layout = Layout(namespace)
        await bare_consumer(nc, layout)
        producer = BareProducer(nc, namespace)
        await producer.start()
        started = time.perf_counter()
        for _ in range(n):
            await producer.publish()
        await producer.window.drained()
        rate = n / (time.perf_counter() - started)
        await api(nc, f"$JS.API.STREAM.PURGE.{layout.tasks_stream}")
        return {"enqueue": rate}
    finally:
        await nc.close()


async def bare_through_worker(url: str, namespace: str, n: int, rtt: int, warmup: int) -> Figures:
    nc = await nats.connect(url)
    try:
        producer = BareProducer(nc, namespace)
        await producer.start()
        loop = asyncio.get_running_loop()

        async def round_trip() -> float:
            started = time.perf_counter()
            acked = loop.create_future()

            async def on_ack() -> None:
                acked.set_result(None)

            arrived = loop.create_future()
            producer.waiting[await producer.publish(on_ack)] = arrived
            await acked
            await arrived
            return time.perf_counter() - started

        for _ in range(warmup):
            await round_trip()
        producer.received, producer.expected = 0, n
        producer.all_in = loop.create_future()
        started = time.perf_counter()
        for _ in range(n):
            await producer.publish()
        await producer.all_in
        await producer.window.drained()
        end_to_end = n / (time.perf_counter() - started)
        latencies = [await round_trip() for _ in range(rtt)]
        return {"end_to_end": end_to_end} | latency_figures(latencies)
    finally:
        await nc.close()


# --- the Bridge alone -----------------------------------------------------------------------


async def bridge_round_trips(url: str, namespace: str, rtt: int, warmup: int) -> Figures:
    """Sequential round trips through actorq's broker: publish a task message (PubAck), then
    wait for its result on a plain subscription, as `TaskHandle` does, without the task
    layer."""
    layout = Layout(namespace)
    origin = secrets.token_hex(6)
    ids = itertools.count(secrets.randbits(32))
    subject = layout.task_subject(QUEUE, TASK_NAME)
    async with (
        open_jetstream_broker(url) as broker,
        broker.subscribe(layout.result_origin_subjects(origin)) as results,
    ):

        async def round_trip() -> float:
            task_id = f"{origin}{next(ids):020x}"
            started = time.perf_counter()
            await broker.publish(Message(subject, BODY, task_headers(task_id)))
            async for message in results:
                if message.subject.endswith(task_id):
                    break
            return time.perf_counter() - started

        for _ in range(warmup):
            await round_trip()
        latencies = [await round_trip() for _ in range(rtt)]
    return latency_figures(latencies, "bridge_")
