"""Scheduling and control against a real nats-server (real clock)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import actorq
from actorq.testing import running_worker

pytestmark = pytest.mark.integration


async def test_a_delay_is_honoured_by_the_server(nats_url: str, namespace: str) -> None:
    app = actorq.App(namespace)
    ran_at: list[float] = []

    @app.task
    async def later() -> None:
        ran_at.append(time.time())

    with trio.fail_after(15):
        async with actorq.connect(app, nats_url) as client, running_worker(client):
            enqueued = time.time()
            await (await client.enqueue(later.options(delay=1.5))).result()
    assert 1.5 <= ran_at[0] - enqueued < 3.0


async def test_cancel_a_queued_and_a_running_task(nats_url: str, namespace: str) -> None:
    app = actorq.App(namespace)
    started = trio.Event()
    calls: list[str] = []

    @app.task
    async def work(label: str) -> None:
        calls.append(label)
        if label == "running":
            started.set()
            await trio.sleep_forever()

    with trio.fail_after(15):
        async with actorq.connect(app, nats_url) as client:
            queued = await client.enqueue(work, "queued")
            assert await queued.cancel()
            async with running_worker(client) as worker:
                running = await client.enqueue(work, "running")
                await started.wait()
                assert await running.cancel()
                for handle in (queued, running):
                    with pytest.raises(actorq.TaskCancelled):
                        await handle.result()
                while worker.statistics().executions.cancelled < 2:
                    await trio.sleep(0.05)
    assert calls == ["running"]


async def test_a_cron_schedule_fires_once_per_tick_with_two_worker_processes(
    nats_url: str, namespace: str, tmp_path: Path, start_script: Any
) -> None:
    script = Path(__file__).with_name("periodic_worker.py")
    log = tmp_path / "ticks.log"
    with trio.fail_after(20):
        workers = [(await start_script(script, nats_url, namespace, str(log)))[0] for _ in range(2)]
        try:
            while len(log.read_text().splitlines()) < 4:
                await trio.sleep(0.2)
        finally:
            for process in workers:
                process.send_signal(signal.SIGTERM)
            for process in workers:
                await process.wait()
        app = actorq.App(namespace)
        async with actorq.connect(app, nats_url) as client:
            [installed] = await client.periodic_schedules()
            assert await client.remove_periodic(installed.id)
    runs = [line.split() for line in log.read_text().splitlines()]
    ids = [task_id for task_id, _ in runs]
    seconds = [int(float(at)) for _, at in runs]
    assert len(ids) == len(set(ids)), "a tick ran twice"
    assert len(seconds) == len(set(seconds)), f"two runs in one second: {runs}"
