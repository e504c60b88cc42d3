"""Helpers for testing code that uses actorq (and for actorq's own tests).

Run tasks for real in tests, never eagerly:

- `running_worker`: a real `Worker` inside your trio test, usually on the in-process memory
  broker (``memory://NAME``); with pytest-trio's ``autojump_clock`` the broker's delays,
  retries and schedules take no real time.
- `worker_thread`: a real worker in a background thread, for tests of code that is not trio
  (asyncio or blocking producers, a FastAPI or Flask app) against a real NATS server.
- `run_server` / `run_cluster`: the embedded nats-server (one node, or three routed nodes)
  from synchronous code, such as a session-scoped pytest fixture.
- `isolated_app`: the same app under a fresh namespace, so tests sharing one server never see
  each other's tasks, results or dead letters.

pytest fixtures built on these come with the plugin `actorq.testing.plugin`; enable it in
your ``conftest.py`` with ``pytest_plugins = ["actorq.testing.plugin"]``. See
docs/testing.md.
"""

from __future__ import annotations

from .._embedded_sync import (
    SyncCluster as SyncCluster,
    SyncServer as SyncServer,
    run_cluster as run_cluster,
    run_server as run_server,
)
from .._util import fixup_module_metadata as _fixup_module_metadata
from ._apps import isolated_app as isolated_app
from ._workers import (
    WorkerThread as WorkerThread,
    running_worker as running_worker,
    worker_thread as worker_thread,
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
