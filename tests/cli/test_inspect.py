"""The inspection commands against a live worker process: their ``--json`` and exit codes."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
import trio
from clitools import CLI_APP, actorq_process, cli_env, run_cli

import actorq

pytestmark = pytest.mark.integration


class Commands:
    def __init__(self, namespace: str, url: str) -> None:
        self.namespace = namespace
        self.url = url

    async def __call__(self, *args: str, status: int = 0) -> str:
        done = await run_cli([*args, "--url", self.url], env=cli_env(self.namespace))
        assert done.returncode == status, (args, done.returncode, done.stderr.decode())
        return done.stdout.decode()

    async def json(self, *args: str, status: int = 0) -> Any:
        return json.loads(await self(*args, "--json", status=status))


async def test_inspection_of_a_running_worker(nats_url: str, namespace: str) -> None:
    actorq = Commands(namespace, nats_url)
    ns = ["-n", namespace]
    with trio.fail_after(45):
        args = ["run", CLI_APP, "--url", nats_url, "-c", "3"]
        async with actorq_process(args, env=cli_env(namespace)) as worker:
            ready = (await worker.wait_for(r"worker (\S+) ready: .* pid (\d+)"))[0]
            worker_id, pid = ready.group(1), int(ready.group(2))

            # enqueue by name, and with the app's code; the result, by id
            assert (await actorq("enqueue", "cli.add", *ns, "--args", "[1, 2]", "--wait")) == "3\n"
            sent = await actorq.json(
                "enqueue", "add", "-A", CLI_APP, "--kwargs", '{"x": 2, "y": 3}'
            )
            assert sent["task"] == "cli.add"
            assert sent["queue"] == "default"
            outcome = await actorq.json("task", sent["id"], *ns, "--wait", "10")
            assert (outcome["status"], outcome["value"], outcome["attempts"]) == ("succeeded", 5, 1)
            shown = await actorq("task", sent["id"], *ns)
            assert "succeeded" in shown
            assert "result    5" in shown
            unknown = await actorq.json("task", "0" * 32, *ns, status=1)
            assert unknown == {"id": "0" * 32, "status": "unknown"}

            # a failure lands in the dead-letter queue; show, requeue, purge
            await actorq("enqueue", "cli.fail", *ns, "--args", '["boom"]', "--wait", status=1)
            letters = await actorq.json("dlq", "list", *ns)
            assert [(x["task"], x["error"]["message"]) for x in letters] == [
                ("cli.fail", "ValueError: boom")
            ]
            seq = str(letters[0]["seq"])
            assert "ValueError: boom" in await actorq("dlq", "show", seq, *ns)
            (requeued,) = await actorq.json("dlq", "requeue", seq, *ns)
            assert requeued["task_id"] == letters[0]["task_id"]
            outcome = await actorq.json("task", requeued["task_id"], *ns, "--wait", "10", status=1)
            assert outcome["status"] == "failed"  # it fails again, and is dead-lettered again
            purged = await actorq.json("dlq", "purge", *ns, "--yes")
            assert purged["removed"] == 1
            assert await actorq.json("dlq", "list", *ns) == []

            # the live worker, the queues, health
            (record,) = await actorq.json("workers", *ns)
            assert (record["id"], record["pid"]) == (worker_id, pid)
            assert (record["queues"], record["concurrency"]) == (["default"], 3)
            assert "SUCCEEDED" in await actorq("workers", *ns)
            queues = await actorq.json("queues", *ns)
            (default,) = [q for q in queues["queues"] if q["queue"] == "default"]
            assert default["workers"] == 1
            assert default["pending"] == 0
            assert "IN FLIGHT" in await actorq("queues", "-A", CLI_APP)
            healthy = await actorq.json("health", *ns, "--min-workers", "1")
            assert healthy["healthy"] is True
            unhealthy = await actorq.json("health", *ns, "--min-workers", "2", status=1)
            assert [c["name"] for c in unhealthy["checks"] if not c["ok"]] == ["workers"]
            assert (await actorq.json("purge", "default", *ns, "--yes"))["removed"] == 0

            worker.process.send_signal(signal.SIGTERM)
            assert await worker.process.wait() == 0
        # A worker that stopped cleanly removed its presence record.
        assert await actorq.json("workers", *ns) == []


async def test_queues_watch_refreshes_until_interrupted(nats_url: str, namespace: str) -> None:
    app = actorq.App(namespace)
    args = ["queues", "-n", namespace, "--url", nats_url, "--watch", "--json"]
    args += ["--interval", "0.2"]
    with trio.fail_after(20):
        async with actorq.connect(app, nats_url) as client:
            await client.enqueue(actorq.remote_task("cli.add"), 1, 2)
            async with actorq_process(args, env=cli_env(), read_stdout=True) as watch:
                await watch.wait_for('"queue": "default"', count=3)
                watch.process.send_signal(signal.SIGINT)
                assert await watch.process.wait() == 0
    document = json.loads(watch.lines[0])
    (default,) = document["queues"]
    assert default["pending"] is None  # no worker has consumed the queue yet
    assert document["stream_messages"] == 1
