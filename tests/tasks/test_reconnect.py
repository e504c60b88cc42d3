"""A worker under a NATS server that goes away and comes back (real processes)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actorq
from actorq.testing import running_worker

pytestmark = pytest.mark.integration


async def test_a_worker_pauses_while_the_server_is_down_and_resumes_after(
    namespace: str,
) -> None:
    app = actorq.App(namespace)
    runs: list[str] = []

    @app.task
    async def note(label: str) -> str:
        runs.append(label)
        return label

    with trio.fail_after(30):
        async with (
            actorq.start_server() as server,
            actorq.connect(
                app, server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
            ) as client,
            running_worker(client) as worker,
        ):
            assert await client.call(note, "before") == "before"
            await server.stop()
            await worker.ready.wait_value(False)
            async with trio.open_nursery() as nursery:
                # Enqueued while the server is down: it waits in the client's buffer.
                outcome: list[str] = []

                async def enqueue_during_outage() -> None:
                    outcome.append(await client.call(note, "during"))

                nursery.start_soon(enqueue_during_outage)
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                await server.restart()
                await worker.ready.wait_value(True)
            assert outcome == ["during"]
            assert await client.call(note, "after") == "after"
    assert runs == ["before", "during", "after"]
