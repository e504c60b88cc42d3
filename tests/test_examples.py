"""Every script in ``examples/`` runs to completion: documentation that is executed stays true.

Each example runs as its own process, the way a user runs it (``python examples/x.py``), in a
scratch directory so nothing it writes (an embedded server's state, say) lands in the
repository. An example that cannot run unattended goes in ``NEEDS_SETUP`` with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Examples that need something the test run does not provide, with the reason.
NEEDS_SETUP: dict[str, str] = {}

#: Generous: an example should finish in a second or two.
TIMEOUT = 60.0


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _examples() -> list[Path]:
    return sorted(path for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


@pytest.mark.parametrize("example", _examples(), ids=lambda path: path.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    if example.name in NEEDS_SETUP:
        pytest.skip(NEEDS_SETUP[example.name])
    try:
        done = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        pytest.fail(f"{example.name} did not finish within {TIMEOUT} s:\n{output}")
    assert done.returncode == 0, (
        f"{example.name} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
