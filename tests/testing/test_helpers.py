"""The helpers of `actorq.testing`: isolated apps and a worker in a background thread."""

from __future__ import annotations

import pytest

import actorq
import actorq.sync
from actorq.testing import isolated_app, worker_thread

app = actorq.App("helpers")


@app.task(name="helpers.square")
def square(x: int) -> int:
    return x * x


def test_isolated_app_keeps_the_tasks_under_a_fresh_namespace() -> None:
    copy = isolated_app(app)
    assert copy.namespace != app.namespace
    assert copy.namespace.startswith("helpers-")
    assert len(copy.namespace) <= 32
    assert copy.tasks == app.tasks
    assert copy.layout.tasks_stream != app.layout.tasks_stream
    assert isolated_app(app, "chosen").namespace == "chosen"
    with pytest.raises(ValueError, match="invalid app namespace"):
        isolated_app(app, "Not Valid")
    assert app.namespace == "helpers"  # the original is untouched


@pytest.mark.integration
def test_worker_thread_runs_a_real_worker_beside_blocking_code(nats_url: str) -> None:
    mine = isolated_app(app)
    with (
        worker_thread(mine, nats_url, concurrency=2) as worker,
        actorq.sync.connect(mine, nats_url) as producer,
    ):
        assert producer.call(square, 7) == 49
        worker.wait_idle()
        assert worker.statistics().executions.succeeded == 1
        assert repr(worker).startswith("<WorkerThread of app 'helpers-")


def test_worker_thread_refuses_a_memory_broker() -> None:
    with pytest.raises(actorq.InvalidUrl, match="a memory broker lives in one trio run"):
        with worker_thread(app, "memory://x"):
            pass
