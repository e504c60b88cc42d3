"""The benchmarks are not timed tests, but they must keep running as the code changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_task_benchmark_runs() -> None:
    """`bench/tasks.py` with tiny sizes: both sides, every figure, the table."""
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "tasks.py"),
            *("--tasks", "300", "--enqueue-tasks", "300", "--rtt", "20", "--warmup", "5"),
            *("--rounds", "1", "--concurrency", "16", "--enqueuers", "8"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for row in (
        "enqueue, `enqueue_many` batches",
        "end-to-end, one worker process",
        "round trip p50",
        "round trip p99",
    ):
        assert f"| {row} |" in done.stdout, done.stdout
