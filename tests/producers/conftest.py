"""Fixtures for the producer tests: one app namespace and one worker thread per module.

Producers are asyncio or blocking code, so these tests are plain synchronous functions (the
asyncio ones wrap their body in ``asyncio.run``); the worker they talk to runs in a background
thread with its own trio loop, against the session's real nats-server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from producer_tasks import app

from actorq.testing import WorkerThread, isolated_app, worker_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actorq import App


@pytest.fixture(scope="module")
def producer_app() -> App:
    """The test app under a namespace of this module's own."""
    return isolated_app(app)


@pytest.fixture(scope="module")
def worker(producer_app: App, nats_url: str) -> Iterator[WorkerThread]:
    with worker_thread(producer_app, nats_url, concurrency=8, shutdown_grace=1.0) as running:
        yield running
