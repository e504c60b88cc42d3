"""The DAG behaviours on a real nats-server (the session's), on the real clock: data flow and
fan-in, awaiting by id from a second client, failures and retries, control, recovery."""

from __future__ import annotations

import pytest
import trio
from dagtools import dag_worker

import actorq
from actorq import Backoff, RetryPolicy, RunStatus, StepStatus

pytestmark = pytest.mark.integration


async def test_fan_out_fan_in_and_await_by_id_from_another_client(
    app: actorq.App, nats_url: str
) -> None:
    @app.task
    async def square(x: int) -> int:
        return x * x

    @app.task
    async def total(xs: list[int]) -> int:
        return sum(xs)

    @app.task
    async def show(x: int) -> str:
        return f"result:{x}"

    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client, dag_worker(client, concurrency=8):
            dag = actorq.DAG()
            squares = [dag.step(square, i) for i in range(20)]
            final = dag.step(show.options(step_id="final"), dag.step(total, squares))
            async with actorq.connect(app, nats_url) as other:
                remote = other.dag_run(dag.id)
                async with trio.open_nursery() as nursery:
                    early: list[str] = []

                    async def wait_early() -> None:
                        early.append(await remote.result("final"))

                    run = await client.submit(dag)
                    nursery.start_soon(wait_early)
                    assert await run.result(final) == f"result:{sum(i * i for i in range(20))}"
                assert early == [await remote.result("final")]  # before and after completion
                assert await remote.wait() == RunStatus.DONE


async def test_failures_retries_and_skips(app: actorq.App, nats_url: str) -> None:
    calls = 0

    @app.task
    async def doomed() -> int:
        nonlocal calls
        calls += 1
        raise ValueError("always")

    @app.task
    async def use(x: int) -> int:
        return x

    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client, dag_worker(client):
            dag = actorq.DAG(retry=RetryPolicy(max_attempts=3, backoff=Backoff.constant(0.1)))
            a = dag.step(doomed)
            b = dag.step(use, a)
            c = dag.step(use, a.or_default(5))
            run = await client.submit(dag)
            assert await run.wait() == RunStatus.FAILED
            with pytest.raises(actorq.StepFailed) as failed:
                await run.result(a)
            with pytest.raises(actorq.StepSkipped):
                await run.result(b)
            assert await run.result(c) == 5
    assert calls == 3
    assert failed.value.attempts == 3


async def test_pause_resume_signal_and_breakpoint(app: actorq.App, nats_url: str) -> None:
    release = trio.Event()

    @app.task
    async def slow() -> int:
        await release.wait()
        return 1

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client, dag_worker(client):
            dag = actorq.DAG()
            a = dag.step(slow)
            b = dag.step(add, a, dag.signal_ref("y"))
            c = dag.step(add.options(step_id="c"), b, 100)
            dag.breakpoint("check", before=c)
            run = await client.submit(dag, breakpoints=["check"])
            assert await run.pause() == RunStatus.PAUSING
            release.set()
            assert await run.result(a) == 1
            assert await run.signal("y", 10) is True
            assert await run.signal("y", 20) is False
            assert (await run.step(b)).held
            assert await run.resume() == RunStatus.RUNNING
            assert await run.result(b) == 11
            assert await run.release("check") == 1  # b is through: c is at the breakpoint
            assert await run.release("check") == 0
            assert await run.result(c) == 111
            assert await run.wait() == RunStatus.DONE


async def test_a_phantom_step_and_a_stranded_one_are_recovered(
    app: actorq.App, nats_url: str
) -> None:
    @app.task
    async def one() -> int:
        return 1

    @app.task
    async def inc(x: int) -> int:
        return x + 1

    settings = actorq.DagSettings(sweep_interval=0.5, leader_ttl=2.0, phantom_after=1.0)
    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client:
            dag = actorq.DAG()
            s = dag.step(one)
            t = dag.step(inc, s)
            run = await client.submit(dag)  # no worker yet: nothing runs, nobody schedules
            assert (await run.step(s)).status is StepStatus.RUNNING
            assert await client.purge_queue("default") == 1  # its message is lost
            async with dag_worker(client, dags=settings):
                assert await run.result(t) == 2
                record = await run.step(s)
    assert (record.generation, record.lost) == (2, 1)
