"""``actorq dag list|show``: DAG runs from the command line.

``list`` shows every run with its status and step counts; ``show RUN`` shows one run's steps
(status, attempts, errors, what a pending step waits for) and a text tree of its graph.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs
import click

from ._cli_common import (
    CliError,
    app_options,
    json_option,
    open_app_broker,
    pick_app,
    print_json,
    resolve_endpoint,
    run_async,
    stdout,
    table,
)
from ._client import connect
from ._errors import NotFound
from .dag._plan import RunView, waiting_on

if TYPE_CHECKING:
    from .dag import RunInfo, StepInfo


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("dag")
def dag() -> None:
    """DAG runs: their status, steps and graph."""


@dag.command("list")
@app_options(positional=True)
@json_option
def list_(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Every DAG run of the app, newest first, with its steps by status."""
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> list[tuple[RunInfo, Counter[str]]]:
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            runs = []
            for meta in await client.dag_runs():
                steps = await client.dag_run(meta.id).steps()
                runs.append((meta, Counter(str(s.status) for s in steps.values())))
            return runs

    runs = run_async(main)
    if as_json:
        print_json([{**attrs.asdict(meta), "step_counts": dict(counts)} for meta, counts in runs])
        return
    if not runs:
        stdout.print(f"no DAG runs in app {app.namespace}")
        return
    rows = [
        [
            meta.id,
            str(meta.status),
            _when(meta.created_at),
            _when(meta.finished_at),
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        ]
        for meta, counts in runs
    ]
    columns = ["RUN", "STATUS", "CREATED (UTC)", "FINISHED (UTC)", "STEPS"]
    stdout.print(table(columns, rows, title=f"DAG runs of app {app.namespace}"))


@dag.command("show")
@click.argument("run_id", metavar="RUN")
@app_options(positional=False)
@json_option
def show(
    run_id: str, app_option: str | None, namespace: str | None, url: str | None, as_json: bool
) -> None:
    """One run: its steps (status, attempts, errors, what they wait for) and its graph."""
    app = pick_app(None, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> tuple[RunInfo, dict[str, StepInfo]]:
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            run = client.dag_run(run_id)
            return await run.info(), await run.steps()

    try:
        meta, steps = run_async(main)
    except NotFound:
        raise CliError(f"no DAG run {run_id!r} in app {app.namespace!r}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({"run": attrs.asdict(meta), "steps": [_step_json(s) for s in steps.values()]})
        return
    stdout.print(
        f"run {meta.id}  {meta.status}  created {_when(meta.created_at)} UTC"
        f"  finished {_when(meta.finished_at)}"
        + (f"  breakpoints {', '.join(meta.breakpoints)}" if meta.breakpoints else ""),
        markup=False,
    )
    view = RunView(meta, steps, {})
    rows = [
        [
            step.id,
            step.task,
            str(step.status) + (" (held)" if step.held else ""),
            step.attempts,
            _note(view, step),
        ]
        for step in steps.values()
    ]
    columns = ["STEP", "TASK", "STATUS", "ATTEMPTS", "ERROR / WAITING ON"]
    stdout.print(table(columns, rows, title=f"steps of run {meta.id}"))
    for line in graph(steps):
        stdout.print(line, markup=False)


def _note(view: RunView, step: StepInfo) -> str:
    if step.error is not None:
        text = f"[{step.error.kind}] {step.error.message}"
        return text.splitlines()[0][:80] if text.strip() else step.error.kind
    if str(step.status) == "pending":
        reason = waiting_on(view, step)
        return f"waits for {reason}" if reason else "ready"
    return ""


def _step_json(step: StepInfo) -> dict[str, Any]:
    document = attrs.asdict(step)
    document.pop("payload", None)
    document.pop("refs", None)
    return document


def graph(steps: dict[str, StepInfo]) -> list[str]:
    """A text tree of the graph: each step under the first step it depends on; a step with
    several upstreams is shown once, with the others named."""
    children: dict[str | None, list[StepInfo]] = {}
    for step in steps.values():
        parents = [d for d in step.deps if d in steps]
        children.setdefault(parents[0] if parents else None, []).append(step)
    lines: list[str] = []

    def walk(step: StepInfo, prefix: str, last: bool) -> None:
        others = [d for d in step.deps if d in steps][1:]
        also = f"  (also after {', '.join(others)})" if others else ""
        lines.append(f"{prefix}{'└── ' if last else '├── '}{step.id} [{step.status}]{also}")
        below = children.get(step.id, [])
        for index, child in enumerate(below):
            walk(child, prefix + ("    " if last else "│   "), index == len(below) - 1)

    roots = children.get(None, [])
    for index, root in enumerate(roots):
        walk(root, "", index == len(roots) - 1)
    return lines
