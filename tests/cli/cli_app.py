"""The app the CLI tests run workers of: ``actorq run tests/cli/cli_app.py:app``.

Its namespace comes from ``ACTORQ_TEST_NAMESPACE`` so each test has its own streams on the
shared server.
"""

from __future__ import annotations

import os
import sys

import trio

import actorq

app = actorq.App(os.environ.get("ACTORQ_TEST_NAMESPACE", "clitest"))


@app.task(name="cli.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="cli.slow")
async def slow(n: int, seconds: float) -> int:
    await trio.sleep(seconds)
    return n


@app.task(name="cli.fail", retry=actorq.RetryPolicy(max_attempts=1))
async def fail(message: str) -> None:
    raise ValueError(message)


not_an_app = add

if os.environ.get("ACTORQ_TEST_BREAK_CHILDREN") and "--supervised" in sys.argv:
    # For the test of a worker process that cannot start under ``--processes``.
    app = None  # type: ignore[assignment]
