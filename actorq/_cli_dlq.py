"""``actorq dlq list|show|requeue|purge``: the dead-letter queue from the command line.

The same operations as ``client.dlq`` (`actorq._dlq`), addressed by an entry's sequence
number in the app's dead-letter stream (the ``#`` column of ``dlq list``).
"""

from __future__ import annotations

import datetime as dt
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
    stderr,
    stdout,
    table,
)
from ._client import connect
from ._errors import NotFound

if TYPE_CHECKING:
    from ._wire import DeadLetter


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return attrs.asdict(letter)


@click.group("dlq")
def dlq() -> None:
    """The dead-letter queue: tasks that failed for good."""


@dlq.command("list")
@app_options(positional=True)
@click.option("-q", "--queue", default=None, help="Only entries of this queue.")
@click.option("-t", "--task", "task_name", default=None, help="Only entries of this task.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def list_(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    queue: str | None,
    task_name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The oldest dead letters (up to --limit)."""
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> list[DeadLetter]:
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            return await client.dlq.list(queue=queue, task=task_name, limit=limit)

    letters = run_async(main)
    if as_json:
        print_json([_letter_json(letter) for letter in letters])
        return
    if not letters:
        stdout.print(f"no dead letters in app {app.namespace}")
        return
    rows = [
        [
            letter.seq,
            letter.task,
            letter.queue,
            letter.attempts,
            _when(letter.failed_at),
            f"[{letter.error.kind}] {letter.error.message}".splitlines()[0][:80],
        ]
        for letter in letters
    ]
    columns = ["#", "TASK", "QUEUE", "ATTEMPTS", "FAILED (UTC)", "ERROR"]
    stdout.print(table(columns, rows, title=f"dead letters of app {app.namespace}"))


def _get(
    app_target: str | None, app_option: str | None, namespace: str | None, url: str | None, seq: int
) -> DeadLetter:
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> DeadLetter:
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            return await client.dlq.get(seq)

    try:
        letter: DeadLetter = run_async(main)
    except NotFound:
        raise CliError(f"no dead letter #{seq} in app {app.namespace!r}") from None
    return letter


@dlq.command("show")
@click.argument("seq", type=click.IntRange(min=1), metavar="#")
@app_options(positional=False)
@json_option
def show(
    seq: int, app_option: str | None, namespace: str | None, url: str | None, as_json: bool
) -> None:
    """One dead letter in full: arguments, headers, error and traceback."""
    letter = _get(None, app_option, namespace, url, seq)
    if as_json:
        print_json(_letter_json(letter))
        return
    lines = [
        f"#{letter.seq}  {letter.task}  (task {letter.task_id or '?'})",
        f"queue      {letter.queue}",
        f"attempts   {letter.attempts}",
        f"failed     {_when(letter.failed_at)} UTC by {letter.worker or '?'}",
        f"error      [{letter.error.kind}] {letter.error.message}",
        f"payload    {letter.payload}",
    ]
    for name, value in sorted(letter.headers.items()):
        lines.append(f"header     {name}: {value}")
    for line in lines:
        stdout.print(line, markup=False)
    if letter.error.traceback:
        stdout.print(letter.error.traceback.rstrip(), markup=False)


@dlq.command("requeue", short_help="Enqueue dead letters again, and remove them.")
@click.argument("seqs", type=click.IntRange(min=1), nargs=-1, required=True, metavar="#...")
@app_options(positional=False)
@json_option
def requeue(
    seqs: tuple[int, ...],
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Enqueue dead letters again (fresh attempts, same task id) and remove them."""
    app = pick_app(None, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> list[tuple[int, str | None]]:
        done: list[tuple[int, str | None]] = []
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            for seq in seqs:
                try:
                    handle = await client.dlq.requeue(seq)
                except NotFound:
                    raise CliError(f"no dead letter #{seq} in app {app.namespace!r}") from None
                done.append((seq, handle.id if handle is not None else None))
        return done

    done = run_async(main)
    if as_json:
        print_json([{"seq": seq, "task_id": task_id} for seq, task_id in done])
        return
    for seq, task_id in done:
        stdout.print(f"requeued #{seq} as task {task_id or '(no id: a malformed message)'}")


@dlq.command("purge")
@app_options(positional=True)
@click.option("-q", "--queue", default=None, help="Only entries of this queue.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    queue: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove every dead letter (of one queue)."""
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)
    if not yes:
        which = f"of queue {queue!r} " if queue else ""
        click.confirm(
            f"Remove every dead letter {which}of app {app.namespace!r}?", abort=True, err=True
        )

    async def main() -> int:
        async with open_app_broker(app, endpoint.url), connect(app, endpoint.url) as client:
            return await client.dlq.purge(queue=queue)

    removed = run_async(main)
    if as_json:
        print_json({"app": app.namespace, "queue": queue, "removed": removed})
    else:
        stderr.print(f"removed {removed} dead letter(s) from app {app.namespace}")
