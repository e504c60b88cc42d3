"""Fixtures for the DAG tests.

Most tests run on the memory broker under ``autojump_clock`` (requested by each test that
needs it), with a worker that is the app's DAG scheduler and sweeps every second
(``dagtools.dag_worker``); the ``nats`` tests run the same behaviours against the session's
real nats-server, bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import pytest

import actorq


@pytest.fixture
def app(namespace: str) -> actorq.App:
    return actorq.App(namespace)


@pytest.fixture
def memory_url(namespace: str) -> str:
    return f"memory://{namespace}"
