"""A replicated stream survives the loss of a node: 3 embedded nodes, an R3 stream, the leader's
process killed while a producer publishes and a worker consumes, then restarted.

Everything goes through actorq's own JetStream broker (`open_broker` with the cluster's
comma-joined URL). The producer does what a real producer must: a publish that fails or times
out during the election is retried with the same ``Nats-Msg-Id``, so the server's dedupe window
keeps it from being stored twice. The worker acks every delivery; an ack lost with the node
means a redelivery after ``ack_wait``, which it counts once. The outcome is counted:
N published, N stored, N consumed, 0 lost, and the restarted node holds all N again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from actorq import BrokerError
from actorq._embedded_base import stream_detail
from actorq.broker import MSG_ID, ConsumerConfig, Message, StreamConfig, open_broker

if TYPE_CHECKING:
    from actorq._embedded_sync import SyncCluster
    from actorq.broker import Broker

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

N = 300
RETRY_PAUSE = 0.1  # between attempts of one failed operation, while a leader is elected


async def replica_count(cluster: SyncCluster, index: int, stream: str) -> int:
    """How many messages node ``index``'s own replica of ``stream`` holds (its /jsz)."""
    server = cluster.cluster.servers[index]
    assert server.monitor_port is not None
    detail = await trio.to_thread.run_sync(stream_detail, server.host, server.monitor_port, stream)
    return int(((detail or {}).get("state") or {}).get("messages", -1))


async def test_an_r3_stream_loses_nothing_when_its_leader_is_killed_and_restarted(
    nats_cluster: SyncCluster, namespace: str
) -> None:
    stream, subject = f"FAULT_{namespace.upper()}", f"{namespace}.fault"
    published: set[int] = set()
    consumed: set[int] = set()
    deliveries = 0
    failed_publishes = 0
    killed, restarted = trio.Event(), trio.Event()

    async def produce(broker: Broker, victim: int) -> None:
        nonlocal failed_publishes
        for i in range(N):
            message = Message(f"{subject}.{i}", str(i).encode(), {MSG_ID: f"{namespace}-{i}"})
            while True:
                try:
                    await broker.publish(message)
                    break
                except BrokerError:
                    failed_publishes += 1
                    await trio.sleep(RETRY_PAUSE)  # no leader yet: the same message again
            published.add(i)
            if i == N // 3:
                await trio.to_thread.run_sync(nats_cluster.kill, victim)
                killed.set()
            elif i == 2 * N // 3:
                # Publishing went on without the node; now it comes back and must catch up.
                await trio.to_thread.run_sync(nats_cluster.restart, victim)
                restarted.set()

    async def consume(broker: Broker) -> None:
        nonlocal deliveries
        while len(consumed) < N:
            try:
                batch = await broker.fetch(stream, "worker", 50, expires=0.5)
                for delivery in batch:
                    await broker.ack(delivery)
            except BrokerError:
                await trio.sleep(RETRY_PAUSE)
                continue
            deliveries += len(batch)
            consumed.update(int(delivery.data) for delivery in batch)

    with trio.fail_after(30):
        async with open_broker(
            nats_cluster.url, publish_timeout=2.0, request_timeout=2.0
        ) as broker:
            await broker.ensure_stream(
                StreamConfig(name=stream, subjects=[f"{subject}.>"], replicas=3)
            )
            await broker.ensure_consumer(stream, ConsumerConfig(name="worker", ack_wait=2.0))
            # The hardest node to lose is the stream's leader: the group must elect another.
            victim = await trio.to_thread.run_sync(nats_cluster.stream_leader, stream)
            assert victim is not None
            old_pid = nats_cluster.pids[victim]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce, broker, victim)
                nursery.start_soon(consume, broker)

            assert killed.is_set()
            assert restarted.is_set()
            # The loss was felt: publishes failed while the stream elected a new leader.
            assert failed_publishes > 0
            assert nats_cluster.pids[victim] != old_pid
            assert published == set(range(N))
            assert consumed == set(range(N))  # nothing lost
            assert deliveries >= N  # redeliveries (acks lost with the node) are allowed
            assert (await broker.stream_info(stream)).messages == N  # no duplicate stored

            # The restarted node rejoined the stream's group and caught up on what it missed.
            while True:
                if await replica_count(nats_cluster, victim, stream) == N:
                    break
                await trio.sleep(RETRY_PAUSE)  # polled: the node's /jsz has no push
