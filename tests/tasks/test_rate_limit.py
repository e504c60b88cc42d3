"""The ``rate_limit`` task option: a limit per task name shared by every worker."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import actorq
from actorq.testing import running_worker


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of times inside any half-open window of ``window`` seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_rate_limited_task_never_exceeds_its_rate_on_two_workers(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    started: list[float] = []

    @app.task(name="limited.report")
    async def report(n: int) -> int:
        started.append(trio.current_time())
        return n

    limited = report.options(rate_limit="10/s")
    async with (
        actorq.connect(app, memory_url) as one,
        actorq.connect(app, memory_url) as two,
        running_worker(one, concurrency=8),
        running_worker(two, concurrency=8),
    ):
        begin = trio.current_time()
        handles = await one.enqueue_many(limited.bind(n) for n in range(50))
        results = [await handle.result() for handle in handles]
        attempts = {(await handle.outcome()).attempts for handle in handles}
    assert results == list(range(50))
    assert attempts == {1}  # waiting for a turn is not an attempt
    assert most_in_any_window(started) == 10
    assert trio.current_time() - begin >= 4.0


def test_a_bad_rate_is_refused() -> None:
    app = actorq.App("badrate")

    @app.task
    async def job() -> None: ...

    with pytest.raises(ValueError, match="fast"):
        job.options(rate_limit="fast")


@pytest.mark.integration
async def test_two_worker_processes_keep_a_rate_of_twenty_per_second(
    nats_url: str, namespace: str, tmp_path: Path, start_script: Any
) -> None:
    script = Path(__file__).with_name("rate_limited_worker.py")
    log = tmp_path / "starts.log"
    app = actorq.App(namespace)
    call_partner = actorq.remote_task("limited.call_partner", returns=int).options(
        rate_limit="20/s"
    )
    with trio.fail_after(30):
        workers = [(await start_script(script, nats_url, namespace, str(log)))[0] for _ in range(2)]
        try:
            async with actorq.connect(app, nats_url) as client:
                handles = await client.enqueue_many(call_partner.bind(n) for n in range(200))
                results = [await handle.result() for handle in handles]
        finally:
            for process in workers:
                process.send_signal(signal.SIGTERM)
            for process in workers:
                await process.wait()
    times = [float(line) for line in log.read_text().split()]
    assert sorted(results) == list(range(200))
    assert len(times) == 200
    assert max(times) - min(times) >= 9.0
    assert most_in_any_window(times) <= 20
