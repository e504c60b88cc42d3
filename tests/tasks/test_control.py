"""Time, dedupe, idempotency, cancellation, concurrency keys and middleware — on the memory
broker's clock, where a delay of minutes is asserted to the millisecond."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import trio
import trio.testing

import actorq
from actorq.testing import running_worker


def at_offset(client: actorq.Client, seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(client.broker.now() + seconds, dt.UTC)


async def test_delay_and_at_are_honoured_to_the_second(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    ran: dict[str, float] = {}

    @app.task
    async def remind(label: str) -> None:
        ran[label] = trio.current_time()

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        start = trio.current_time()
        delayed = await client.enqueue(remind.options(delay=90), "delay")
        timed = await client.enqueue(remind.options(delay=dt.timedelta(minutes=5)), "timedelta")
        scheduled = await client.enqueue(remind.options(at=at_offset(client, 3600)), "at")
        for handle in (delayed, timed, scheduled):
            await handle.result()
    assert {label: round(t - start, 3) for label, t in ran.items()} == {
        "delay": 90.0,
        "timedelta": 300.0,
        "at": 3600.0,
    }


async def test_two_delayed_tasks_of_one_task_both_fire(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    seen: list[int] = []

    @app.task
    async def ping(n: int) -> None:
        seen.append(n)

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        handles = [await client.enqueue(ping.options(delay=30), n) for n in (1, 2)]
        for handle in handles:
            await handle.result()
    assert sorted(seen) == [1, 2]


async def test_a_dedupe_key_inside_the_window_runs_once(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    runs = 0

    @app.task
    async def charge(order: str) -> str:
        nonlocal runs
        runs += 1
        return f"charged {order}"

    async with actorq.connect(app, memory_url) as client:
        first = await client.enqueue(charge.options(dedupe_key="order-7"), "order-7")
        again = await client.enqueue(charge.options(dedupe_key="order-7"), "order-7")
        other = await client.enqueue(charge.options(dedupe_key="order-8"), "order-8")
        assert first.id == again.id != other.id
        async with running_worker(client):
            assert await first.result() == await again.result() == "charged order-7"
            await other.result()
    assert runs == 2


async def test_an_idempotency_key_beyond_the_window_returns_the_first_result(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    runs: list[float] = []

    @app.task
    async def provision(account: str) -> dict[str, Any]:
        runs.append(trio.current_time())
        return {"account": account, "run": len(runs)}

    keyed = provision.options(idempotency_key="acct-1")
    async with actorq.connect(app, memory_url) as client, running_worker(client):
        first = await (await client.enqueue(keyed, "acct-1")).result()
        await trio.sleep(3600)  # far beyond the 2-minute dedupe window
        second = await (await client.enqueue(keyed, "acct-1")).result()
        third = await client.call(provision, "acct-1")  # no key: runs
    assert first == second == {"account": "acct-1", "run": 1}
    assert third == {"account": "acct-1", "run": 2}
    assert len(runs) == 2


async def test_a_cancelled_queued_task_never_runs(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    ran = False

    @app.task
    async def report() -> None:
        nonlocal ran
        ran = True

    async with actorq.connect(app, memory_url) as client:
        handle = await client.enqueue(report)
        delayed = await client.enqueue(report.options(delay=60))
        assert await handle.cancel()
        assert await delayed.cancel()
        with pytest.raises(actorq.TaskCancelled):
            await handle.result()
        async with running_worker(client) as worker:
            await trio.sleep(120)
            stats = worker.statistics().executions
        info = await client.broker.stream_info(app.layout.tasks_stream)
    assert not ran
    assert stats.cancelled == 2
    assert info.messages == 0


async def test_a_running_task_is_cancelled_where_it_runs_and_not_retried(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    started = trio.Event()
    saw_cancel: list[float] = []
    runs = 0

    @app.task
    async def crunch() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            saw_cancel.append(trio.current_time())
            raise

    async with (
        actorq.connect(app, memory_url) as producer,
        actorq.connect(app, memory_url) as elsewhere,
        running_worker(elsewhere),
    ):
        handle = await producer.enqueue(crunch)
        await started.wait()
        await trio.sleep(10)
        cancelled_at = trio.current_time()
        assert await handle.cancel()
        with pytest.raises(actorq.TaskCancelled):
            await handle.result()
        await trio.sleep(60)
    assert runs == 1
    assert saw_cancel == [cancelled_at]


async def test_cancelling_a_finished_task_changes_nothing(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with actorq.connect(app, memory_url) as client, running_worker(client):
        handle = await client.enqueue(add, 1, 2)
        assert await handle.result() == 3
        assert not await handle.cancel()
        assert await client.handle(handle.id, add).result() == 3


async def test_a_concurrency_key_is_never_exceeded_across_two_workers(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    @app.task
    async def sync_account(account: str) -> None:
        running[account] = running.get(account, 0) + 1
        peak[account] = max(peak.get(account, 0), running[account])
        await trio.sleep(1)
        running[account] -= 1

    async with (
        actorq.connect(app, memory_url) as one,
        actorq.connect(app, memory_url) as two,
        running_worker(one, concurrency=8),
        running_worker(two, concurrency=8),
    ):
        handles = [
            await one.enqueue(
                sync_account.options(concurrency_key=f"acct-{n % 2}", concurrency_limit=2),
                f"acct-{n % 2}",
            )
            for n in range(12)
        ]
        attempts = []
        for handle in handles:
            await handle.result()
            attempts.append((await handle.outcome()).attempts)
    assert peak == {"acct-0": 2, "acct-1": 2}
    assert attempts == [1] * 12  # waiting for a slot is not an attempt


class Recorder(actorq.Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def dispatch(self, dispatch: actorq.Dispatch, call_next: Any) -> None:
        self.log.append(f"{self.name}:dispatch")
        dispatch.headers[f"X-{self.name}"] = "seen"
        if dispatch.task.name.endswith("secret"):
            return  # dropped: never published
        await call_next(dispatch)

    async def process(self, task: actorq.TaskContext, call_next: Any) -> Any:
        self.log.append(f"{self.name}:process:before")
        if "X-short" in task.headers and self.name == "outer":
            return "short-circuited"
        value = await call_next()
        self.log.append(f"{self.name}:process:after")
        return value

    def settled(self, task: actorq.TaskContext, outcome: actorq.Settled) -> None:
        self.log.append(f"{self.name}:settled:{outcome.status}")


async def test_middleware_order_headers_and_short_circuits(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    log: list[str] = []
    app = actorq.App(namespace, middleware=[Recorder("outer", log), Recorder("inner", log)])

    @app.task
    async def headers() -> dict[str, str]:
        log.append("handler")
        return {k: v for k, v in actorq.current_task().headers.items() if k.startswith("X-")}

    @app.task
    async def secret() -> None: ...

    class ShortCircuit(actorq.Middleware):
        async def dispatch(self, dispatch: actorq.Dispatch, call_next: Any) -> None:
            if dispatch.task.name.endswith("short"):
                dispatch.headers["X-short"] = "1"
            await call_next(dispatch)

    @app.task
    async def short() -> str:
        return "ran"

    app.use(ShortCircuit())
    async with actorq.connect(app, memory_url) as client, running_worker(client) as worker:
        assert await client.call(headers) == {"X-outer": "seen", "X-inner": "seen"}
        await worker.wait_idle()  # settled() is told after the result is out
        assert log == [
            "outer:dispatch",
            "inner:dispatch",
            "outer:process:before",
            "inner:process:before",
            "handler",
            "inner:process:after",
            "outer:process:after",
            "outer:settled:succeeded",
            "inner:settled:succeeded",
        ]
        with pytest.raises(actorq.TaskDropped):
            await client.enqueue(secret)
        assert (await client.broker.stream_info(app.layout.tasks_stream)).messages == 0
        assert await client.call(short) == "short-circuited"


async def test_dispatch_middleware_can_reroute_to_another_queue(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    class ToSlowLane(actorq.Middleware):
        async def dispatch(self, dispatch: actorq.Dispatch, call_next: Any) -> None:
            dispatch.queue = "slow"
            await call_next(dispatch)

    app = actorq.App(namespace)
    app.use(ToSlowLane())

    @app.task
    async def where() -> str:
        return actorq.current_task().queue

    async with actorq.connect(app, memory_url) as client, running_worker(client, queues=["slow"]):
        assert await client.call(where) == "slow"


async def test_periodic_tasks_fire_once_per_tick_across_workers_and_can_be_removed(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    ticks: list[float] = []

    @app.task
    async def heartbeat(source: str) -> None:
        ticks.append(trio.current_time())

    periodic = app.periodic("*/10 * * * * *", heartbeat, "cron")
    async with (
        actorq.connect(app, memory_url) as one,
        actorq.connect(app, memory_url) as two,
        running_worker(one),
        running_worker(two),
    ):
        [installed] = await one.periodic_schedules()
        assert (installed.id, installed.schedule, installed.task) == (
            periodic.id,
            "*/10 * * * * *",
            heartbeat.name,
        )
        await trio.sleep(60)
        assert await two.remove_periodic(periodic.id)
        assert await one.periodic_schedules() == []
        fired = len(ticks)
        await trio.sleep(60)
    # Six ticks in a minute; one fewer when the install lands in the last half second
    # before a tick (the server counts from the install time rounded to the second).
    assert fired in (5, 6, 7)
    assert len(ticks) == fired
    spacing = {round(b - a) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert spacing == {10}


def test_a_bad_schedule_is_refused_when_registered() -> None:
    app = actorq.App("badcron")

    @app.task
    async def nightly() -> None: ...

    with pytest.raises(ValueError, match=r"invalid schedule '\* \* \* \* \*': .*6 fields"):
        app.periodic("* * * * *", nightly)
    with pytest.raises(ValueError, match="fires once"):
        app.periodic("@at 2030-01-01T00:00:00Z", nightly)
    with pytest.raises(ValueError, match="at least 1s"):
        app.periodic("@every 10ms", nightly)


async def test_priorities_run_urgent_work_first_without_starving_the_rest(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)
    order: list[str] = []

    @app.task
    async def work(kind: str) -> None:
        order.append(kind)
        await trio.sleep(1)

    async with actorq.connect(app, memory_url) as client:
        handles = await client.enqueue_many(work.bind("low") for _ in range(20))
        handles += await client.enqueue_many(
            work.options(priority=3).bind("high") for _ in range(20)
        )
        async with running_worker(client, concurrency=1):
            for handle in handles:
                await handle.result()
    pattern = "".join("H" if kind == "high" else "l" for kind in order)
    # Three urgent tasks for every other one while both wait: first, but never starving.
    assert pattern == "l" + "HHHl" * 6 + "HH" + "l" * 13


async def test_an_urgent_task_waits_for_no_idle_queue(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    app = actorq.App(namespace)

    @app.task
    async def urgent() -> float:
        return trio.current_time()

    async with actorq.connect(app, memory_url) as client, running_worker(client, concurrency=1):
        await trio.sleep(30)  # every level idle; the default level holds the only slot
        enqueued = trio.current_time()
        ran = await client.call(urgent.options(priority=2))
    assert ran - enqueued < 0.1
