"""``actorq run --reload``: the worker restarts with the new code when a file changes."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
import trio
from clitools import actorq_process, cli_env

import actorq

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

APP = """
import actorq

app = actorq.App({namespace!r})


@app.task(name="reload.version")
async def version() -> int:
    return {version}
"""


async def test_reload_restarts_the_worker_on_a_change(
    nats_url: str, namespace: str, tmp_path: Path
) -> None:
    pytest.importorskip("watchfiles")
    source = tmp_path / "reloadable.py"
    source.write_text(APP.format(namespace=namespace, version=1))
    version = actorq.remote_task("reload.version", returns=int)
    args = ["run", "reloadable:app", "--url", nats_url, "--reload", "--reload-dir", str(tmp_path)]
    with trio.fail_after(30):
        async with (
            actorq.connect(actorq.App(namespace), nats_url) as client,
            actorq_process(args, env=cli_env(), cwd=tmp_path) as worker,
        ):
            await worker.wait_for("ready")
            assert await client.call(version) == 1
            source.write_text(APP.format(namespace=namespace, version=2))
            await worker.wait_for("changed: reloadable.py; restarting the worker")
            await worker.wait_for("ready", count=2)
            assert await client.call(version) == 2
            worker.process.send_signal(signal.SIGTERM)
            assert await worker.process.wait() == 0
