"""DAG benchmark: a fan-out/fan-in DAG of no-op steps beside the same number of plain tasks.

Run it with ``python bench/dag.py`` (``--help`` for the knobs). It starts its own nats-server
on a free loopback port with a temporary store, and one worker process (an `actorq.Worker`
that is also the app's DAG scheduler: the only candidate). Each round, on a fresh namespace,
it measures from a producer process, in alternating order:

- **plain tasks** — ``client.enqueue_many`` of N no-op tasks, then every result awaited through
  its handle: wall time and tasks/s;
- **a DAG** — one source step, N - 2 steps fanning out from it, one step fanning in all of
  their results (a list argument): ``client.submit(dag)`` then ``run.wait()`` until the run is
  done: wall time and steps/s.

It prints the medians of the rounds and the ratio DAG / plain (the target is at most 2).
``--scheduler-process`` runs the DAG scheduler in a second worker process of its own (the
steps in the first), the way a deployment can keep scheduling off the busiest workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _server import nats_server, server_version  # noqa: E402

import actorq  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


def bench_app(namespace: str) -> tuple[actorq.App, dict[str, Any]]:
    """The app and its no-op tasks (the same in the producer and the worker)."""
    app = actorq.App(namespace)

    @app.task(name="bench.noop")
    async def noop() -> None:
        return None

    @app.task(name="bench.source")
    async def source() -> int:
        return 0

    @app.task(name="bench.step")
    async def step(x: int) -> int:
        return x

    @app.task(name="bench.sink")
    async def sink(xs: list[int]) -> int:
        return len(xs)

    return app, {"noop": noop, "source": source, "step": step, "sink": sink}


# --- the worker process --------------------------------------------------------------------


async def run_worker(url: str, namespace: str, concurrency: int, role: str) -> None:
    """A worker process: ``both`` runs the steps and schedules; ``steps`` only runs them;
    ``scheduler`` only schedules (it consumes a queue nothing is sent to)."""
    app, _ = bench_app(namespace)
    settings = actorq.DagSettings(schedule=role != "steps", sweep_interval=30.0, leader_ttl=10.0)
    queues = ["scheduler-only"] if role == "scheduler" else ["default"]
    async with actorq.connect(app, url) as client, trio.open_nursery() as nursery:
        worker = actorq.Worker(client, concurrency=concurrency, queues=queues, dags=settings)
        await nursery.start(worker.run)
        scheduler = worker._dags.scheduler
        if scheduler is not None:
            await scheduler.elector.is_leader.wait_value(True)
        print("ready", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()  # the worker drains
                break


@contextmanager
def worker_process(url: str, namespace: str, concurrency: int, role: str) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", url, namespace, str(concurrency), role],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"the worker did not start (exit code {process.wait(10)})")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def workers(url: str, namespace: str, concurrency: int, separate: bool) -> Iterator[None]:
    """One worker process that runs the steps and schedules, or (``separate``) the scheduler
    in a second process of its own."""
    if not separate:
        with worker_process(url, namespace, concurrency, "both"):
            yield
        return
    with (
        worker_process(url, namespace, 1, "scheduler"),
        worker_process(url, namespace, concurrency, "steps"),
    ):
        yield


# --- the producer --------------------------------------------------------------------------


def fan_dag(tasks: dict[str, Any], n: int) -> actorq.DAG:
    """n steps: a source, n - 2 steps fed by it, a sink fed by all of them."""
    dag = actorq.DAG()
    source = dag.step(tasks["source"])
    middle = [dag.step(tasks["step"], source) for _ in range(n - 2)]
    dag.step(tasks["sink"].options(step_id="sink"), middle)
    return dag


async def measure(url: str, namespace: str, n: int, dag_first: bool) -> dict[str, float]:
    app, tasks = bench_app(namespace)
    figures: dict[str, float] = {}
    async with actorq.connect(app, url) as client:
        # Warm up both paths (connections, consumers, the scheduler's watches).
        await (await client.submit(fan_dag(tasks, 4))).wait()
        for handle in await client.enqueue_many([tasks["noop"].bind() for _ in range(20)]):
            await handle.result()

        async def plain() -> None:
            start = time.perf_counter()
            handles = await client.enqueue_many([tasks["noop"].bind() for _ in range(n)])
            for handle in handles:
                await handle.result()
            figures["plain"] = time.perf_counter() - start

        async def dag() -> None:
            start = time.perf_counter()
            run = await client.submit(fan_dag(tasks, n))
            status = await run.wait()
            figures["dag"] = time.perf_counter() - start
            if status != actorq.RunStatus.DONE or await run.result("sink") != n - 2:
                raise SystemExit(f"the DAG run ended {status}")

        for side in (dag, plain) if dag_first else (plain, dag):
            await side()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the DAG (and tasks)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64, help="worker slots")
    parser.add_argument(
        "--scheduler-process",
        action="store_true",
        help="run the DAG scheduler in a worker process of its own (the steps in another)",
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("URL", "NS", "C", "ROLE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        url, namespace, concurrency, role = args.worker
        trio.run(run_worker, url, namespace, int(concurrency), role)
        return 0
    if args.steps < 3:
        parser.error("--steps must be at least 3")
    print(
        f"DAG benchmark: {args.steps} steps fan-out/fan-in vs {args.steps} plain tasks,"
        f" {args.rounds} rounds, worker concurrency {args.concurrency},"
        f" scheduler {'in its own process' if args.scheduler_process else 'in the worker'};"
        f" {server_version()}"
    )
    rounds: list[dict[str, float]] = []
    with nats_server() as url:
        for index in range(args.rounds):
            namespace = f"d{os.getpid()}r{index}"
            with workers(url, namespace, args.concurrency, args.scheduler_process):
                figures = trio.run(measure, url, namespace, args.steps, index % 2 == 0)
            rounds.append(figures)
            print(
                f"  round {index + 1}: plain {figures['plain']:.3f} s, DAG {figures['dag']:.3f} s"
                f" ({figures['dag'] / figures['plain']:.2f}x)"
            )
    plain = statistics.median(r["plain"] for r in rounds)
    dag = statistics.median(r["dag"] for r in rounds)
    ratio = dag / plain
    print(f"{'':24}{'wall time':>12}{'per second':>14}")
    print(f"{'plain tasks':24}{plain:>10.3f} s{args.steps / plain:>10,.0f} tasks/s")
    print(f"{'DAG fan-out/fan-in':24}{dag:>10.3f} s{args.steps / dag:>10,.0f} steps/s")
    print(f"DAG / plain: {ratio:.2f}x (target <= 2.00x): {'met' if ratio <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
