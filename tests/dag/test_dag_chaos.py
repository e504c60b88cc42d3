"""A DAG run survives losing a NATS node and a worker process.

An embedded 3-node cluster, the app's streams and buckets at 3 replicas, two worker processes
(both DAG scheduler candidates), and a run of a 20-step chain plus a fan-out of 50 steps with a
fan-in at the end. Once the chain is a quarter through, the node leading the DAG bucket's
stream and the worker process leading the DAG scheduler are killed with SIGKILL. The run must
end ``done`` with the right result, and every step's end must have been recorded exactly once
(read from the bucket's history of each step's keys).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

import actorq
from actorq import RunStatus, StepStatus
from actorq.broker import CaughtUp, KvOperation
from actorq.dag._model import StepOutcome, StepState, decode

if TYPE_CHECKING:
    from actorq._embedded_sync import SyncCluster

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

WORKER = Path(__file__).with_name("dag_chaos_worker.py")
CHAIN = 20
LEAVES = 50


async def terminal_records(client: actorq.Client, run_id: str) -> Counter[str]:
    """How many times an end was recorded for each step: the terminal revisions of its record
    (skipped, cancelled, lost) and of its outcome (every revision kept, in the history)."""
    counts: Counter[str] = Counter()
    bucket = client.app.layout.dags_bucket
    async with client.broker.kv_watch(bucket, f"{run_id}.>", include_history=True) as events:
        async for event in events:
            if isinstance(event, CaughtUp):
                break
            if event.operation is not KvOperation.PUT:
                continue
            record = decode(event.key, event.value)
            if isinstance(record, StepState):
                counts[record.id] += record.status.terminal
            elif isinstance(record, StepOutcome):
                counts[record.step] += 1
    return counts


async def test_a_dag_run_survives_a_node_and_a_worker_killed(
    nats_cluster: SyncCluster, namespace: str, tmp_path: Path, start_script: Any
) -> None:
    app = actorq.App(namespace, replicas=3)
    link = actorq.remote_task("chaos.link", returns=int)
    leaf = actorq.remote_task("chaos.leaf", returns=int)
    gather = actorq.remote_task("chaos.gather", returns=int)
    processes: list[trio.Process] = []
    killed_node: int | None = None
    try:
        with trio.fail_after(45):
            async with actorq.connect(app, nats_cluster.url) as client:
                workers = {}
                for name in ("a", "b"):
                    log = tmp_path / f"{name}.log"
                    process, printed = await start_script(
                        WORKER, nats_cluster.url, namespace, str(log), ready=b"\n"
                    )
                    worker_id = printed.decode().split()[1]
                    processes.append(process)
                    workers[worker_id] = process

                dag = actorq.DAG()
                root = dag.step(link.options(step_id="link-0"), 0)
                last = root
                for i in range(1, CHAIN):
                    last = dag.step(link.options(step_id=f"link-{i}"), last)
                leaves = [
                    dag.step(leaf.options(step_id=f"leaf-{i}"), i, root) for i in range(LEAVES)
                ]
                final = dag.step(gather.options(step_id="final"), last, leaves)
                run = await client.submit(dag)
                assert await run.result("link-4") == 5

                # Kill the node leading the DAG bucket's stream and the scheduler's process.
                stream = f"KV_{app.layout.dags_bucket}"
                killed_node = await trio.to_thread.run_sync(nats_cluster.stream_leader, stream)
                assert killed_node is not None
                lease = await client.broker.kv_get(app.layout.leaders_bucket, "dags")
                assert lease is not None
                leader = workers[json.loads(lease.value)["holder"]]
                leader.send_signal(signal.SIGKILL)
                await trio.to_thread.run_sync(nats_cluster.kill, killed_node)
                await leader.wait()

                assert await run.wait() == RunStatus.DONE
                assert await run.result(final) == CHAIN * 1000 + sum(i + 1 for i in range(LEAVES))
                steps = await run.steps()
                assert len(steps) == CHAIN + LEAVES + 1
                assert all(step.status is StepStatus.DONE for step in steps.values())
                recorded = await terminal_records(client, run.id)
                assert recorded == Counter({step: 1 for step in steps})  # exactly once each
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if killed_node is not None:
            await trio.to_thread.run_sync(nats_cluster.restart, killed_node)
