"""Recovery on the memory broker's clock: the leader's sweep, phantom-running steps, outcomes
that fail to persist, a scheduler taking over, and steps added while a run runs."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from dagtools import FAST, dag_worker

import actorq
from actorq import BrokerError, RetryPolicy, RunStatus, StepStatus
from actorq._execution import Failed, Succeeded
from actorq.broker import Message


async def test_the_sweep_schedules_a_step_stranded_while_no_leader_existed(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    started: dict[str, float] = {}

    @app.task
    async def step(name: str) -> str:
        started[name] = trio.current_time()
        return name

    async with actorq.connect(app, memory_url) as client, trio.open_nursery() as nursery:
        # Someone else holds the scheduler's role: the worker's candidate cannot lead.
        squatter = client.leader("dags", ttl=2)
        scope = trio.CancelScope()

        async def squat(*, task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await squatter.run(task_status=task_status)

        await nursery.start(squat)
        async with dag_worker(client) as worker:
            dag = actorq.DAG()
            a = dag.step(step.options(step_id="a"), "a")
            b = dag.step(step.options(step_id="b", after=[a]), "b")
            run = await client.submit(dag)
            assert await run.result(a) == "a"  # the submit dispatched it
            await trio.sleep(20)
            assert (await run.step(b)).status is StepStatus.PENDING
            scheduler = worker._dags.scheduler
            assert scheduler is not None
            assert scheduler.sweeps == 0
            released = trio.current_time()
            scope.cancel()  # the squatter leaves (and releases the role)
            assert await run.result(b) == "b"
            assert await run.wait() == RunStatus.DONE
            assert started["a"] < released <= started["b"] < released + 0.1
            await trio.sleep(3.5)
            assert scheduler.sweeps == 4  # one on gaining leadership, then one a second


async def test_a_phantom_running_step_is_enqueued_again(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def one() -> int:
        return 1

    async with actorq.connect(app, memory_url) as client:
        dag = actorq.DAG()
        s = dag.step(one)
        run = await client.submit(dag)
        assert (await run.step(s)).status is StepStatus.RUNNING
        assert await client.purge_queue("default") == 1  # its task message is gone
        dispatched = trio.current_time()
        async with dag_worker(client):
            assert await run.result(s) == 1
            recovered = trio.current_time()
            record = await run.step(s)
    # Not before phantom_after (3 s), and only once missing on two sweeps (1 s apart).
    assert dispatched + FAST.phantom_after <= recovered <= dispatched + FAST.phantom_after + 3
    assert (record.generation, record.lost, record.attempts) == (2, 1, 1)


async def test_a_step_whose_message_keeps_disappearing_fails_as_lost(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task(queue="void")
    async def one() -> int:
        return 1

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        async with trio.open_nursery() as nursery:

            async def purge_forever() -> None:
                while True:
                    await client.purge_queue("void")
                    await trio.sleep(0.5)

            nursery.start_soon(purge_forever)
            dag = actorq.DAG()
            s = dag.step(one)
            run = await client.submit(dag)
            with pytest.raises(actorq.StepFailed) as failed:
                await run.result(s)
            nursery.cancel_scope.cancel()
        assert await run.wait() == RunStatus.FAILED
    assert failed.value.kind == "lost"


class FailingOnce:
    """A step hook that fails to persist the first final outcome (through either way of
    recording it), then works."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failures = 0

    def is_step(self, envelope: Any) -> bool:
        return bool(self.inner.is_step(envelope))

    async def settle(self, envelope: Any, attempt: int, outcome: Any) -> None:
        final = isinstance(outcome, Succeeded) or (
            isinstance(outcome, Failed) and outcome.retry_delay is None
        )
        if final and not self.failures:
            self.failures += 1
            raise BrokerError("the KV store is unreachable")
        await self.inner.settle(envelope, attempt, outcome)

    def success_message(self, envelope: Any, attempt: int, value: Any) -> Message | None:
        # A success is recorded by a publish whose PubAck settles the message: no stream
        # listens on this subject, so the first one is refused and the message naked.
        if not self.failures:
            self.failures += 1
            return Message("nowhere.for.this.outcome", b"{}")
        return self.inner.success_message(envelope, attempt, value)  # type: ignore[no-any-return]


