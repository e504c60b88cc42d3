"""`bench/dag.py` is not a timed test, but it must keep working as the code changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dag.py"


def test_the_dag_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--steps", "20", "--rounds", "1", "--concurrency", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DAG fan-out/fan-in" in done.stdout
    assert "DAG / plain" in done.stdout
