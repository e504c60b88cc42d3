"""DAG semantics end to end on the memory broker's clock: data flow, fan-out/fan-in, optional
steps and defaults, cascade skips, order-only dependencies, retries at step level, and how
the outcomes are recorded (ebind's scenario catalogue, section E)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from dagtools import dag_worker

import actorq
from actorq import Backoff, RetryPolicy, RunStatus, StepStatus


async def test_a_linear_chain_passes_results_along(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def double(x: int) -> int:
        return x * 2

    @app.task
    async def show(x: int) -> str:
        return f"result:{x}"

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(add, 2, 3)
        b = dag.step(double, a)
        c = dag.step(show, b)
        run = await client.submit(dag)
        assert await run.result(c) == "result:10"
        assert await run.result(b) == 10
        assert await run.wait() == RunStatus.DONE
        steps = await run.steps()
    assert [steps[s.id].status for s in (a, b, c)] == [StepStatus.DONE] * 3
    assert [steps[s.id].attempts for s in (a, b, c)] == [1, 1, 1]
    assert (a.id, b.id, c.id) == (add.name, double.name, show.name)


async def test_fan_out_and_fan_in(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    running = 0
    most = 0

    @app.task
    async def square(x: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(1)
        running -= 1
        return x * x

    @app.task
    async def total(xs: list[int], offset: int = 0) -> int:
        return sum(xs) + offset

    async with actorq.connect(app, memory_url) as client, dag_worker(client, concurrency=8):
        dag = actorq.DAG()
        squares = [dag.step(square, i) for i in range(8)]
        final = dag.step(total.options(step_id="final"), squares, offset=100)
        start = trio.current_time()
        run = await client.submit(dag)
        assert await run.result(final) == sum(i * i for i in range(8)) + 100
        took = trio.current_time() - start
    assert [s.id for s in squares[:3]] == [square.name, f"{square.name}-2", f"{square.name}-3"]
    assert most == 8  # all eight ran at once
    assert took == pytest.approx(1.0, abs=0.1)


async def test_an_optional_step_that_fails_feeds_its_default(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task(retry=RetryPolicy.never())
    async def flaky() -> int:
        raise RuntimeError("enrichment is down")

    @app.task
    async def times_two(x: int) -> int:
        return x * 2

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        extra = dag.step(flaky.options(optional=True))
        final = dag.step(times_two, extra.or_default(99))
        run = await client.submit(dag)
        assert await run.result(final) == 198
        assert await run.wait() == RunStatus.DONE
        with pytest.raises(actorq.StepFailed) as failed:
            await run.result(extra)
    assert (failed.value.kind, failed.value.attempts) == ("error", 1)
    assert failed.value.message == "RuntimeError: enrichment is down"


async def test_a_failed_mandatory_step_skips_its_dependents_transitively(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    ran: list[str] = []

    @app.task(retry=RetryPolicy.never())
    async def broken() -> int:
        raise ValueError("no")

    @app.task
    async def step(x: int) -> int:
        ran.append("step")
        return x

    @app.task
    async def independent() -> str:
        ran.append("independent")
        return "ok"

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(broken)
        b = dag.step(step, a)
        c = dag.step(step, b)
        d = dag.step(independent)
        tolerant = dag.step(step, b.or_default(7))
        run = await client.submit(dag)
        assert await run.wait() == RunStatus.FAILED
        with pytest.raises(actorq.StepSkipped) as skipped:
            await run.result(c)
        steps = await run.steps()
        assert await run.result(d) == "ok"
        assert await run.result(tolerant) == 7
    assert skipped.value.upstream == b.id
    assert steps[b.id].status is StepStatus.SKIPPED
    assert steps[b.id].error == actorq.dag.StepError("skipped", a.id)
    assert sorted(ran) == ["independent", "step"]  # only the tolerant one of the three


async def test_after_orders_without_data_and_after_any_runs_whatever_the_outcome(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[str, float]] = []

    @app.task
    async def slow(name: str) -> None:
        await trio.sleep(2)
        log.append((name, trio.current_time()))

    @app.task(retry=RetryPolicy.never())
    async def fails() -> None:
        raise RuntimeError("boom")

    @app.task
    async def note(name: str) -> str:
        log.append((name, trio.current_time()))
        return name

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        first = dag.step(slow, "first")
        then = dag.step(note.options(step_id="then", after=[first]), "then")
        bad = dag.step(fails.options(optional=True))
        after_bad = dag.step(note.options(step_id="after_bad", after=bad), "after_bad")
        anyway = dag.step(note.options(step_id="anyway", after_any=[bad]), "anyway")
        run = await client.submit(dag)
        assert await run.wait() == RunStatus.FAILED  # after_bad is mandatory and skipped
        assert await run.result(anyway) == "anyway"
        with pytest.raises(actorq.StepSkipped):
            await run.result(after_bad)
    times = dict(log)
    assert times["then"] >= times["first"]
    assert "after_bad" not in times
    assert then.id == "then"


async def test_or_default_and_after_on_different_upstreams(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task(retry=RetryPolicy.never())
    async def fails() -> int:
        raise RuntimeError("boom")

    @app.task
    async def ok() -> int:
        return 1

    @app.task
    async def use(x: int) -> int:
        return x

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(fails.options(step_id="a", optional=True))
        c_ok = dag.step(ok.options(step_id="c"))
        tolerant = dag.step(use.options(step_id="tolerant", after=[c_ok]), a.or_default(5))
        c_bad = dag.step(fails.options(step_id="c_bad", optional=True))
        strict = dag.step(use.options(step_id="strict", after=[c_bad]), a.or_default(5))
        run = await client.submit(dag)
        assert await run.result(tolerant) == 5
        with pytest.raises(actorq.StepSkipped) as skipped:
            await run.result(strict)
    assert skipped.value.upstream == "c_bad"


async def test_retry_exhaustion_at_step_level_is_exact(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    calls: dict[str, list[float]] = {"dag": [], "step": []}

    @app.task
    async def doomed(which: str) -> None:
        calls[which].append(trio.current_time())
        raise ValueError("x" * 10_000 + "é")

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG(retry=RetryPolicy(max_attempts=3, backoff=Backoff.constant(2.0)))
        by_dag = dag.step(doomed.options(step_id="by_dag"), "dag")
        override = RetryPolicy(max_attempts=2, backoff=Backoff.constant(1.0))
        by_step = dag.step(doomed.options(step_id="by_step", retry=override), "step")
        run = await client.submit(dag)
        assert await run.wait() == RunStatus.FAILED
        with pytest.raises(actorq.StepFailed) as failed:
            await run.result(by_dag)
        record = await run.step(by_step)
    assert len(calls["dag"]) == 3
    assert len(calls["step"]) == 2
    assert [round(b - a, 3) for a, b in zip(calls["dag"], calls["dag"][1:], strict=False)] == [
        2.0,
        2.0,
    ]
    assert (failed.value.kind, failed.value.attempts) == ("error", 3)
    message = failed.value.message
    assert message.endswith("…")
    assert len(message.encode()) == 4096 + len("…".encode())
    assert record.status is StepStatus.FAILED
    assert (record.attempts, record.error.kind if record.error else None) == (2, "error")


async def test_a_step_outcome_is_kept_in_the_run_not_in_the_results_stream(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def one() -> int:
        return 1

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        dag.step(one)
        run = await client.submit(dag)
        assert await run.wait() == RunStatus.DONE
        info = await client.broker.stream_info(app.layout.results_stream)
    assert info.messages == 0


async def test_dag_options_are_refused_on_a_plain_enqueue(app: actorq.App, memory_url: str) -> None:
    @app.task
    async def one() -> int:
        return 1

    async with actorq.connect(app, memory_url) as client:
        with pytest.raises(ValueError, match="step_id, optional"):
            await client.enqueue(one.options(step_id="x", optional=True))
        with pytest.raises(ValueError, match="after"):
            await client.enqueue_many([one.options(after=["x"]).bind()])
