"""Steering a run on the memory broker's clock: cancel, pause and resume, signals and
breakpoints, and their independence (ebind's scenario catalogue, sections F and G)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from dagtools import dag_worker

import actorq
from actorq import RetryPolicy, RunStatus, StepStatus


async def test_cancel_mid_flight(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.Event()
    ran: list[str] = []

    @app.task
    async def slow() -> str:
        started.set()
        await trio.sleep(5)
        ran.append("slow")
        return "finished"

    @app.task
    async def after(x: str) -> str:
        ran.append("after")
        return x

    async with actorq.connect(app, memory_url) as client, dag_worker(client) as worker:
        dag = actorq.DAG()
        a = dag.step(slow)
        b = dag.step(after, a)
        run = await client.submit(dag)
        await started.wait()
        assert await run.cancel() is True
        assert await run.status() == RunStatus.CANCELLED
        with pytest.raises(actorq.StepCancelled):
            await run.result(b)
        assert await run.result(a) == "finished"  # the running step finished, recorded
        await worker.wait_idle()
        await trio.sleep(5)  # sweeps: nothing new is scheduled
        assert await run.cancel() is False  # a no-op on an ended run
        assert await run.wait() == RunStatus.CANCELLED
        steps = await run.steps()
    assert ran == ["slow"]
    assert steps[b.id].status is StepStatus.CANCELLED
    assert steps[a.id].status is StepStatus.DONE


async def test_pause_holds_pending_steps_and_resume_goes_on(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.Event()
    ran: list[str] = []

    @app.task
    async def step(name: str, seconds: float) -> str:
        if name == "a":
            started.set()
        await trio.sleep(seconds)
        ran.append(name)
        return name

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(step.options(step_id="a"), "a", 4)
        b = dag.step(step.options(step_id="b", after=[a]), "b", 0)
        run = await client.submit(dag)
        await started.wait()
        assert await run.pause() == RunStatus.PAUSING  # a is in flight
        assert await run.result(a) == "a"
        await trio.sleep(3)
        assert await run.status() == RunStatus.PAUSED
        steps = await run.steps()
        assert (steps["b"].status, steps["b"].held) == (StepStatus.PENDING, True)
        assert await run.pause() == RunStatus.PAUSED  # idempotent
        await trio.sleep(30)
        assert ran == ["a"]  # nothing is dispatched while paused
        assert await run.resume() == RunStatus.RUNNING
        assert await run.result(b) == "b"
        assert await run.wait() == RunStatus.DONE
        assert await run.resume() == RunStatus.DONE  # an ended run is left as it is


async def test_pause_with_nothing_in_flight_is_paused_at_once_and_resume_repairs(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def one() -> int:
        return 1

    async with actorq.connect(app, memory_url) as client:
        dag = actorq.DAG()
        dag.breakpoint("hold", before=dag.step(one))
        run = await client.submit(dag, breakpoints=["hold"])  # nothing runs: no worker either
        assert await run.pause() == RunStatus.PAUSED
        # A resume that crashed after the meta: the repair releases the holds left behind.
        await run.resume()
        steps = await run.steps()
        assert not any(s.held for s in steps.values())
        assert await run.resume() == RunStatus.RUNNING


async def test_resume_applies_the_skips_missed_while_paused(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.Event()

    @app.task(retry=RetryPolicy.never())
    async def fails() -> None:
        started.set()
        await trio.sleep(2)
        raise RuntimeError("boom")

    @app.task
    async def then() -> str:
        return "then"

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(fails)
        b = dag.step(then.options(after=[a]))
        run = await client.submit(dag)
        await started.wait()
        await run.pause()
        await trio.sleep(5)
        assert await run.status() == RunStatus.PAUSED
        assert (await run.step(b)).status is StepStatus.PENDING
        await run.resume()
        assert await run.wait() == RunStatus.FAILED
        assert (await run.step(b)).status is StepStatus.SKIPPED


async def test_signals_first_delivery_wins_and_early_ones_are_kept(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def build() -> int:
        return 42

    @app.task
    async def deploy(approval: dict[str, str], build: int) -> str:
        return f"{approval['approver']} deployed {build}"

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        b = dag.step(build)
        d = dag.step(deploy, dag.signal_ref("approval"), b)
        run = await client.submit(dag)
        assert await run.result(b) == 42
        await trio.sleep(10)
        assert (await run.step(d)).status is StepStatus.PENDING  # waits for its signal
        assert await run.signal("approval", {"approver": "eugene"}) is True
        assert await run.signal("approval", {"approver": "mallory"}) is False
        assert await run.result(d) == "eugene deployed 42"
        assert await run.wait() == RunStatus.DONE
        assert await run.signal("approval", {"approver": "late"}) is False  # ended run
        with pytest.raises(ValueError, match="non-empty"):
            await run.signal("", 1)
        with pytest.raises(actorq.NotFound):
            await client.dag_run("nosuchrun").signal("approval", 1)


async def test_a_dynamic_step_consumes_a_buffered_signal_and_waits_for_all_of_its_signals(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def echo(value: str) -> str:
        return value

    @app.task
    async def both(a: str, b: str) -> str:
        return a + b

    @app.task
    async def spawn() -> None:
        dag = actorq.current_dag()
        await dag.step(echo.options(step_id="child"), dag.signal_ref("go"))

    async with actorq.connect(app, memory_url) as client:
        dag = actorq.DAG()
        dag.step(spawn)
        run = await client.submit(dag)
        assert await run.signal("go", "buffered") is True  # before any step waits for it
        async with dag_worker(client):
            assert await run.result("child") == "buffered"
            assert await run.wait() == RunStatus.DONE

            dag = actorq.DAG()
            pair = dag.step(both, dag.signal_ref("one"), dag.signal_ref("two"))
            run = await client.submit(dag)
            await run.signal("one", "1")
            await trio.sleep(5)
            assert (await run.step(pair)).status is StepStatus.PENDING
            await run.signal("two", "2")
            assert await run.result(pair) == "12"


async def test_breakpoints_before_and_after(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    ran: list[str] = []

    @app.task
    async def step(name: str, x: int) -> int:
        ran.append(name)
        return x + 1

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        a = dag.step(step.options(step_id="a"), "a", 1)
        b = dag.step(step.options(step_id="b"), "b", a)
        c = dag.step(step.options(step_id="c"), "c", b)
        side = dag.step(step.options(step_id="side"), "side", 10)
        dag.breakpoint("review", before=b)
        dag.breakpoint("audit", after=c)
        final = dag.step(step.options(step_id="final"), "final", c)
        dag.breakpoint("unarmed", before=side)
        run = await client.submit(dag, breakpoints=["review", "audit"])
        assert await run.result(a) == 2
        assert await run.result(side) == 11  # an unarmed label stops nothing
        await trio.sleep(10)
        assert ran == ["a", "side"] or ran == ["side", "a"]
        assert (await run.step(b)).status is StepStatus.PENDING
        assert await run.status() == RunStatus.RUNNING  # blocked, not finished
        assert await run.release("review") == 1
        assert await run.release("review") == 0  # a repeat releases nothing
        assert await run.result(c) == 4  # its result is stored...
        await trio.sleep(10)
        assert "final" not in ran  # ...while its dependents wait at the after-breakpoint
        assert await run.release("audit") == 1
        assert await run.result(final) == 5
        assert await run.wait() == RunStatus.DONE
        assert await run.release("audit") == 0  # an ended run


async def test_pause_breakpoints_and_signals_are_independent_fences(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def echo(value: str) -> str:
        return value

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        gated = dag.step(echo.options(step_id="gated"), dag.signal_ref("go"))
        dag.breakpoint("bp", before=gated)
        run = await client.submit(dag, breakpoints=["bp"])
        await run.pause()
        assert await run.release("bp") == 1  # the breakpoint alone
        await trio.sleep(5)
        record = await run.step(gated)
        assert (record.status, record.held, record.released_before) == (
            StepStatus.PENDING, True, True,
        )  # fmt: skip
        await run.resume()  # the pause alone: the signal still holds it
        await trio.sleep(5)
        assert (await run.step(gated)).status is StepStatus.PENDING
        assert await run.signal("go", "now") is True
        assert await run.result(gated) == "now"
