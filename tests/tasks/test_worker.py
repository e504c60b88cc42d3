"""How a worker takes, holds and gives back work: slots, leases, shutdown, disconnection."""

from __future__ import annotations

import gc

import pytest
import trio
import trio.testing

import actorq
from actorq import Backoff, Overflow, RetryPolicy
from actorq.broker import ConsumerConfig, open_broker
from actorq.testing import running_worker


async def test_concurrency_is_never_exceeded(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    running = peak = 0

    @app.task
    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    async with actorq.connect(app, memory_url) as client:
        handles = await client.enqueue_many(job.bind() for _ in range(20))
        start = trio.current_time()
        async with running_worker(client, concurrency=3):
            for handle in handles:
                await handle.result()
            elapsed = trio.current_time() - start
    assert peak == 3
    assert elapsed == pytest.approx(7.0, abs=0.01)  # ceil(20 / 3) rounds of 1 s


async def test_a_worker_holds_no_more_messages_than_free_slots(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    gate = trio.Event()
    started = 0

    @app.task
    async def wait_for_gate() -> None:
        nonlocal started
        started += 1
        await gate.wait()

    async with actorq.connect(app, memory_url) as client:
        handles = await client.enqueue_many(wait_for_gate.bind() for _ in range(10))
        async with running_worker(client, concurrency=2):
            await trio.testing.wait_all_tasks_blocked()
            info = await client.broker.consumer_info(
                app.layout.tasks_stream, app.layout.queue_consumer("default")
            )
            assert started == 2
            assert (info.num_ack_pending, info.num_pending) == (2, 8)
            gate.set()
            for handle in handles:
                await handle.result()


async def test_lease_renewal_keeps_a_long_handler_to_one_attempt(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    attempts: list[int] = []

    @app.task
    async def long_report() -> str:
        attempts.append(actorq.current_task().attempt)
        await trio.sleep(60)  # twenty times the ack wait
        return "done"

    async with (
        actorq.connect(app, memory_url) as client,
        running_worker(client, ack_wait=3.0) as worker,
    ):
        assert await client.call(long_report) == "done"
        assert worker.statistics().lease_renewals >= 19
    assert attempts == [1]


async def test_a_crashed_worker_s_message_comes_back_after_ack_wait(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    runs: list[float] = []

    @app.task
    async def fragile() -> int:
        runs.append(trio.current_time())
        return actorq.current_task().attempt

    async with actorq.connect(app, memory_url) as client:
        handle = await client.enqueue(fragile)
        # A worker that took the message and died: it never acks nor renews the lease.
        consumer = ConsumerConfig(
            name=app.layout.queue_consumer("default"),
            filter_subjects=(app.layout.priority_subjects("default"),),
            ack_wait=10.0,
        )
        async with open_broker(memory_url) as crashed:
            await crashed.ensure_consumer(app.layout.tasks_stream, consumer)
            [lost] = await crashed.fetch(app.layout.tasks_stream, consumer.name, 1, expires=1)
        taken = trio.current_time()
        async with running_worker(client, ack_wait=10.0):
            assert await handle.result() == 2
    assert lost.num_delivered == 1
    assert runs == [pytest.approx(taken + 10.0, abs=0.01)]


async def test_shutdown_lets_running_tasks_finish_and_starts_nothing_after(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    starts: list[float] = []
    finished: list[float] = []

    @app.task
    async def work() -> None:
        starts.append(trio.current_time())
        await trio.sleep(5)
        finished.append(trio.current_time())

    async with actorq.connect(app, memory_url) as client:
        await client.enqueue_many(work.bind() for _ in range(6))
        async with trio.open_nursery() as nursery:
            worker = await nursery.start(actorq.Worker(client, concurrency=2).run)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        returned = trio.current_time()
        assert not worker.ready.value
        await trio.sleep(30)  # nothing may start after the worker returned
        info = await client.broker.consumer_info(
            app.layout.tasks_stream, app.layout.queue_consumer("default")
        )
    assert len(starts) == 2 and len(finished) == 2
    assert max(starts) < returned
    assert returned == pytest.approx(5.0, abs=0.01)
    assert (info.num_pending + info.num_ack_pending, info.num_ack_pending) == (4, 0)


async def test_past_the_grace_period_tasks_are_cancelled_and_redelivered_at_once(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    attempts: list[tuple[int, float]] = []

    @app.task
    async def slow() -> str:
        attempts.append((actorq.current_task().attempt, trio.current_time()))
        await trio.sleep(100 if len(attempts) == 1 else 1)
        return "finished elsewhere"

    async with actorq.connect(app, memory_url) as client:
        handle = await client.enqueue(slow)
        async with trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client, shutdown_grace=2.0).run)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        stopped = trio.current_time()
        async with running_worker(client, ack_wait=60.0):
            assert await handle.result() == "finished elsewhere"
    assert stopped == pytest.approx(3.0, abs=0.01)
    assert attempts[1][0] == 2
    assert attempts[1][1] == pytest.approx(stopped, abs=0.01)


@pytest.mark.parametrize("overflow", list(Overflow))
async def test_enqueues_wait_in_a_bounded_buffer_while_disconnected(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str, overflow: Overflow
) -> None:
    app = actorq.App(namespace)

    @app.task
    async def note(n: int) -> int:
        return n

    outcomes: dict[int, str] = {}
    all_settled = trio.Event()
    async with actorq.connect(app, memory_url, buffer=2, overflow=overflow) as client:
        memory = client.broker

        async def enqueue(n: int) -> None:
            try:
                handle = await client.enqueue(note, n)
            except actorq.TaskDropped:
                outcomes[n] = "dropped"
            except actorq.MailboxFull:
                outcomes[n] = "rejected"
            else:
                outcomes[n] = f"stored:{await handle.result()}"
            if len(outcomes) == 3:
                all_settled.set()

        memory.disconnect()  # type: ignore[attr-defined]
        await trio.testing.wait_all_tasks_blocked()  # the outbox has seen it
        async with trio.open_nursery() as producers:
            for n in range(3):
                producers.start_soon(enqueue, n)
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(10)
            memory.reconnect()  # type: ignore[attr-defined]
            async with running_worker(client):
                await all_settled.wait()
    expected = {
        Overflow.BLOCK: {0: "stored:0", 1: "stored:1", 2: "stored:2"},
        Overflow.REJECT: {0: "stored:0", 1: "stored:1", 2: "rejected"},
        Overflow.DROP_NEWEST: {0: "stored:0", 1: "stored:1", 2: "dropped"},
        Overflow.DROP_OLDEST: {0: "dropped", 1: "stored:1", 2: "stored:2"},
    }[overflow]
    assert outcomes == expected


async def test_a_worker_pauses_while_disconnected_and_resumes(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace, default_retry=RetryPolicy(backoff=Backoff.constant(1.0)))
    ran: list[float] = []

    @app.task
    async def tick() -> None:
        ran.append(trio.current_time())

    async with actorq.connect(app, memory_url) as client, running_worker(client) as worker:
        await client.call(tick)
        handle = await client.enqueue(tick)
        await handle.result()
        memory = client.broker
        memory.disconnect()  # type: ignore[attr-defined]
        await worker.ready.wait_value(False)
        await trio.sleep(60)
        memory.reconnect()  # type: ignore[attr-defined]
        await worker.ready.wait_value(True)
        assert await client.call(tick) is None
    assert len(ran) == 3


async def test_a_worker_moves_what_is_alive_at_its_start_out_of_the_collector_s_way(
    memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    gc.unfreeze()
    try:
        async with actorq.connect(app, memory_url) as client:
            async with running_worker(client):  # tests leave the collector alone
                assert gc.get_freeze_count() == 0
            async with running_worker(client, freeze_gc=True):
                assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
