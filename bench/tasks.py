"""Task-queue benchmark: actorq's enqueue, end-to-end and round trip, beside bare-protocol floors.

Run it with ``python bench/tasks.py`` (``--help`` for the knobs). It starts its own nats-server
on a free loopback port with a temporary store and measures, in one run, on that server:

- **floors** (`_task_floors`) — bare nats-py on asyncio speaking JetStream's protocol over
  core connections (`_raw`), with task messages of actorq's shape (subject, headers, body) and
  the same streams and consumer: (i) enqueue: publishes with a window of PubAcks; (ii)
  end-to-end: a separate worker process pulls, decodes, calls a no-op coroutine, publishes the
  result with a PubAck, then ``+ACK``s, while the producer publishes the tasks and collects
  every result through one core subscription; (iii) round trip: one task published, pulled,
  its result published and received, sequentially. And, for information, the same round trip
  through actorq's Bridge alone (trio and nats-py's loop in both processes, no task layer):
  what the architecture costs before any task-queue code runs;
- **actorq** — (i) enqueue with ``client.enqueue_many`` batches, and with concurrent
  ``client.enqueue`` calls from several trio tasks; (ii) end-to-end with an `actorq.Worker` in
  a separate process, every result awaited through its handle; (iii) round trip: ``await
  (await client.enqueue(noop)).result()``, sequentially.

Every round measures both sides (their order alternating) on fresh namespaces; the table shows
medians of the rounds, each figure beside its floor, the ratio and the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _raw import api, machine  # noqa: E402
from _server import nats_server  # noqa: E402
from _task_floors import (  # noqa: E402
    Figures,
    bare_enqueue,
    bare_through_worker,
    bridge_round_trips,
    latency_figures,
)
from _task_worker import QUEUE, bench_app  # noqa: E402

import actorq  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_rounds = itertools.count()


def _namespace(side: str) -> str:
    return f"b{os.getpid()}{side}{next(_rounds)}"


@contextlib.contextmanager
def worker_process(kind: str, url: str, namespace: str, concurrency: int) -> Iterator[None]:
    """A worker process (`_task_worker`) taking work for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_task_worker.py"), kind, url, namespace, str(concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the {kind} worker did not start (exit code {process.wait(10)})")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


# --- rounds ---------------------------------------------------------------------------------


async def _prepare_app(url: str, namespace: str) -> None:
    """Create the app's streams the way actorq does (connecting does it)."""
    app, _ = bench_app(namespace)
    async with actorq.connect(app, url):
        pass


def floor_round(url: str, args: argparse.Namespace) -> Figures:
    namespace = _namespace("raw")
    trio.run(_prepare_app, url, namespace)
    figures = asyncio.run(bare_enqueue(url, namespace, args.enqueue_tasks))
    with worker_process("raw", url, namespace, args.concurrency):
        figures |= asyncio.run(
            bare_through_worker(url, namespace, args.tasks, args.rtt, args.warmup)
        )
    asyncio.run(_delete_streams(url, namespace))
    namespace = _namespace("br")
    trio.run(_prepare_app, url, namespace)
    with worker_process("bridge", url, namespace, args.concurrency):
        figures |= trio.run(bridge_round_trips, url, namespace, args.rtt, args.warmup)
    asyncio.run(_delete_streams(url, namespace))
    return figures


async def _delete_streams(url: str, namespace: str) -> None:
    """Delete every stream of the app (tasks, results, dead letters, buckets)."""
    nc = await nats.connect(url)
    try:
        names = (await api(nc, "$JS.API.STREAM.NAMES")).get("streams") or []
        token = namespace.upper()
        for stream in names:
            if token in stream.upper().split("_"):
                await api(nc, f"$JS.API.STREAM.DELETE.{stream}")
    finally:
        await nc.close()


# --- actorq ---------------------------------------------------------------------------------


async def actorq_enqueue(url: str, namespace: str, args: argparse.Namespace) -> Figures:
    app, noop = bench_app(namespace)
    n, batch = args.enqueue_tasks, args.batch
    async with actorq.connect(app, url) as client:

        async def many(share: int) -> None:
            for start in range(0, share, batch):
                await client.enqueue_many(noop.bind() for _ in range(min(batch, share - start)))

        async def one_by_one(share: int) -> None:
            for _ in range(share):
                await client.enqueue(noop)

        figures: Figures = {}
        for name, produce, producers in (
            ("enqueue", many, args.producers),
            ("enqueue_concurrent", one_by_one, args.enqueuers),
        ):
            share = n // producers
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(producers):
                    nursery.start_soon(produce, share)
            figures[name] = share * producers / (time.perf_counter() - started)
            await client.purge_queue(QUEUE)
    return figures


