"""pytest fixtures for testing code that uses actorq.

Enable them in your top-level ``conftest.py``::

    pytest_plugins = ["actorq.testing.plugin"]

    @pytest.fixture
    def actorq_app():
        from myproject.tasks import app
        return app

The plugin is opt-in (no entry point): it imports trio, nats-py and actorq, which a test run
that does not use actorq should not pay for. The async fixtures need pytest-trio (a test using
them is a trio test: ``trio_mode = true``, or ``@pytest.mark.trio``).

Fixtures:

- ``actorq_app``: your `App`. Override it; the default fails with instructions.
- ``actorq_url``: where ``actorq_client`` connects. Default: a memory broker, fresh for every
  test (each test is its own trio run). Override it with ``actorq_nats_url`` to run the same
  tests against a real server.
- ``actorq_client``: an `actorq.Client` of the app on ``actorq_url``. On NATS the app gets a
  fresh namespace per test (`isolated_app`), so tests sharing the server never see each
  other's tasks, results or dead letters.
- ``actorq_worker_options``: keyword arguments for the worker (default: none). Override it.
- ``actorq_worker``: a real `actorq.Worker` of ``actorq_client``, running in the test's own
  trio task tree and stopped gracefully after the test.
- ``actorq_nats`` / ``actorq_nats_url``: one real nats-server with JetStream for the whole
  session, on a free loopback port with a temporary store (a plain synchronous fixture: use
  it from any test). Never combine it with ``autojump_clock``: the server lives on real time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .._client import connect
from ._apps import isolated_app
from ._workers import running_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from .._app import App
    from .._client import Client
    from .._embedded_sync import SyncServer
    from .._worker import Worker


@pytest.fixture
def actorq_app() -> App:
    """The app under test: override this fixture to return yours."""
    pytest.fail(
        "the actorq fixtures need your app: define a fixture named 'actorq_app' returning"
        " your actorq.App in conftest.py (see docs/testing.md)",
        pytrace=False,
    )


@pytest.fixture
def actorq_url() -> str:
    """The broker URL of ``actorq_client``: a memory broker fresh for every test."""
    return "memory://actorq-test"


@pytest.fixture
async def actorq_client(actorq_app: App, actorq_url: str) -> AsyncIterator[Client]:
    """A client of ``actorq_app`` on ``actorq_url`` (its own namespace when on NATS)."""
    app = actorq_app if actorq_url.startswith("memory:") else isolated_app(actorq_app)
    async with connect(app, actorq_url) as client:
        yield client


@pytest.fixture
def actorq_worker_options() -> dict[str, Any]:
    """Keyword arguments of ``actorq_worker``'s `Worker` (override to change them)."""
    return {}


@pytest.fixture
async def actorq_worker(
    actorq_client: Client, actorq_worker_options: dict[str, Any]
) -> AsyncIterator[Worker]:
    """A worker of ``actorq_client`` running for the test, then stopped gracefully."""
    async with running_worker(actorq_client, **actorq_worker_options) as worker:
        yield worker


@pytest.fixture(scope="session")
def actorq_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncServer]:
    """One embedded nats-server with JetStream for the session (temporary store)."""
    from .._embedded_sync import run_server

    with run_server(store_dir=tmp_path_factory.mktemp("actorq-nats")) as server:
        yield server


@pytest.fixture(scope="session")
def actorq_nats_url(actorq_nats: SyncServer) -> str:
    """The URL of ``actorq_nats``."""
    return actorq_nats.url
