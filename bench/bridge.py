"""Bridge benchmark: JetStream publish and pull+ack through actorq's Bridge, beside pure asyncio.

Run it with ``python bench/bridge.py`` (``--help`` for the knobs). It starts its own nats-server
on a free loopback port with a temporary store and measures, in one process and one run:

- **pure asyncio** — nats-py on ``asyncio.run``, speaking JetStream's wire protocol over the
  core connection the way the design prescribes: ``nc.publish`` with a reply subject under one
  wildcard inbox, a ``Nats-Msg-Id`` header, a window of outstanding PubAcks parsed by hand;
  pull requests to ``$JS.API.CONSUMER.MSG.NEXT`` on a core inbox subscription, ``+ACK``
  published raw;
- **Bridge** — the same operations from trio through actorq's JetStream broker:
  ``publish_many`` batches from concurrent producers sharing the broker's PubAck window; a
  credit-based ``pull()`` subscription whose credits are re-granted as batches are acked.

Both sides build their messages inside the timed region, and a pull+ack run ends only when the
server reports no ack pending, so every ack counted was really applied. Rounds alternate the
two sides; the table shows the median of the rounds (the best in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import nats
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typing import TYPE_CHECKING

from _server import nats_server, server_version  # noqa: E402

from actorq.broker import (  # noqa: E402
    MSG_ID,
    ConsumerConfig,
    Delivery,
    Message,
    PubAck,
    Retention,
    StreamConfig,
)
from actorq.broker._jetstream import open_jetstream_broker  # noqa: E402
from actorq.broker._jetstream_pull import PullState  # noqa: E402
from actorq.broker._jetstream_wire import ACK, Wire  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

PAYLOAD = b"x" * 64
WINDOW = 4000
CREDITS = 2000
_runs = iter(range(1_000_000))


def _names() -> tuple[str, str]:
    """Fresh names per measurement (and per process: message ids must never repeat within the
    server's duplicate window, or publishes would be deduplicated away)."""
    run = f"{os.getpid()}x{next(_runs)}"
    return f"BENCH{run}", f"bench{run}"


# --- pure asyncio ---------------------------------------------------------------------------


async def _asyncio_setup(nc: nats.NATS, stream: str, subject: str) -> None:
    async def api(name: str, body: dict[str, object]) -> None:
        answer = json.loads((await nc.request(name, json.dumps(body).encode(), timeout=5)).data)
        assert "error" not in answer, answer

    await api(
        f"$JS.API.STREAM.CREATE.{stream}",
        {"name": stream, "subjects": [f"{subject}.>"], "retention": "workqueue"},
    )
    await api(
        f"$JS.API.CONSUMER.CREATE.{stream}.w",
        {
            "stream_name": stream,
            "config": {
                "durable_name": "w",
                "ack_policy": "explicit",
                "max_ack_pending": 20_000,
            },
        },
    )


async def _asyncio_publish(nc: nats.NATS, subject: str, n: int, tag: str) -> float:
    loop = asyncio.get_running_loop()
    prefix = nc.new_inbox() + "."
    state = {"outstanding": 0, "acked": 0}
    resume: list[asyncio.Future[None]] = []
    done = loop.create_future()

    async def on_ack(msg: nats.aio.msg.Msg) -> None:
        answer = json.loads(msg.data)
        assert "seq" in answer, answer
        state["outstanding"] -= 1
        state["acked"] += 1
        if resume and state["outstanding"] <= WINDOW * 3 // 4:
            resume.pop().set_result(None)
        if state["acked"] == n:
            done.set_result(None)

    sub = await nc.subscribe(prefix + "*", cb=on_ack)
    started = time.perf_counter()
    for i in range(n):
        if state["outstanding"] >= WINDOW:
            waiter = loop.create_future()
            resume.append(waiter)
            await waiter
        state["outstanding"] += 1
        await nc.publish(
            f"{subject}.task", PAYLOAD, reply=prefix + str(i), headers={MSG_ID: f"{tag}-{i}"}
        )
    await done
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return n / elapsed


async def _asyncio_pull_ack(nc: nats.NATS, stream: str, n: int) -> float:
    loop = asyncio.get_running_loop()
    inbox = nc.new_inbox()
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.w"
    half = CREDITS // 2
    request = json.dumps({"batch": half, "expires": 30_000_000_000}).encode()
    state = {"received": 0, "pending": CREDITS}
    done = loop.create_future()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        if not msg.reply:
            return  # a status message (heartbeat, timeout): nothing to do in this run
        await nc.publish(msg.reply, b"+ACK")
        state["received"] += 1
        state["pending"] -= 1
        if state["received"] == n:
            done.set_result(None)
        elif state["pending"] <= half:
            state["pending"] += half
            await nc.publish(next_subject, request, reply=inbox)

    sub = await nc.subscribe(inbox, cb=on_message)
    started = time.perf_counter()
    for _ in range(2):
        await nc.publish(next_subject, request, reply=inbox)
    await done
    await _asyncio_wait_acked(nc, stream)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return n / elapsed


async def _asyncio_wait_acked(nc: nats.NATS, stream: str) -> None:
    while True:
        info = json.loads((await nc.request(f"$JS.API.CONSUMER.INFO.{stream}.w", b"")).data)
        if info["num_ack_pending"] == 0 and info["num_pending"] == 0:
            return
        await asyncio.sleep(0.001)


async def asyncio_round(url: str, n: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    try:
        stream, subject = _names()
        await _asyncio_setup(nc, stream, subject)
        publish = await _asyncio_publish(nc, subject, n, stream)
        pull = await _asyncio_pull_ack(nc, stream, n)
        await nc.request(f"$JS.API.STREAM.DELETE.{stream}", b"")
        return publish, pull
    finally:
        await nc.close()


# --- actorq's loop-side code, driven from pure asyncio (no Bridge, no trio) -------------------


class _LoopOnly:
    """Stands in for the Bridge's loop side: ``post`` runs the function soon, on this loop
    (the Bridge runs it soon on the trio thread), so hand-offs batch the same way."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.loop = asyncio.get_running_loop()
        self.reconnect_listeners: list[Callable[[], None]] = []

    def post(self, fn: Callable[..., None], *args: object) -> None:
        self.loop.call_soon(fn, *args)


async def _wire_publish(
    wire: Wire, subject: str, n: int, tag: str, producers: int, batch: int
) -> float:
    share = n // producers

    async def produce(first: int) -> None:
        for start in range(first, first + share, batch):
            stop = min(start + batch, first + share)
            messages = [
                Message(f"{subject}.task", PAYLOAD, {MSG_ID: f"{tag}-{i}"})
                for i in range(start, stop)
            ]
            for result in await wire.publish_many(messages):
                assert type(result) is PubAck, result

    started = time.perf_counter()
    await asyncio.gather(*(produce(p * share) for p in range(producers)))
    return share * producers / (time.perf_counter() - started)


async def _wire_pull_ack(wire: Wire, nc: nats.NATS, stream: str, n: int) -> float:
    done = asyncio.get_running_loop().create_future()
    received = 0

    def on_batch(batch: list[Delivery]) -> None:
        nonlocal received
        lane = wire.replies
        for delivery in batch:
            lane.items.append((delivery.token, ACK))  # type: ignore[arg-type]
        wire.drain_replies()
        received += len(batch)
        state.grant(len(batch))
        if received >= n and not done.done():
            done.set_result(None)

    started = time.perf_counter()

    async def consumer_exists() -> None:
        return None

    state = PullState(
        wire, stream, "w", on_batch, done.set_exception, consumer_exists, expires=30, heartbeat=5
    )
    await state.open()
    state.grant(CREDITS)
    await done
    await _asyncio_wait_acked(nc, stream)
    elapsed = time.perf_counter() - started
    await state.close()
    return n / elapsed


async def wire_round(url: str, n: int, producers: int, batch: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    try:
        wire = Wire(_LoopOnly(nc))  # type: ignore[arg-type]
        await wire.start()
        stream, subject = _names()
        await _asyncio_setup(nc, stream, subject)
        publish = await _wire_publish(wire, subject, n, stream, producers, batch)
        pull = await _wire_pull_ack(wire, nc, stream, n)
        await nc.request(f"$JS.API.STREAM.DELETE.{stream}", b"")
        return publish, pull
    finally:
        await nc.close()


# --- through the Bridge ---------------------------------------------------------------------


async def _bridge_publish(
    broker, subject: str, n: int, tag: str, producers: int, batch: int
) -> float:  # type: ignore[no-untyped-def]
    share = n // producers

    async def produce(first: int) -> None:
        for start in range(first, first + share, batch):
            stop = min(start + batch, first + share)
            messages = [
                Message(f"{subject}.task", PAYLOAD, {MSG_ID: f"{tag}-{i}"})
                for i in range(start, stop)
            ]
            for result in await broker.publish_many(messages):
                assert type(result) is PubAck, result

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for p in range(producers):
            nursery.start_soon(produce, p * share)
    return share * producers / (time.perf_counter() - started)


async def _bridge_pull_ack(broker, stream: str, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    received = 0
    async with broker.pull(stream, "w") as subscription:
        subscription.request(CREDITS)
        while received < n:
            batch = await subscription.receive()
            for delivery in batch:
                await broker.ack(delivery)
            received += len(batch)
            subscription.request(len(batch))
        while True:
            info = await broker.consumer_info(stream, "w")
            if info.num_ack_pending == 0 and info.num_pending == 0:
                break
            await trio.sleep(0.001)
        elapsed = time.perf_counter() - started
    return n / elapsed


async def bridge_round(url: str, n: int, producers: int, batch: int) -> tuple[float, float]:
    async with open_jetstream_broker(url) as broker:
        stream, subject = _names()
        await broker.ensure_stream(
            StreamConfig(name=stream, subjects=(f"{subject}.>",), retention=Retention.WORK_QUEUE)
        )
        await broker.ensure_consumer(stream, ConsumerConfig(name="w", max_ack_pending=20_000))
        publish = await _bridge_publish(broker, subject, n, stream, producers, batch)
        pull = await _bridge_pull_ack(broker, stream, n)
        await broker.delete_stream(stream)
        return publish, pull


# --- report ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"nats-py {importlib.metadata.version('nats-py')}, {server_version()}"
    )


def _cell(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({max(rates):,.0f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--producers", type=int, default=2, help="concurrent trio publishers")
    parser.add_argument("--batch", type=int, default=2000, help="messages per publish_many")
    args = parser.parse_args(argv)

    sides = ("asyncio", "wire", "bridge")
    rows: dict[str, dict[str, list[float]]] = {
        "publish (PubAck)": {side: [] for side in sides},
        "pull + ack": {side: [] for side in sides},
    }
    print(machine())
    print(
        f"{args.messages:,} messages of {len(PAYLOAD)} bytes per measurement, "
        f"{args.rounds} rounds; {args.producers} producers x publish_many({args.batch}),"
        f" pull credits {CREDITS}"
    )
    with nats_server() as url:
        runs: dict[str, Callable[[], tuple[float, float]]] = {
            "asyncio": lambda: asyncio.run(asyncio_round(url, args.messages)),
            "wire": lambda: asyncio.run(wire_round(url, args.messages, args.producers, args.batch)),
            "bridge": lambda: trio.run(
                bridge_round, url, args.messages, args.producers, args.batch
            ),
        }
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                publish, pull = runs[side]()
                rows["publish (PubAck)"][side].append(publish)
                rows["pull + ack"][side].append(pull)
                print(
                    f"  round {round_ + 1} {side:>7}: publish {publish:,.0f}/s, "
                    f"pull+ack {pull:,.0f}/s"
                )

    print()
    print("msgs/s, median of the rounds (best in brackets)")
    print()
    print(
        "| operation | (a) pure asyncio, nc.publish | (a') pure asyncio, actorq's loop code"
        " | (b) Bridge from trio | b / a | b / a' |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, by_side in rows.items():
        a, wire, bridge = (statistics.median(by_side[side]) for side in sides)
        print(
            f"| {name} | {_cell(by_side['asyncio'])} | {_cell(by_side['wire'])} | "
            f"{_cell(by_side['bridge'])} | {bridge / a:.0%} | {bridge / wire:.0%} |"
        )


if __name__ == "__main__":
    main()
