"""A worker process killed with SIGKILL mid-run loses nothing.

Two real worker processes share a queue; 1,000 tasks are enqueued; one worker is killed with
``kill -9`` while it runs tasks. Every task must complete (counted by its result), and the only
tasks run twice are ones the killed worker was still holding: among its last starts.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

import actorq

pytestmark = [pytest.mark.faults, pytest.mark.integration]

WORKER = Path(__file__).with_name("fault_worker.py")
TASKS = 1000
WORKER_SLOTS = 8
"""The fault worker's concurrency (tests/faults/fault_worker.py)."""


def executions(log: Path) -> tuple[list[int], set[int]]:
    """What a worker started (every run, in order) and what it finished."""
    started: list[int] = []
    ended: set[int] = set()
    for line in log.read_text().splitlines():
        kind, n = line.split()
        if kind == "start":
            started.append(int(n))
        else:
            ended.add(int(n))
    return started, ended


async def test_kill_9_of_a_worker_loses_no_task(
    nats_url: str, namespace: str, tmp_path: Path, start_script: Any
) -> None:
    app = actorq.App(namespace)
    record = actorq.remote_task("fault.record", returns=int)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    async with actorq.connect(app, nats_url) as client:
        victim, _ = await start_script(WORKER, nats_url, namespace, str(logs[0]))
        survivor, _ = await start_script(WORKER, nats_url, namespace, str(logs[1]))
        try:
            handles = await client.enqueue_many(record.bind(n) for n in range(TASKS))
            results: list[int] = []
            with trio.fail_after(60):
                for handle in handles[: TASKS // 4]:
                    results.append(await handle.result())
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                for handle in handles[TASKS // 4 :]:
                    results.append(await handle.result())
        finally:
            for process in (victim, survivor):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert sorted(results) == list(range(TASKS))
    victim_started, victim_ended = executions(logs[0])
    survivor_started, _ = executions(logs[1])
    assert victim_started, "the killed worker ran nothing; the test proved nothing"
    # A task is in flight until its ack reaches the server, which is after its handler logged
    # "end": besides the unfinished ones, the killed worker may have held finished tasks whose
    # result or ack was still on its way. It never held more than its slots' worth of each, so
    # every task run twice must be among its last starts.
    unfinished = set(victim_started) - victim_ended
    last_starts = set(victim_started[-3 * WORKER_SLOTS :])
    runs = Counter(victim_started + survivor_started)
    duplicates = {n for n, count in runs.items() if count > 1}
    assert set(runs) == set(range(TASKS))
    assert unfinished <= last_starts
    assert duplicates <= last_starts, (sorted(duplicates), victim_started[-3 * WORKER_SLOTS :])
