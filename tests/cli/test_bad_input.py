"""Bad input gives one clear ``Error:`` line and a non-zero status, never a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
from clitools import CLI_APP, cli_env, run_cli

import actorq

if TYPE_CHECKING:
    from pathlib import Path

USAGE = 2
FAILURE = 1


async def one_error_line(args: list[str], status: int, *, cwd: Path | None = None) -> str:
    with trio.fail_after(15):
        kwargs = {} if cwd is None else {"cwd": cwd}
        done = await run_cli(args, env=cli_env(), **kwargs)  # type: ignore[arg-type]
    stderr = done.stderr.decode()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert done.returncode == status, (done.returncode, stderr)
    return lines[0]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no_such_module:app", "cannot import module 'no_such_module'"),
        ("examples.quickstart:nope", "module 'examples.quickstart' has no attribute 'nope'"),
        ("examples.quickstart:add", "examples.quickstart:add is a Task, not an actorq.App"),
        (CLI_APP.replace(":app", ":not_an_app"), "is a Task, not an actorq.App"),
        ("tests/cli/missing.py:app", "no such file: tests/cli/missing.py"),
    ],
    ids=["unknown-module", "missing-attribute", "not-an-app", "file-not-an-app", "no-file"],
)
async def test_a_target_that_is_no_app(target: str, expected: str) -> None:
    line = await one_error_line(["run", target, "--url", "nats://127.0.0.1:1"], USAGE)
    assert expected in line
    if "not an actorq.App" in expected:
        assert "(its App objects: app)" in line


async def test_an_import_error_inside_the_module_names_where(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import actorq\napp = actorq.App('x')\n1 / 0\n")
    line = await one_error_line(["run", "broken:app"], USAGE, cwd=tmp_path)
    assert "importing 'broken' failed: ZeroDivisionError: division by zero" in line
    assert "broken.py, line 3" in line


async def test_a_bad_cron_expression_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "nightly.py").write_text(
        "import actorq\n"
        "app = actorq.App('nightly')\n"
        "@app.task\n"
        "async def report() -> None: ...\n"
        "app.periodic('0 2 * * *', report)\n"
    )
    line = await one_error_line(["run", "nightly:app"], USAGE, cwd=tmp_path)
    assert "invalid schedule '0 2 * * *'" in line
    assert "6 fields" in line


async def test_run_refuses_the_memory_broker() -> None:
    line = await one_error_line(["run", "examples.quickstart:app", "--url", "memory://x"], USAGE)
    assert "the memory broker lives inside one process" in line


async def test_an_unreachable_url_gives_a_hint() -> None:
    line = await one_error_line(
        ["run", "examples.quickstart:app", "--url", "nats://127.0.0.1:1"], FAILURE
    )
    assert "cannot connect to NATS at nats://127.0.0.1:1" in line
    assert "`actorq server`" in line
    assert "ACTORQ_URL" in line


async def test_inspection_without_a_url_or_local_node(tmp_path: Path) -> None:
    line = await one_error_line(["queues", "-n", "shop"], FAILURE, cwd=tmp_path)
    assert "no URL given and no local node answers in .actorq/" in line
    assert not (tmp_path / ".actorq").exists()  # inspection starts nothing


async def test_an_unknown_app_is_not_created(nats_url: str, namespace: str) -> None:
    line = await one_error_line(["queues", "-n", namespace, "--url", nats_url], FAILURE)
    assert f"app {namespace!r} has no streams" in line


async def test_unknown_dlq_id_and_bad_task_id(nats_url: str, namespace: str) -> None:
    async with actorq.connect(actorq.App(namespace), nats_url):
        pass  # the app's streams exist from here on
    line = await one_error_line(["dlq", "show", "42", "-n", namespace, "--url", nats_url], 1)
    assert line == f"Error: no dead letter #42 in app {namespace!r}"
    line = await one_error_line(["dlq", "requeue", "42", "-n", namespace, "--url", nats_url], 1)
    assert line == f"Error: no dead letter #42 in app {namespace!r}"
    line = await one_error_line(["task", "abc", "-n", namespace, "--url", nats_url], USAGE)
    assert "invalid task id 'abc'" in line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--args", "[1,"], "--args is not valid JSON"),
        (["--args", '{"x": 1}'], "--args must be an array in JSON"),
        (["--kwargs", "[1]"], "--kwargs must be an object in JSON"),
        (["--args", '["one", 2]'], "cli.add(): argument 'x' expected int, got str 'one'"),
    ],
    ids=["bad-json", "args-not-array", "kwargs-not-object", "wrong-type"],
)
async def test_enqueue_checks_its_arguments_before_connecting(
    extra: list[str], expected: str
) -> None:
    line = await one_error_line(
        ["enqueue", "add", "-A", CLI_APP, "--url", "nats://127.0.0.1:1", *extra], USAGE
    )
    assert expected in line


async def test_enqueue_of_an_unknown_task_lists_the_app_tasks() -> None:
    line = await one_error_line(
        ["enqueue", "nope", "-A", CLI_APP, "--url", "nats://127.0.0.1:1"], USAGE
    )
    assert "has no task 'nope' (its tasks: cli.add, cli.fail, cli.slow)" in line
