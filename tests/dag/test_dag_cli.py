"""``actorq dag list|show`` against runs on the session's nats-server."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import pytest
import trio
from dagtools import dag_worker

import actorq
from actorq import RetryPolicy, RunStatus

if TYPE_CHECKING:
    import subprocess

pytestmark = pytest.mark.integration


async def actorq_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    return await trio.run_process(
        [sys.executable, "-m", "actorq", *args], capture_stdout=True, capture_stderr=True,
        check=False, env=env,
    )  # fmt: skip


async def test_dag_list_and_show(app: actorq.App, nats_url: str, namespace: str) -> None:
    @app.task(name="cli.one")
    async def one() -> int:
        return 1

    @app.task(name="cli.broken", retry=RetryPolicy.never())
    async def broken(x: int) -> int:
        raise ValueError(f"cannot use {x}")

    @app.task(name="cli.last")
    async def last(x: int) -> int:
        return x

    with trio.fail_after(40):
        async with actorq.connect(app, nats_url) as client, dag_worker(client):
            dag = actorq.DAG("clirun")
            a = dag.step(one.options(step_id="a"))
            b = dag.step(broken.options(step_id="b", optional=True), a)
            dag.step(last.options(step_id="c"), b.or_default(7))
            dag.step(last.options(step_id="d"), b)
            run = await client.submit(dag)
            assert await run.wait() == RunStatus.FAILED

        where = ["-n", namespace, "--url", nats_url]
        listed = await actorq_cli("dag", "list", *where, "--json")
        assert listed.returncode == 0, listed.stderr.decode()
        [entry] = json.loads(listed.stdout)
        assert (entry["id"], entry["status"]) == ("clirun", "failed")
        assert entry["step_counts"] == {"done": 2, "failed": 1, "skipped": 1}

        shown = await actorq_cli("dag", "show", "clirun", *where)
        assert shown.returncode == 0, shown.stderr.decode()
        text = shown.stdout.decode()
        assert "ValueError: cannot use 1" in text
        assert "[skipped] b" in text
        tree = [
            "└── a [done]",
            "    └── b [failed]",
            "        ├── c [done]",
            "        └── d [skipped]",
        ]
        assert text.splitlines()[-4:] == tree

        missing = await actorq_cli("dag", "show", "nope", *where)
        assert missing.returncode == 1
        assert "no DAG run 'nope'" in missing.stderr.decode()
