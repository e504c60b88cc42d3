"""`start_cluster`: three routed nats-server processes with clustered JetStream."""

from __future__ import annotations

import os
import socket

import pytest
import trio
from natsio import count, in_asyncio, put, stream_leader

import actorq
from actorq import _embedded_cluster
from actorq._embedded_base import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def pid_exists(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_three_nodes_take_an_r3_stream_at_once_and_a_killed_node_rejoins() -> None:
    with trio.fail_after(25):
        async with actorq.start_cluster(3) as cluster:
            assert len(cluster.urls) == 3
            assert cluster.url == ",".join(cluster.urls)
            assert [server.name for server in cluster.servers] == ["n1", "n2", "n3"]
            # Ready means a meta leader that sees every peer: an R3 stream works right away.
            await in_asyncio(put, cluster.urls, "HA", [b"1", b"2"], replicas=3)

            # Kill a follower of both the meta group and the stream: losing a leader costs a
            # raft election of several seconds, which is the fault tests' business, not this.
            meta = await cluster.meta_leader()
            leader = await in_asyncio(stream_leader, cluster.urls, "HA")
            victim = next(
                i for i, server in enumerate(cluster.servers) if i != meta and server.name != leader
            )
            killed = cluster.servers[victim]
            old_pid = killed.pid
            await cluster.kill(victim)
            assert not pid_exists(old_pid)
            assert not killed.running
            await cluster.wait_ready()  # the survivors keep their meta leader
            assert await in_asyncio(put, cluster.urls, "HA", [b"3"], replicas=3) == 3

            await cluster.restart(victim)
            assert killed.running
            assert killed.pid != old_pid
            # The restarted node rejoined with its store and serves the replicated stream.
            assert await in_asyncio(count, [killed.url], "HA") == 3
            pids = [server.pid for server in cluster.servers]
        assert not any(pid_exists(pid) for pid in pids)


async def test_a_taken_route_port_is_retried_with_fresh_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        calls: list[list[int]] = []

        def pick(count: int, host: str) -> list[int]:
            ports = free_ports(count, host)
            if not calls:  # the first pick hands node n1 a port someone else holds
                ports[0] = taken.getsockname()[1]
            calls.append(ports)
            return ports

        monkeypatch.setattr(_embedded_cluster, "free_ports", pick)
        with trio.fail_after(20):
            async with actorq.start_cluster(3) as cluster:
                assert len(calls) == 2
                assert cluster.servers[0].cluster_port == calls[1][0]


async def test_a_cluster_needs_two_nodes() -> None:
    with pytest.raises(ValueError, match="at least 2 nodes"):
        async with actorq.start_cluster(1):
            pass
