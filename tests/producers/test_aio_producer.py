"""The asyncio producer against a real nats-server and a real worker (in a thread).

Each test is a plain function running its body with ``asyncio.run``: the producer lives on
the asyncio loop the test creates, exactly as in an asyncio web app.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from producer_tasks import Point, add, double, fail, point, sleep, stamp

import actorq
import actorq.aio
from actorq import App
from actorq.testing import WorkerThread, isolated_app, run_server, worker_thread

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Coroutine

T = TypeVar("T")

pytestmark = pytest.mark.integration


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a test body on a fresh asyncio loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await coroutine

    return asyncio.run(bounded())


def test_round_trip_by_task_and_by_name(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    async def body() -> None:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            handle = await producer.enqueue(add, 1, 2)
            assert await handle.result(timeout=10) == 3
            assert await (await producer.enqueue("add", 20, 22)).result(timeout=10) == 42
            assert await producer.call(double, 21) == 42  # a plain def, in a worker thread
            assert await producer.call(point, 1, 2) == Point(1, 2)  # structured to the type
            assert handle.done
            assert handle.id.startswith(producer.new_task_id()[:12])  # the producer's origin

    run(body())


def test_enqueue_many(producer_app: App, nats_url: str, worker: WorkerThread) -> None:
    async def body() -> None:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            handles = await producer.enqueue_many(add.bind(i, i) for i in range(200))
            assert len({h.id for h in handles}) == 200
            results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
            assert results == [2 * i for i in range(200)]
            assert await producer.enqueue_many([]) == []

    run(body())


def test_bad_arguments_raise_before_anything_is_published(producer_app: App, nats_url: str) -> None:
    # Its own namespace and no worker: anything published would stay in the stream.
    quiet = isolated_app(producer_app)

    async def body() -> None:
        async with actorq.aio.connect(quiet, nats_url) as producer:
            with pytest.raises(TypeError, match=r"add\(\): argument 'x' expected int, got str"):
                await producer.enqueue(add, "1", 2)
            with pytest.raises(TypeError, match=r"add\(\): missing a required argument: 'y'"):
                await producer.enqueue(add, 1)
            with pytest.raises(TypeError, match=r"add\(\): too many positional arguments"):
                await producer.enqueue("add", 1, 2, 3)  # a registered name is checked too
            with pytest.raises(TypeError, match="expected a task or a task name"):
                await producer.enqueue(42)  # type: ignore[call-overload]
            with pytest.raises(ValueError, match="invalid task name"):
                await producer.enqueue("no spaces allowed")
            info = await producer._admin.stream_info(quiet.layout.tasks_stream)
            assert info.messages == 0

    run(body())


def test_a_result_by_id_from_another_producer_live_and_stored(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    async def body() -> None:
        async with (
            actorq.aio.connect(producer_app, nats_url) as first,
            actorq.aio.connect(producer_app, nats_url) as second,
        ):
            slow = await first.enqueue(sleep, 0.3)
            done = await first.enqueue(add, 2, 3)
            assert await done.result(timeout=10) == 5
            # Stored before the handle exists: read from the results stream.
            assert await second.handle(done.id, add).result(timeout=5) == 5
            # Not finished yet: pushed live on its own subject.
            other = second.handle(slow.id, "sleep")
            assert not other.done
            assert await other.result(timeout=10) == 0.3
            # Without a task the value is plain JSON.
            assert await second.handle(done.id).result(timeout=5) == 5
            record = await second.handle(done.id).outcome(timeout=5)
            assert (record.status, record.task, record.attempts) == ("succeeded", "add", 1)
            with pytest.raises(ValueError, match="invalid task id"):
                second.handle("not-an-id")

    run(body())


def test_result_timeout_leaves_the_task_running(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    async def body() -> None:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            handle = await producer.enqueue(sleep, 0.5)
            started = time.monotonic()
            with pytest.raises(actorq.ResultTimeout, match=r"no result for task sleep .* 0\.1 s"):
                await handle.result(timeout=0.1)
            assert time.monotonic() - started < 0.4
            assert await handle.result(timeout=10) == 0.5
            never = producer.handle("0" * 32)
            with pytest.raises(TimeoutError):  # ResultTimeout is a TimeoutError too
                await never.outcome(timeout=0.05)

    run(body())


def test_a_failed_task_raises_task_failed(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    async def body() -> None:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            handle = await producer.enqueue(fail, "on purpose")
            with pytest.raises(actorq.TaskFailed) as caught:
                await handle.result(timeout=10)
            failure = caught.value
            assert (failure.kind, failure.attempts, failure.task) == ("error", 2, "fail")
            assert failure.message == "ValueError: on purpose"
            assert failure.type == "ValueError"
            assert "on purpose" in failure.remote_traceback
            record = await handle.outcome()
            assert record.status == "failed"

    run(body())


def test_options_and_dispatch_middleware_travel_as_on_the_trio_client(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    async def body() -> None:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            assert await producer.call(stamp) == "stamped"  # the app's dispatch middleware
            started = time.monotonic()
            delayed = await producer.enqueue(add.options(delay=0.5), 1, 1)  # a server schedule
            assert await delayed.result(timeout=10) == 2
            assert time.monotonic() - started >= 0.45
            keyed = add.options(dedupe_key="once")
            first = await producer.enqueue(keyed, 1, 2)
            again = await producer.enqueue(keyed, 1, 2)
            assert first.id == again.id  # a keyed id: not this producer's origin
            assert await again.result(timeout=10) == 3

    run(body())


def test_a_trio_client_awaits_a_task_the_asyncio_producer_enqueued(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    import trio

    async def produce() -> str:
        async with actorq.aio.connect(producer_app, nats_url) as producer:
            return (await producer.enqueue(add, 4, 5)).id

    task_id = run(produce())

    async def consume() -> int:
        async with actorq.connect(producer_app, nats_url) as client:
            with trio.fail_after(10):
                return await client.handle(task_id, add).result()

    assert trio.run(consume) == 9


def test_urls_that_name_no_nats_server_are_refused(producer_app: App) -> None:
    async def body(url: str) -> None:
        async with actorq.aio.connect(producer_app, url):
            raise AssertionError("connected")

    with pytest.raises(actorq.InvalidUrl, match="memory broker lives inside one trio program"):
        run(body("memory://test"))
    with pytest.raises(actorq.InvalidUrl, match="unsupported broker URL 'http://x'"):
        run(body("http://x"))


def test_an_unreachable_server_fails_fast_naming_the_url(producer_app: App) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def body() -> None:
        async with actorq.aio.connect(producer_app, f"nats://u:secret@127.0.0.1:{port}"):
            raise AssertionError("connected")

    started = time.monotonic()
    with pytest.raises(actorq.NotConnected) as caught:
        run(body())
    assert time.monotonic() - started < 5
    assert f"nats://u:***@127.0.0.1:{port}" in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.slow
def test_results_and_enqueues_survive_a_server_restart(
    producer_app: App, tmp_path: pathlib.Path
) -> None:
    # A server of its own (the session's must stay up): a result published while the
    # producer is away is read back from the results stream after it reconnects, and an
    # enqueue made while the server is down is stored once it is back.
    mine = isolated_app(producer_app)
    with run_server(store_dir=tmp_path) as server, worker_thread(mine, server.url):

        async def body() -> None:
            async with actorq.aio.connect(
                mine, server.url, reconnect_time_wait=0.1, publish_timeout=30
            ) as producer:
                running = await producer.enqueue(sleep, 1.0)
                await asyncio.to_thread(server.kill)
                assert not producer.connected
                await asyncio.to_thread(server.restart)
                # Whichever reconnects first, the result reaches the handle: live, or read
                # from the results stream after the producer's reconnect.
                assert await running.result(timeout=20) == 1.0
                await asyncio.to_thread(server.kill)
                later = asyncio.ensure_future(producer.enqueue(add, 1, 2))
                await asyncio.sleep(0.3)
                assert not later.done()  # waits for the server, does not fail
                await asyncio.to_thread(server.restart)
                assert await (await later).result(timeout=20) == 3

        run(body())
