"""Helpers for the CLI tests: ``actorq`` as real subprocesses, read line by line.

A command's standard error is drained by a background task into a list of lines, so a chatty
worker never blocks on a full pipe; a test waits for the line it needs (a ready line, a
"draining" line) instead of sleeping.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

REPO = Path(__file__).resolve().parents[2]
CLI_APP = "tests/cli/cli_app.py:app"


def cli_env(namespace: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of an ``actorq`` subprocess: no inherited URL, the test's namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    if namespace is not None:
        env["ACTORQ_TEST_NAMESPACE"] = namespace
    env.update(extra)
    return env


class Cli:
    """A running ``actorq`` subprocess and the lines it wrote so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.eof = False
        self._changed = trio.Event()

    async def _drain(self, stream: trio.abc.ReceiveStream) -> None:
        pending = b""
        async for chunk in stream:
            *complete, pending = (pending + chunk).split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if pending:
            self.lines.append(pending.decode(errors="replace"))
        self.eof = True
        self._changed.set()

    async def wait_for(self, pattern: str, *, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``count`` lines matched ``pattern``; the matches."""
        regex = re.compile(pattern)
        while True:
            matches = [m for line in self.lines if (m := regex.search(line))]
            if len(matches) >= count:
                return matches
            if self.eof:
                pytest.fail(f"the process ended before {pattern!r}:\n{self.output()}")
            await self._changed.wait()

    def output(self) -> str:
        return "\n".join(self.lines)


@asynccontextmanager
async def actorq_process(
    args: Sequence[str], *, env: dict[str, str], cwd: Path = REPO, read_stdout: bool = False
) -> AsyncIterator[Cli]:
    """Start ``python -m actorq ARGS``; kill it on the way out if it still runs.

    The lines read are standard error's (where logs go), or standard output's with
    ``read_stdout``; the other stream is discarded.
    """
    pipe, discard = subprocess.PIPE, subprocess.DEVNULL
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actorq", *args],
        stdout=pipe if read_stdout else discard,
        stderr=discard if read_stdout else pipe,
        env=env,
        cwd=cwd,
    )
    cli = Cli(process)
    async with trio.open_nursery() as nursery:
        stream = process.stdout if read_stdout else process.stderr
        assert stream is not None
        nursery.start_soon(cli._drain, stream)
        try:
            yield cli
        finally:
            # (A --processes parent killed here leaves its children to drain: they watch
            # their stdin.)
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def run_cli(
    args: Sequence[str], *, env: dict[str, str], cwd: Path = REPO
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m actorq ARGS`` to completion, capturing both outputs."""
    return await trio.run_process(
        [sys.executable, "-m", "actorq", *args],
        env=env,
        cwd=cwd,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
