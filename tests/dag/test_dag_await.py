"""Awaiting a run from anywhere: by id from a second client, before and after the result was
written, typed by the app's tasks, and the errors of steps that did not succeed."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from dagtools import dag_worker

import actorq
from actorq import RetryPolicy, RunStatus


async def test_await_by_id_from_a_second_client_before_and_after_completion(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    release = trio.Event()

    @app.task
    async def slow(x: int) -> int:
        await release.wait()
        return x * 2

    @app.task
    async def fast(x: int) -> int:
        return x + 1

    async with actorq.connect(app, memory_url) as producer, dag_worker(producer):
        dag = actorq.DAG()
        first = dag.step(fast.options(step_id="first"), 1)
        final = dag.step(slow.options(step_id="final"), first)
        run = await producer.submit(dag)
        assert await run.result(first) == 2
        async with actorq.connect(app, memory_url) as other:
            remote = other.dag_run(run.id)
            assert await remote.result("first") == 2  # written before the wait began
            async with trio.open_nursery() as nursery:
                results: list[int] = []

                async def wait_final() -> None:
                    results.append(await remote.result("final"))  # written later

                nursery.start_soon(wait_final)
                await trio.testing.wait_all_tasks_blocked()
                assert results == []
                release.set()
            assert results == [4]
            assert await remote.wait() == RunStatus.DONE
            assert await other.dag_run(run.id).result(final) == 4


async def test_awaiting_results_by_id_is_typed_by_the_app(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def stamp() -> tuple[int, str]:
        return (1, "a")

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        dag.step(stamp.options(step_id="stamp"))
        run = await client.submit(dag)
        assert await run.result("stamp") == (1, "a")  # structured to the return annotation
        async with actorq.connect(actorq.App(app.namespace), memory_url) as stranger:
            assert await stranger.dag_run(run.id).result("stamp") == [1, "a"]  # plain JSON


async def test_each_unsuccessful_outcome_has_its_error(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task(retry=RetryPolicy.never())
    async def fails() -> int:
        raise KeyError("missing")

    @app.task
    async def needs(x: int) -> int:
        return x

    @app.task
    async def waits() -> None:
        await trio.sleep(100)

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(fails)
        b = dag.step(needs, a)
        run = await client.submit(dag)
        with pytest.raises(actorq.StepFailed) as failed:
            await run.result(a)
        with pytest.raises(actorq.StepSkipped) as skipped:
            await run.result(b)
        assert (failed.value.run_id, failed.value.step, failed.value.kind) == (
            run.id,
            a.id,
            "error",
        )
        assert "KeyError" in failed.value.message
        assert skipped.value.upstream == a.id

        dag = actorq.DAG()
        w = dag.step(waits)
        later = dag.step(needs, dag.step(needs, 1))
        dag.breakpoint("stop", before=later)
        run = await client.submit(dag, breakpoints=["stop"])
        await run.cancel()
        with pytest.raises(actorq.StepCancelled):
            await run.result(later)
        with pytest.raises(actorq.NotFound, match="ended without a step 'nope'"):
            await run.result("nope")
        assert issubclass(actorq.StepFailed, actorq.ActorqError)
        assert w.id == waits.name