async def test_an_outcome_that_fails_to_persist_is_not_acked(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[int] = []

    @app.task
    async def once() -> int:
        calls.append(actorq.current_task().attempt)
        return 7

    async with actorq.connect(app, memory_url) as client, dag_worker(client) as worker:
        hook = FailingOnce(worker._executor.steps)
        worker._executor.steps = hook
        dag = actorq.DAG()
        s = dag.step(once)
        run = await client.submit(dag)
        assert await run.result(s) == 7
        record = await run.step(s)
    assert hook.failures == 1
    assert calls == [1, 2]  # redelivered: the handler ran again, the outcome stored once
    assert (record.status, record.attempts, record.generation) == (StepStatus.DONE, 2, 1)


async def test_another_worker_takes_over_scheduling(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    gates = {name: trio.Event() for name in "abc"}

    @app.task
    async def step(name: str) -> str:
        await gates[name].wait()
        return name

    async with actorq.connect(app, memory_url) as client, trio.open_nursery() as nursery:
        leader_scope = trio.CancelScope()

        async def lead(*, task_status: trio.TaskStatus[actorq.Worker]) -> None:
            with leader_scope:
                async with dag_worker(client) as worker:
                    task_status.started(worker)
                    await trio.sleep_forever()

        leader = await nursery.start(lead)
        async with dag_worker(client) as follower:
            assert leader._dags.scheduler is not None
            assert follower._dags.scheduler is not None
            assert leader._dags.scheduler.elector.is_leader.value
            assert not follower._dags.scheduler.elector.is_leader.value
            dag = actorq.DAG()
            a = dag.step(step.options(step_id="a"), "a")
            b = dag.step(step.options(step_id="b", after=[a]), "b")
            c = dag.step(step.options(step_id="c", after=[b]), "c")
            run = await client.submit(dag)
            gates["a"].set()
            assert await run.result(a) == "a"
            leader_scope.cancel()  # it stops gracefully and gives the role up
            await follower._dags.scheduler.elector.is_leader.wait_value(True)
            gates["b"].set()
            gates["c"].set()
            assert await run.result(c) == "c"
            assert await run.wait() == RunStatus.DONE


async def test_steps_added_by_a_running_step(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    attempts: list[int] = []

    @app.task
    async def square(x: int) -> int:
        return x * x

    @app.task
    async def total(xs: list[int], bonus: int) -> int:
        return sum(xs) + bonus

    @app.task(retry=RetryPolicy(max_attempts=3, backoff=actorq.Backoff.constant(1.0)))
    async def split(n: int) -> int:
        attempts.append(actorq.current_task().attempt)
        dag = actorq.current_dag()
        parts = [await dag.step(square, i) for i in range(n)]
        await dag.step(total.options(step_id="total"), parts, dag.parent)
        if len(attempts) == 1:
            raise RuntimeError("fails once, after adding its steps")
        return 100

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        dag = actorq.DAG()
        dag.step(split.options(step_id="split"), 3)
        run = await client.submit(dag)
        assert await run.result("total") == 0 + 1 + 4 + 100
        assert await run.wait() == RunStatus.DONE
        steps = await run.steps()
    assert attempts == [1, 2]
    assert sorted(steps) == sorted(
        ["split", "total", f"split.{square.name}", f"split.{square.name}-2",
         f"split.{square.name}-3"]
    )  # fmt: skip
    assert steps["total"].parent == "split"
    assert "split" in steps["total"].requires


async def test_adding_a_step_to_a_cancelled_run_is_refused(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    cancelled = trio.Event()
    started = trio.Event()
    refused: list[BaseException] = []

    @app.task
    async def one() -> int:
        return 1

    @app.task
    async def adder() -> None:
        started.set()
        await cancelled.wait()
        try:
            await actorq.current_dag().step(one)
        except actorq.StepCancelled as exc:
            refused.append(exc)

    async with actorq.connect(app, memory_url) as client, dag_worker(client) as worker:
        dag = actorq.DAG()
        dag.step(adder)
        run = await client.submit(dag)
        await started.wait()
        await run.cancel()
        cancelled.set()
        await worker.wait_idle()
        steps = await run.steps()
    assert len(refused) == 1
    assert "cancelled" in str(refused[0])
    assert len(steps) == 1


async def test_current_dag_outside_a_step(
    app: actorq.App, memory_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    @app.task
    async def plain() -> str:
        try:
            actorq.current_dag()
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    async with actorq.connect(app, memory_url) as client, dag_worker(client):
        assert "not running as a DAG step" in await client.call(plain)
    with pytest.raises(RuntimeError, match="outside a task handler"):
        actorq.current_dag()
