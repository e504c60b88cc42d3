"""Worker presence: the record a live worker keeps in its app's workers bucket."""

from __future__ import annotations

import trio

import actorq
from actorq.actors._presence import HEARTBEAT_TTL, read_workers, workers_bucket


async def test_a_worker_is_listed_while_it_runs_and_removed_when_it_stops(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = actorq.App("presence")

    @app.task(name="presence.wait")
    async def wait(seconds: float) -> None:
        await trio.sleep(seconds)

    async with actorq.connect(app, "memory://presence") as client:
        async with trio.open_nursery() as nursery:
            worker = await nursery.start(
                actorq.Worker(client, concurrency=3, queues=["default", "other"]).run
            )
            (record,) = await read_workers(client.broker, "presence")
            assert (record.id, record.queues, record.concurrency) == (
                worker.id,
                ("default", "other"),
                3,
            )
            assert record.busy == 0
            await client.enqueue(wait, 60.0)
            await trio.sleep(10)  # a few heartbeats, with the task still running
            (record,) = await read_workers(client.broker, "presence")
            assert record.busy == 1
            assert record.heartbeat > record.started
            nursery.cancel_scope.cancel()
        assert await read_workers(client.broker, "presence") == []


async def test_the_record_of_a_vanished_worker_expires(autojump_clock: trio.abc.Clock) -> None:
    app = actorq.App("vanished")
    async with actorq.connect(app, "memory://vanished") as client:
        async with trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client).run)
            (record,) = await read_workers(client.broker, "vanished")
            # What a kill -9 leaves: the record, with nobody to renew or remove it.
            bucket = workers_bucket("vanished")
            (key,) = await client.broker.kv_keys(bucket)
            entry = await client.broker.kv_get(bucket, key)
            assert entry is not None
            nursery.cancel_scope.cancel()
        await client.broker.kv_put(bucket, key, entry.value, ttl=HEARTBEAT_TTL)
        assert [r.id for r in await read_workers(client.broker, "vanished")] == [record.id]
        await trio.sleep(HEARTBEAT_TTL + 1)
        assert await client.broker.kv_get(bucket, key) is None
        assert await read_workers(client.broker, "vanished") == []
