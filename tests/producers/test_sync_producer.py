"""The blocking producer against a real nats-server and a real worker (in a thread)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from producer_tasks import Point, add, fail, point, sleep, stamp

import actorq
import actorq.sync
from actorq.testing import isolated_app

if TYPE_CHECKING:
    from actorq import App
    from actorq.testing import WorkerThread

pytestmark = pytest.mark.integration


def test_round_trip(producer_app: App, nats_url: str, worker: WorkerThread) -> None:
    with actorq.sync.connect(producer_app, nats_url) as producer:
        handle = producer.enqueue(add, 1, 2)
        assert handle.result(timeout=10) == 3
        assert handle.done
        assert producer.enqueue("add", 2, 2).result(timeout=10) == 4
        assert producer.call(point, 3, 4) == Point(3, 4)
        assert producer.call(stamp) == "stamped"
        handles = producer.enqueue_many(add.bind(i, 1) for i in range(50))
        assert [h.result(timeout=10) for h in handles] == [i + 1 for i in range(50)]
        assert producer.connected
        assert repr(producer).startswith("<actorq.sync.Producer of app")


def test_one_producer_serves_many_threads(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    with actorq.sync.connect(producer_app, nats_url) as producer, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: producer.call(add, i, i), range(200)))
    assert results == [2 * i for i in range(200)]


def test_bad_arguments_raise_in_the_calling_thread_before_publishing(
    producer_app: App, nats_url: str
) -> None:
    quiet = isolated_app(producer_app)
    with actorq.sync.connect(quiet, nats_url) as producer:
        with pytest.raises(TypeError, match=r"add\(\): argument 'y' expected int, got str"):
            producer.enqueue(add, 1, "2")
        with pytest.raises(TypeError, match=r"add\(\): got an unexpected keyword argument 'z'"):
            producer.enqueue(add, 1, 2, z=3)
        info = producer._thread.run(
            producer._producer._admin.stream_info(quiet.layout.tasks_stream)
        )
        assert info.messages == 0


def test_failures_timeouts_and_results_by_id(
    producer_app: App, nats_url: str, worker: WorkerThread
) -> None:
    with (
        actorq.sync.connect(producer_app, nats_url) as first,
        actorq.sync.connect(producer_app, nats_url) as second,
    ):
        with pytest.raises(actorq.TaskFailed, match=r"\[error\] ValueError: boom") as caught:
            first.enqueue(fail, "boom").result(timeout=10)
        assert caught.value.attempts == 2
        slow = first.enqueue(sleep, 0.4)
        started = time.monotonic()
        with pytest.raises(actorq.ResultTimeout):
            slow.result(timeout=0.1)
        assert time.monotonic() - started < 0.35
        assert second.handle(slow.id, sleep).result(timeout=10) == 0.4
        assert second.handle(slow.id).outcome(timeout=10).status == "succeeded"


def test_close_is_idempotent_and_a_closed_producer_refuses_work(
    producer_app: App, nats_url: str
) -> None:
    threads = threading.active_count()
    producer = actorq.sync.connect(producer_app, nats_url)
    handle = producer.handle("1" * 32)
    producer.close()
    producer.close()
    assert not producer.connected
    assert "closed" in repr(producer)
    with pytest.raises(RuntimeError, match="is closed"):
        producer.enqueue(add, 1, 2)
    with pytest.raises(RuntimeError, match="is closed"):
        handle.result(timeout=1)
    assert threading.active_count() == threads  # the loop thread is gone


def test_a_failed_connect_leaves_no_thread_behind(producer_app: App) -> None:
    threads = threading.active_count()
    with pytest.raises(actorq.InvalidUrl):
        actorq.sync.connect(producer_app, "memory://nope")
    assert threading.active_count() == threads
