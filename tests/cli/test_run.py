"""``actorq run`` as a real process against the test NATS: results, drain, signals, children."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest
import trio
from clitools import CLI_APP, REPO, actorq_process, cli_env

import actorq
from actorq._local_node import read_local_node, stop_local_node

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

READY = r"worker (\S+) ready: .* pid (\d+)"


def quickstart() -> object:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import examples.quickstart

    return examples.quickstart


async def wait_in_flight(client: actorq.Client, queue: str = "default") -> None:
    """Until the queue's consumer has a delivery unacknowledged (a task is running)."""
    layout = client.app.layout
    while True:
        info = await client.broker.consumer_info(layout.tasks_stream, layout.queue_consumer(queue))
        if info.num_ack_pending:
            return
        await trio.sleep(0.02)


async def test_quickstart_worker_runs_tasks_and_drains_on_sigterm(nats_url: str) -> None:
    qs = quickstart()
    with trio.fail_after(20):
        async with actorq.connect(qs.app, nats_url) as client:  # type: ignore[attr-defined]
            await client.purge_queue("default")
            args = ["run", "examples.quickstart:app", "--url", nats_url, "-c", "2"]
            async with actorq_process(args, env=cli_env()) as worker:
                (ready,) = await worker.wait_for(READY)
                assert "queues default, 2 slots" in ready.string
                assert nats_url in ready.string

                assert await client.call(qs.add, 20, 22) == 42  # type: ignore[attr-defined]
                handle = await client.enqueue(qs.sleep, 1.0)  # type: ignore[attr-defined]
                await wait_in_flight(client)
                worker.process.send_signal(signal.SIGTERM)
                await worker.wait_for("SIGTERM: draining")
                # The task in flight finishes during the drain, then the worker exits 0.
                assert await handle.result(timeout=10) == "slept 1s"
                assert await worker.process.wait() == 0
                await worker.wait_for("worker stopped")


async def test_a_second_signal_stops_at_once(nats_url: str, namespace: str) -> None:
    app = actorq.App(namespace)
    slow = actorq.remote_task("cli.slow", returns=int)
    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client:
            args = ["run", CLI_APP, "--url", nats_url, "--shutdown-grace", "60"]
            async with actorq_process(args, env=cli_env(namespace)) as worker:
                await worker.wait_for(READY)
                await client.enqueue(slow, 1, 60.0)
                await wait_in_flight(client)
                worker.process.send_signal(signal.SIGINT)
                await worker.wait_for("SIGINT: draining")
                worker.process.send_signal(signal.SIGINT)
                assert await worker.process.wait() == 128 + signal.SIGINT
                await worker.wait_for("SIGINT again: stopping now")


async def test_json_logs_carry_the_task_fields(nats_url: str, namespace: str) -> None:
    app = actorq.App(namespace)
    add = actorq.remote_task("cli.add", returns=int)
    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client:
            args = ["run", CLI_APP, "--url", nats_url, "--json-logs"]
            async with actorq_process(args, env=cli_env(namespace)) as worker:
                await worker.wait_for('"event": "ready"')
                handle = await client.enqueue(add, 1, 2)
                assert await handle.result() == 3
                await worker.wait_for(handle.id)
                worker.process.send_signal(signal.SIGTERM)
                assert await worker.process.wait() == 0
    records = [json.loads(line) for line in worker.lines if line.strip()]
    ready = next(r for r in records if r.get("event") == "ready")
    assert ready["queues"] == ["default"]
    assert ready["url"] == nats_url
    outcome = next(r for r in records if r.get("task_id") == handle.id)
    assert outcome["task"] == "cli.add"
    assert outcome["attempt"] == 1
    assert outcome["status"] == "succeeded"
    assert isinstance(outcome["duration"], float)


@pytest.mark.faults
async def test_processes_restart_a_killed_child_and_lose_no_task(
    nats_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    slow = actorq.remote_task("cli.slow", returns=int)
    tasks = 200
    with trio.fail_after(40):
        async with actorq.connect(app, nats_url) as client:
            args = ["run", CLI_APP, "--url", nats_url, "--processes", "2", "-c", "4"]
            args += ["--ack-wait", "1"]
            async with actorq_process(args, env=cli_env(namespace)) as parent:
                first = await parent.wait_for(READY, count=2)
                pids = {int(match.group(2)) for match in first}
                assert len(pids) == 2
                handles = await client.enqueue_many(slow.bind(n, 0.02) for n in range(tasks))
                results = [await handle.result() for handle in handles[: tasks // 4]]
                victim = min(pids)
                os.kill(victim, signal.SIGKILL)
                await parent.wait_for(rf"\(pid {victim}\) was killed by SIGKILL; restarting")
                again = await parent.wait_for(READY, count=3)
                assert int(again[2].group(2)) not in pids
                results += [await handle.result() for handle in handles[tasks // 4 :]]
                assert results == list(range(tasks))

                parent.process.send_signal(signal.SIGTERM)
                assert await parent.process.wait() == 0
                await parent.wait_for("all worker processes stopped")
    for pid in pids - {victim}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_child_that_cannot_start_stops_the_parent_with_status_2(
    nats_url: str, namespace: str
) -> None:
    # The parent loads the app itself first, so a bad target never reaches a child; a child
    # that fails the same way at its start (its code changed on disk) stops the parent.
    broken = REPO / "tests" / "cli" / "cli_app.py"
    with trio.fail_after(20):
        args = ["run", str(broken) + ":app", "--url", nats_url, "--processes", "2"]
        env = cli_env(namespace, ACTORQ_TEST_BREAK_CHILDREN="1")
        async with actorq_process(args, env=env) as parent:
            assert await parent.process.wait() == 2
            await parent.wait_for("refused to start")


async def test_without_a_url_the_worker_uses_the_local_node(namespace: str, tmp_path: Path) -> None:
    app = actorq.App(namespace)
    add = actorq.remote_task("cli.add", returns=int)
    directory = tmp_path / ".actorq"
    try:
        with trio.fail_after(30):
            args = ["run", str(REPO / CLI_APP)]
            async with actorq_process(args, env=cli_env(namespace), cwd=tmp_path) as worker:
                (ready,) = await worker.wait_for(READY)
                assert "(the local node in .actorq/)" in ready.string
                node = read_local_node(directory)
                assert node is not None
                assert node.url in ready.string
                async with actorq.connect(app, node.url) as client:
                    assert await client.call(add, 2, 2) == 4
                worker.process.send_signal(signal.SIGTERM)
                assert await worker.process.wait() == 0
    finally:
        await trio.to_thread.run_sync(stop_local_node, directory)
