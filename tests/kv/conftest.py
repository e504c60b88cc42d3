"""Fixtures for the coordination primitives' tests.

``client`` is connected to a fresh memory broker (one per test namespace); tests that assert
times request ``autojump_clock`` themselves (pytest-trio applies a clock only when the test
function asks for it). ``nats_client`` is connected to the session's real nats-server, for the
same behaviours on the real clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import actorq

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def app(namespace: str) -> actorq.App:
    return actorq.App(namespace)


@pytest.fixture
def memory_url(namespace: str) -> str:
    return f"memory://{namespace}"


@pytest.fixture
async def client(app: actorq.App, memory_url: str) -> AsyncIterator[actorq.Client]:
    async with actorq.connect(app, memory_url) as connected:
        yield connected


@pytest.fixture
async def nats_client(app: actorq.App, nats_url: str) -> AsyncIterator[actorq.Client]:
    async with actorq.connect(app, nats_url) as connected:
        yield connected
