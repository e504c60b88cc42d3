"""``actorq demo``, the README's first command, as a user runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from clitools import cli_env, run_cli

if TYPE_CHECKING:
    from pathlib import Path


async def test_the_demo_shows_success_retry_dead_letter_and_exits_0(tmp_path: Path) -> None:
    with trio.fail_after(30):
        done = await run_cli(["demo"], env=cli_env(), cwd=tmp_path)
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    for line in [
        "embedded nats-server at nats://127.0.0.1:",
        "add(2, 3) = 5 after 1 attempt",
        "attempt 1 failed",
        "charge('A-1001') = 'order A-1001 paid' after 2 attempts",
        "TaskFailed after 2 attempts: FileNotFoundError: no such image: cat.png",
        "dead letter #1: demo.resize, 2 attempts",
        "another client awaited it by id: 'report for 2026-01: 42 orders'",
        "200 results in",
        "step demo.recommend: failed: TimeoutError: no recommendations for ada in time",
        "done: 'welcome ada (pro)'",
        "Summary  ✓ success  ✓ retry  ✓ dead letter  ✓ await by id  ✓ batch  ✓ DAG",
    ]:
        assert line in output, f"{line!r} missing from:\n{output}"
    assert "Traceback" not in output
    # It ran on its own temporary server: no local node was started or recorded here.
    assert not list(await trio.Path(tmp_path).iterdir())
