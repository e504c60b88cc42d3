"""One task from the command line: ``actorq enqueue TASK`` and ``actorq task ID``.

``enqueue`` is a producer: with the app's code (``-A MODULE:APP``) the arguments are checked
against the task's signature before anything is published, exactly as ``client.enqueue`` does;
with ``--namespace`` alone the task goes by name and the worker checks them. ``task`` reads a
task's stored outcome (any process can, by id alone) or waits for it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import attrs
import click

from ._cli_common import (
    EXIT_FAILURE,
    BadInput,
    CliError,
    app_options,
    json_option,
    open_app_broker,
    pick_app,
    print_json,
    resolve_endpoint,
    run_async,
    stderr,
    stdout,
)
from ._client import connect
from ._errors import ResultTimeout
from ._names import validate_task_id
from ._task import remote_task
from ._wire import ResultRecord, decode_result

if TYPE_CHECKING:
    from ._app import App
    from ._task import Task


def _parse_json(text: str | None, option: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise BadInput(f"{option} is not valid JSON: {error}") from None
    if not isinstance(value, kind):
        expected = "an array" if kind is list else "an object"
        raise BadInput(f"{option} must be {expected} in JSON, got {text!r}")
    return value


def find_task(app: App, name: str, queue: str | None, *, by_namespace: bool) -> Task[Any, Any]:
    """The app's task called ``name`` (or the one whose name ends in ``.name``)."""
    if by_namespace:
        try:
            return remote_task(name, queue=queue or "default")
        except ValueError as error:
            raise BadInput(str(error)) from None
    task = app.lookup(name)
    if task is None:
        matches = [t for t in app.tasks.values() if t.name.endswith("." + name)]
        if len(matches) == 1:
            task = matches[0]
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise BadInput(
            f"app {app.namespace!r} has no task {name!r} (its tasks: {known}); to enqueue "
            "a task of another codebase, name the app with --namespace"
        )
    if queue is not None:
        try:
            task = task.options(queue=queue)
        except ValueError as error:
            raise BadInput(str(error)) from None
    return task


def _record_json(record: ResultRecord) -> dict[str, Any]:
    return attrs.asdict(record)


def _show_record(record: ResultRecord, *, traceback: bool) -> None:
    finished = dt.datetime.fromtimestamp(record.finished_at, dt.UTC).isoformat(timespec="seconds")
    color = "green" if record.status == "succeeded" else "red"
    lines = [
        f"task      {record.id}  {record.task}",
        f"status    [{color}]{record.status}[/]",
        f"attempts  {record.attempts}",
        f"finished  {finished} by {record.worker or '?'}",
    ]
    if record.status == "succeeded":
        lines.append(f"result    {json.dumps(record.value, default=str)}")
    elif record.error is not None:
        lines.append(f"error     [{record.error.kind}] {record.error.message}")
    for line in lines:
        stdout.print(line, markup=True)
    if traceback and record.error is not None and record.error.traceback:
        stdout.print(record.error.traceback.rstrip(), markup=False)


@click.command("task", short_help="A task's state and result.")
@click.argument("task_id", metavar="ID")
@app_options(positional=False)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for the outcome if there is none yet.",
)
@click.option("--traceback", is_flag=True, help="Show the remote traceback of a failure.")
@json_option
def task(
    task_id: str,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    wait: float | None,
    traceback: bool,
    as_json: bool,
) -> None:
    """A task's state and result, by its ID.

    Exit status 0 when it succeeded; 1 when it failed or has no outcome (yet).
    """
    app = pick_app(None, app_option, namespace)
    try:
        validate_task_id(task_id)
    except ValueError as error:
        raise BadInput(str(error)) from None
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> ResultRecord | None:
        async with open_app_broker(app, endpoint.url) as broker:
            layout = app.layout
            stored = await broker.get_last(layout.results_stream, layout.result_subject(task_id))
        if stored is not None:
            return decode_result(stored.data)
        if not wait:
            return None
        async with connect(app, endpoint.url) as client:
            try:
                return await client.handle(task_id).outcome(timeout=wait)
            except ResultTimeout:
                return None

    record = run_async(main)
    if record is None:
        if as_json:
            print_json({"id": task_id, "status": "unknown"})
        else:
            stdout.print(
                f"task {task_id}: no outcome recorded — still queued or running, unknown, or "
                "its result expired"
            )
        raise SystemExit(EXIT_FAILURE)
    if as_json:
        print_json(_record_json(record))
    else:
        _show_record(record, traceback=traceback)
    raise SystemExit(0 if record.status == "succeeded" else EXIT_FAILURE)


@click.command("enqueue", short_help="Enqueue a task with JSON arguments.")
@click.argument("task_name", metavar="TASK")
@app_options(positional=False)
@click.option("--args", "args_json", metavar="JSON", help="Positional arguments: a JSON array.")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments: a JSON object.")
@click.option("-q", "--queue", default=None, help="Send it to this queue instead of its own.")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)
@json_option
def enqueue(
    task_name: str,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue TASK with JSON arguments; print its id (and, with --wait, its result).

    Example: actorq enqueue -A examples.quickstart:app quickstart.add --args '[1, 2]' --wait
    """
    app = pick_app(None, app_option, namespace)
    args = _parse_json(args_json, "--args", list)
    kwargs = _parse_json(kwargs_json, "--kwargs", dict)
    chosen = find_task(app, task_name, queue, by_namespace=app_option is None)
    try:
        chosen.encode_arguments(tuple(args), kwargs)
    except TypeError as error:
        raise BadInput(str(error)) from None
    endpoint = resolve_endpoint(url, start_local=True)

    async def main() -> tuple[str, ResultRecord | None]:
        async with connect(app, endpoint.url) as client:
            handle = await client.enqueue(chosen, *args, **kwargs)
            if not wait:
                return handle.id, None
            stderr.print(f"enqueued {chosen.name} as task {handle.id}; waiting for its result")
            try:
                return handle.id, await handle.outcome(timeout=timeout)
            except ResultTimeout:
                raise CliError(
                    f"no result for task {handle.id} within {timeout:g}s (it is still queued "
                    f"or running; look later with `actorq task {handle.id}`)"
                ) from None

    task_id, record = run_async(main)
    if as_json:
        document: dict[str, Any] = {"id": task_id, "task": chosen.name, "queue": chosen.queue}
        if record is not None:
            document["outcome"] = _record_json(record)
        print_json(document)
    elif record is None:
        click.echo(task_id)
        stderr.print(f"enqueued {chosen.name} on queue {chosen.queue} as task {task_id}")
    elif record.status == "succeeded":
        click.echo(json.dumps(record.value, default=str))
    else:
        info = record.error
        detail = f"[{info.kind}] {info.message}" if info else record.status
        stderr.print(
            f"task {task_id} {record.status} after {record.attempts} attempt(s): {detail}",
            markup=False,
        )
    if record is not None and record.status != "succeeded":
        raise SystemExit(EXIT_FAILURE)
