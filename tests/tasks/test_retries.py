"""Retries, timeouts, deadlines and the dead-letter queue, on the memory broker's clock.

Under ``autojump_clock`` an hour of backoff takes milliseconds, and the times a handler sees
are exact: these tests assert the schedule itself.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import trio
import trio.testing

import actorq
from actorq import Backoff, RetryPolicy
from actorq._wire import H_ID, H_TASK
from actorq.broker import MSG_ID, Message
from actorq.testing import running_worker


def spacing(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]


async def test_fail_fail_succeed(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls: list[float] = []

    @app.task(retry=RetryPolicy(max_attempts=5, backoff=Backoff.constant(2.0)))
    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return f"ok on attempt {actorq.current_task().attempt}"

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        assert await client.call(flaky) == "ok on attempt 3"
    assert spacing(calls) == [2.0, 2.0]


async def test_max_attempts_is_exact_and_the_failure_says_why(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls = 0

    @app.task(retry=RetryPolicy(max_attempts=4, backoff=Backoff.constant(1.0)))
    async def doomed(n: int) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"bad input {n}")

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        handle = await client.enqueue(doomed, 7)
        with pytest.raises(actorq.TaskFailed) as failure:
            await handle.result()
        letters = await client.dlq.list()
    assert calls == 4
    error = failure.value
    assert (error.kind, error.attempts, error.task_id) == ("error", 4, handle.id)
    assert error.message == "ValueError: bad input 7"
    assert error.type == "ValueError"
    assert "raise ValueError" in error.remote_traceback
    assert [(letter.task_id, letter.attempts) for letter in letters] == [(handle.id, 4)]


async def test_the_default_policy_retries_five_times_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls: list[float] = []

    @app.task
    async def always_fails() -> None:
        calls.append(trio.current_time())
        raise RuntimeError("no")

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        with pytest.raises(actorq.TaskFailed):
            await client.call(always_fails)
    assert spacing(calls) == [1.0, 2.0, 4.0, 8.0]


async def test_non_retryable_errors_and_no_retry_run_once(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls: list[str] = []

    @app.task(retry=RetryPolicy(non_retryable=(KeyError,)))
    async def lookup(key: str) -> None:
        calls.append(key)
        raise KeyError(key)

    @app.task
    async def refuse() -> None:
        calls.append("refuse")
        raise actorq.NoRetry(PermissionError("never"))

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        with pytest.raises(actorq.TaskFailed, match="KeyError"):
            await client.call(lookup, "k")
        with pytest.raises(actorq.TaskFailed, match="PermissionError: never") as failure:
            await client.call(refuse)
    assert calls == ["k", "refuse"]
    assert failure.value.attempts == 1


async def test_retry_with_a_delay_short_and_long(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls: list[float] = []

    @app.task
    async def poll(delay: float) -> int:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise actorq.Retry(delay=delay)
        return actorq.current_task().attempt

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        assert await client.call(poll, 3.0) == 3  # naked with a delay
        calls.clear()
        assert await client.call(poll, 600.0) == 3  # acked and republished as a schedule
    assert spacing(calls) == [600.0, 600.0]


async def test_an_hour_of_exponential_backoff_is_kept_to_the_second(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    calls: list[float] = []

    @app.task(retry=RetryPolicy(max_attempts=7, backoff=Backoff.exponential(60.0, cap=900.0)))
    async def stubborn() -> int:
        calls.append(trio.current_time())
        if len(calls) < 7:
            raise RuntimeError("later")
        return len(calls)

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        start = trio.current_time()
        assert await client.call(stubborn) == 7
    assert spacing(calls) == [60.0, 120.0, 240.0, 480.0, 900.0, 900.0]
    assert trio.current_time() - start == pytest.approx(2700.0, abs=1.0)


async def test_a_timeout_cancels_the_attempt(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    cancelled: list[float] = []

    @app.task(timeout=5.0, retry=RetryPolicy(max_attempts=2, backoff=Backoff.constant(1.0)))
    async def hangs() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        start = trio.current_time()
        with pytest.raises(actorq.TaskFailed) as failure:
            await client.call(hangs)
    assert (failure.value.kind, failure.value.attempts) == ("timeout", 2)
    assert [round(t - start, 3) for t in cancelled] == [5.0, 11.0]


async def test_a_sync_handler_that_overruns_keeps_its_slot(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    import threading

    app = actorq.App(namespace)
    release = threading.Event()

    @app.task(timeout=5.0, retry=RetryPolicy.never())
    def stuck() -> str:
        release.wait(30)
        return "finally"

    async with actorq.connect(app, memory_url) as client, running_worker(client) as worker:
        with pytest.raises(actorq.TaskFailed) as failure:
            await client.call(stuck)
        assert failure.value.kind == "timeout"
        stats = worker.statistics()
        assert (stats.busy, stats.executions.overrunning_threads) == (1, 1)
        release.set()
        await worker.wait_idle()
        assert worker.statistics().executions.overrunning_threads == 0


async def test_a_passed_deadline_fails_without_running(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    ran = False

    @app.task
    async def report() -> None:
        nonlocal ran
        ran = True

    async with actorq.connect(app, memory_url) as client:
        handle = await client.enqueue(report.options(deadline=dt.timedelta(seconds=10)))
        await trio.sleep(20)
        async with running_worker(client):
            with pytest.raises(actorq.TaskFailed, match="deadline") as failure:
                await handle.result()
    assert not ran
    assert failure.value.kind == "deadline"


async def test_an_unknown_task_is_retried_then_dead_lettered(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(
        namespace, default_retry=RetryPolicy(max_attempts=3, backoff=Backoff.constant(5.0))
    )

    @app.task
    async def known() -> str:
        return "still serving"

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        ghost = await client.enqueue("reports.ghost")
        with pytest.raises(actorq.TaskFailed) as failure:
            await ghost.result()
        assert await client.call(known) == "still serving"
        [letter] = await client.dlq.list()
    assert (failure.value.kind, failure.value.attempts) == ("unknown_task", 3)
    assert "no task named 'reports.ghost'" in failure.value.message
    assert (letter.task, letter.error.kind, letter.attempts) == ("reports.ghost", "unknown_task", 3)


async def test_malformed_messages_go_to_the_dlq_and_the_worker_keeps_running(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    subject = app.layout.task_subject("default", add.name)
    async with actorq.connect(app, memory_url) as client, running_worker(client):
        broker = client.broker
        await broker.publish(Message(subject, b"\xff not even json"))
        bad_args = client.new_task_id()
        await broker.publish(
            Message(subject, b'{"args": ["one", 2]}', {H_TASK: add.name, H_ID: bad_args})
        )
        with pytest.raises(actorq.TaskFailed, match="argument 'x'"):
            await client.handle(bad_args, add).result()
        assert await client.call(add, 1, 2) == 3
        letters = await client.dlq.list()
    assert [letter.error.kind for letter in letters] == ["decode", "decode"]
    assert "missing header(s) Actorq-Task, Actorq-Id" in letters[0].error.message
    assert letters[0].payload_encoding == "base64"
    assert letters[0].original_payload() == b"\xff not even json"


async def test_dead_letters_keep_payload_and_headers_and_can_be_requeued(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    healthy = False

    @app.task(retry=RetryPolicy.never())
    async def charge(account: str, cents: int) -> str:
        if not healthy:
            raise ConnectionError("payment service down")
        return f"charged {account} {cents}"

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        handle = await client.enqueue(charge, "acct-1", 250)
        with pytest.raises(actorq.TaskFailed):
            await handle.result()
        [letter] = await client.dlq.list()
        stored = await client.broker.get_message(app.layout.dlq_stream, letter.seq)
        assert stored is not None
        assert stored.headers[MSG_ID] != handle.id
        assert json.loads(letter.payload) == {"args": ["acct-1", 250], "kwargs": {}}
        assert letter.headers[H_TASK] == charge.name
        assert (letter.queue, letter.error.message) == (
            "default",
            "ConnectionError: payment service down",
        )
        assert (await client.dlq.get(letter.seq)).task_id == handle.id

        healthy = True
        again = await client.dlq.requeue(letter.seq)
        assert again is not None and again.id == handle.id
        assert await again.result() == "charged acct-1 250"
        assert await client.dlq.list() == []
        with pytest.raises(actorq.NotFound):
            await client.dlq.requeue(letter.seq)


async def test_purging_the_dlq_and_a_queue(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)

    @app.task(retry=RetryPolicy.never())
    async def broken() -> None:
        raise RuntimeError("x")

    async with actorq.connect(app, memory_url) as client:
        for _ in range(3):
            await client.enqueue(broken)
        assert await client.purge_queue("default") == 3
        handles = [await client.enqueue(broken) for _ in range(2)]
        async with running_worker(client):
            for handle in handles:
                with pytest.raises(actorq.TaskFailed):
                    await handle.result()
        assert len(await client.dlq.list()) == 2
        assert await client.dlq.purge() == 2
        assert await client.dlq.list() == []


async def test_a_result_too_large_fails_clearly(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace, max_result_size=1000)

    @app.task
    async def big() -> str:
        return "x" * 5000

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        with pytest.raises(actorq.TaskFailed, match="max_result_size of 1000") as failure:
            await client.call(big)
    assert failure.value.kind == "result_too_large"
