"""The ``broker`` fixture: every conformance test runs once on each broker.

The memory broker and the JetStream broker must behave the same; a test that passes on one and
fails on the other is a bug in one of them. The suite is clock-agnostic (real clock, every wait
bounded by ``trio.fail_after``, no exact-time assertions), because the JetStream broker talks
to a real server and must never meet ``autojump_clock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actorq.broker import Broker, open_broker


@pytest.fixture(params=["memory", "jetstream"])
def broker_url(request: pytest.FixtureRequest, namespace: str) -> str:
    if request.param == "memory":
        return f"memory://{namespace}"
    url: str = request.getfixturevalue("nats_url")
    return url


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[Broker]:
    async with open_broker(broker_url) as opened:
        yield opened
