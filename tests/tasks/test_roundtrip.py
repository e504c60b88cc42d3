"""Enqueue, run, await: the task queue's round trip, on both brokers."""

from __future__ import annotations

import threading
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actorq
from actorq.testing import running_worker


@attrs.frozen
class User:
    name: str
    tags: tuple[str, ...] = ()


@attrs.frozen
class Profile:
    user: User
    score: float


def build_app(namespace: str) -> tuple[actorq.App, Any]:
    app = actorq.App(namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def enrich(user: User, bonus: float = 0.5) -> Profile:
        return Profile(user, len(user.tags) + bonus)

    @app.task(queue="media")
    async def resize(path: str) -> str:
        return f"resized:{path}"

    @app.task
    def blocking(value: int) -> dict[str, Any]:
        return {
            "value": value * 2,
            "in_thread": threading.current_thread() is not threading.main_thread(),
        }

    @app.task
    async def whoami() -> dict[str, Any]:
        task = actorq.current_task()
        return {"id": task.id, "name": task.name, "queue": task.queue, "attempt": task.attempt}

    class Tasks:
        pass

    tasks = Tasks()
    for task in (add, enrich, resize, blocking, whoami):
        setattr(tasks, task.name.rsplit(".", 1)[-1], task)
    return app, tasks


async def test_round_trip(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client, running_worker(client):
            handle = await client.enqueue(t.add, 1, 2)
            assert len(handle.id) == 32
            assert await handle.result(timeout=10) == 3
            assert await client.call(t.add, 20, 22) == 42


async def test_typed_results_with_attrs_classes_in_and_out(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client, running_worker(client):
            profile = await client.call(t.enrich, User("ada", ("x", "y")), bonus=1.0)
    assert profile == Profile(User("ada", ("x", "y")), 3.0)


async def test_bad_arguments_are_refused_before_anything_is_published(
    queue_url: str, namespace: str
) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client:
            with pytest.raises(TypeError, match="argument 'x' expected int, got str"):
                await client.enqueue(t.add, "1", 2)
            with pytest.raises(TypeError, match="missing a required argument: 'y'"):
                await client.enqueue(t.add, 1)
            info = await client.broker.stream_info(app.layout.tasks_stream)
    assert info.messages == 0


async def test_plain_def_handlers_run_in_threads(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client, running_worker(client):
            assert await client.call(t.blocking, 21) == {"value": 42, "in_thread": True}


async def test_current_task_describes_the_running_task(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client, running_worker(client):
            handle = await client.enqueue(t.whoami)
            seen = await handle.result(timeout=10)
    assert seen == {"id": handle.id, "name": t.whoami.name, "queue": "default", "attempt": 1}


async def test_enqueue_many_publishes_a_batch(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client:
            handles = await client.enqueue_many(t.add.bind(n, n) for n in range(50))
            assert (await client.broker.stream_info(app.layout.tasks_stream)).messages == 50
            async with running_worker(client):
                results = [await h.result(timeout=10) for h in handles]
    assert results == [2 * n for n in range(50)]


async def test_queues_are_isolated(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as client:
            media = await client.enqueue(t.resize, "a.png")
            default = await client.enqueue(t.add, 1, 1)
            async with running_worker(client, queues=["default"]):
                assert await default.result(timeout=10) == 2
                with pytest.raises(actorq.ResultTimeout):
                    await media.result(timeout=0.5)
            async with running_worker(client, queues=["media"]):
                assert await media.result(timeout=10) == "resized:a.png"


async def test_a_result_can_be_awaited_by_id_from_another_client(
    queue_url: str, namespace: str
) -> None:
    app, t = build_app(namespace)
    with trio.fail_after(20):
        async with (
            actorq.connect(app, queue_url) as producer,
            actorq.connect(app, queue_url) as other,
        ):
            early = await producer.enqueue(t.add, 2, 3)
            waiting = other.handle(early.id, t.add)
            async with trio.open_nursery() as nursery:
                results: list[int] = []

                async def wait_early() -> None:
                    results.append(await waiting.result(timeout=10))

                nursery.start_soon(wait_early)
                await trio.testing.wait_all_tasks_blocked()
                async with running_worker(producer):
                    done = await producer.enqueue(t.add, 4, 5)
                    assert await done.result(timeout=10) == 9
            # Completed before this handle existed: read from the results stream.
            late = other.handle(done.id, t.add)
            assert await late.result(timeout=10) == 9
            assert results == [5]


async def test_enqueue_by_name_without_the_code(queue_url: str, namespace: str) -> None:
    app, t = build_app(namespace)
    producer_app = actorq.App(namespace)  # knows no tasks
    with trio.fail_after(20):
        async with actorq.connect(app, queue_url) as worker_client, running_worker(worker_client):
            async with actorq.connect(producer_app, queue_url) as producer:
                handle = await producer.enqueue(t.add.name, 40, 2)
                assert await handle.result(timeout=10) == 42
                media = actorq.remote_task(t.resize.name, queue="media", returns=str)
                async with running_worker(worker_client, queues=["media"]):
                    assert (
                        await (await producer.enqueue(media, "b")).result(timeout=10) == "resized:b"
                    )