async def actorq_through_worker(
    url: str, namespace: str, n: int, rtt: int, warmup: int, batch: int
) -> Figures:
    app, noop = bench_app(namespace)
    async with actorq.connect(app, url) as client:

        async def round_trip() -> float:
            started = time.perf_counter()
            await (await client.enqueue(noop)).result()
            return time.perf_counter() - started

        for _ in range(warmup):
            await round_trip()
        send, receive = trio.open_memory_channel[list[Any]](n // batch + 1)

        async def produce() -> None:
            async with send:
                for start in range(0, n, batch):
                    await send.send(
                        await client.enqueue_many(noop.bind() for _ in range(min(batch, n - start)))
                    )

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for handles in receive:
                    for handle in handles:
                        assert await handle.result() is None
        end_to_end = n / (time.perf_counter() - started)
        latencies = [await round_trip() for _ in range(rtt)]
        return {"end_to_end": end_to_end} | latency_figures(latencies)


def actorq_round(url: str, args: argparse.Namespace) -> Figures:
    namespace = _namespace("aq")
    figures = trio.run(actorq_enqueue, url, namespace, args)
    with worker_process("actorq", url, namespace, args.concurrency):
        figures |= trio.run(
            actorq_through_worker, url, namespace, args.tasks, args.rtt, args.warmup, args.batch
        )
    asyncio.run(_delete_streams(url, namespace))
    return figures


# --- report ---------------------------------------------------------------------------------

# (label, actorq figure, floor figure, unit, target ratio, higher is better)
ROWS = [
    ("enqueue, `enqueue_many` batches", "enqueue", "enqueue", "tasks/s", 0.6, True),
    ("enqueue, concurrent `enqueue` calls", "enqueue_concurrent", "enqueue", "tasks/s", None, True),
    ("end-to-end, one worker process", "end_to_end", "end_to_end", "tasks/s", 0.5, True),
    ("round trip p50", "p50", "p50", "ms", 1.5, False),
    ("round trip p99", "p99", "p99", "ms", 2.0, False),
]
# (label, floor-side figure, bare floor figure): the Bridge alone, for information.
BRIDGE_ROWS = [
    ("round trip p50, the Bridge alone (no task layer)", "bridge_p50", "p50"),
    ("round trip p99, the Bridge alone (no task layer)", "bridge_p99", "p99"),
]


def _median(rounds: list[Figures], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def _cells(a: float, f: float, unit: str) -> str:
    if unit == "ms":
        return f"{a * 1000:.2f} ms | {f * 1000:.2f} ms"
    return f"{a:,.0f}/s | {f:,.0f}/s"


def report(actorq_rounds: list[Figures], floor_rounds: list[Figures]) -> bool:
    """Print the table; True when every target is met."""
    print()
    print("medians of the rounds; ratio = figure / floor")
    print()
    print("| measurement | figure | floor (bare nats-py) | ratio | target | |")
    print("|---|---:|---:|---:|---:|---|")
    passed = True
    for label, mine, floor_key, unit, target, higher in ROWS:
        a, f = _median(actorq_rounds, mine), _median(floor_rounds, floor_key)
        ratio = a / f
        if target is None:
            verdict, goal = "(info)", "-"
        else:
            ok = ratio >= target if higher else ratio <= target
            passed &= ok
            verdict = "pass" if ok else "FAIL"
            goal = f"{'>=' if higher else '<='} {target:g}x"
        print(f"| {label} | {_cells(a, f, unit)} | {ratio:.2f}x | {goal} | {verdict} |")
    for label, bridge_key, floor_key in BRIDGE_ROWS:
        a, f = _median(floor_rounds, bridge_key), _median(floor_rounds, floor_key)
        print(f"| {label} | {_cells(a, f, 'ms')} | {a / f:.2f}x | - | (info) |")
    return passed


def _describe(figures: Figures) -> str:
    parts = [f"enqueue {figures['enqueue']:,.0f}/s"]
    if "enqueue_concurrent" in figures:
        parts[0] += f" (concurrent {figures['enqueue_concurrent']:,.0f}/s)"
    parts.append(f"end-to-end {figures['end_to_end']:,.0f}/s")
    parts.append(f"rtt p50 {figures['p50'] * 1000:.2f} ms p99 {figures['p99'] * 1000:.2f} ms")
    if "bridge_p50" in figures:
        parts.append(
            f"Bridge-alone rtt p50 {figures['bridge_p50'] * 1000:.2f} ms"
            f" p99 {figures['bridge_p99'] * 1000:.2f} ms"
        )
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="end-to-end tasks per round")
    parser.add_argument("--enqueue-tasks", type=int, default=20_000, help="per enqueue figure")
    parser.add_argument("--rtt", type=int, default=500, help="sequential round trips per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed round trips first")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64, help="worker slots / credits")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per enqueue_many")
    parser.add_argument("--producers", type=int, default=2, help="concurrent enqueue_many loops")
    parser.add_argument("--enqueuers", type=int, default=64, help="concurrent enqueue tasks")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    print(machine())
    print(
        f"end-to-end {args.tasks:,} tasks, enqueue {args.enqueue_tasks:,} tasks, "
        f"{args.rtt} round trips per round, {args.rounds} rounds; worker concurrency "
        f"{args.concurrency}; enqueue_many({args.batch}) x {args.producers} producers, "
        f"enqueue x {args.enqueuers} trio tasks"
    )
    actorq_rounds: list[Figures] = []
    floor_rounds: list[Figures] = []
    with nats_server() as url:
        for round_ in range(args.rounds):
            sides: list[tuple[str, Callable[[], Figures], list[Figures]]] = [
                ("floor", lambda: floor_round(url, args), floor_rounds),
                ("actorq", lambda: actorq_round(url, args), actorq_rounds),
            ]
            for name, run, into in sides if round_ % 2 == 0 else reversed(sides):
                figures = run()
                into.append(figures)
                print(f"  round {round_ + 1} {name:>6}: {_describe(figures)}", flush=True)
    passed = report(actorq_rounds, floor_rounds)
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
