"""Fixtures for task-queue tests.

``queue_url`` runs a test on both brokers: the memory broker and the session's real
nats-server. Tests that measure time use the memory broker alone with ``autojump_clock``.
Apps are built per test (``build_app``) so each test has its own namespace on the shared
server.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", "jetstream"])
def queue_url(request: pytest.FixtureRequest, namespace: str) -> str:
    if request.param == "memory":
        return f"memory://{namespace}"
    url: str = request.getfixturevalue("nats_url")
    return url


@pytest.fixture
def memory_url(namespace: str) -> str:
    return f"memory://{namespace}"
