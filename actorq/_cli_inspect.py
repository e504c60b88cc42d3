"""Inspection of a running app: ``actorq queues``, ``workers``, ``health`` and ``purge``.

Everything here reads what NATS already knows — the queues' durable consumers, the app's
streams and the workers' presence records (`actorq.actors._presence`) — so it needs no worker
to answer and works from any machine that reaches NATS. The app is named by its code
(``MODULE:APP``) or by ``--namespace`` alone; an app whose streams do not exist is reported as
such rather than created.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import attrs
import click
import trio
from rich.console import Group
from rich.live import Live
from rich.text import Text

from ._cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    ago,
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
from ._client import nats_options_from_env
from ._errors import NotFound
from .actors._presence import WorkerRecord, read_workers
from .broker import Broker, open_broker

if TYPE_CHECKING:
    from ._app import App


@attrs.frozen
class QueueRow:
    """One queue as ``actorq queues`` shows it; counts are None before any worker consumed."""

    queue: str
    pending: int | None
    in_flight: int | None
    redelivered: int | None
    waiting_pulls: int | None
    workers: int


@attrs.frozen
class Snapshot:
    """The queues and workers of an app at one moment (``time`` on the broker's clock)."""

    time: float
    queues: list[QueueRow]
    workers: list[WorkerRecord]
    published: int
    """The tasks stream's last sequence: every task (and scheduled retry) ever stored."""
    stored: int
    """Messages in the tasks stream now: every queue's waiting tasks, and delayed ones."""


async def take_snapshot(broker: Broker, app: App, only: tuple[str, ...]) -> Snapshot:
    layout = app.layout
    workers = await read_workers(broker, app.namespace)
    if only:
        names = list(only)
    else:
        known = {task.settings.queue for task in app.tasks.values()} | {"default"}
        known |= {queue for worker in workers for queue in worker.queues}
        names = sorted(known, key=lambda queue: (queue != "default", queue))
    rows = []
    for queue in names:
        consumers = sum(1 for worker in workers if queue in worker.queues)
        try:
            info = await broker.consumer_info(layout.tasks_stream, layout.queue_consumer(queue))
        except NotFound:
            rows.append(QueueRow(queue, None, None, None, None, consumers))
            continue
        rows.append(
            QueueRow(
                queue,
                info.num_pending,
                info.num_ack_pending,
                info.num_redelivered,
                info.num_waiting,
                consumers,
            )
        )
    stream = await broker.stream_info(layout.tasks_stream)
    return Snapshot(broker.now(), rows, workers, stream.last_seq, stream.messages)


def _processed(workers: list[WorkerRecord]) -> dict[str, int]:
    return {worker.id: worker.succeeded + worker.failed for worker in workers}


def _queues_table(snapshot: Snapshot, previous: Snapshot | None, title: str) -> Any:
    rates = previous is not None and snapshot.time > previous.time
    columns = ["QUEUE", "PENDING", "IN FLIGHT", "REDELIVERED", "WORKERS"]
    if rates:
        columns.append("PENDING/s")
    rows: list[list[object]] = []
    before = {row.queue: row for row in previous.queues} if previous is not None else {}
    for row in snapshot.queues:
        cells: list[object] = [
            row.queue,
            row.pending,
            row.in_flight,
            row.redelivered,
            row.workers,
        ]
        if rates:
            assert previous is not None
            old = before.get(row.queue)
            if old is None or old.pending is None or row.pending is None:
                cells.append(None)
            else:
                elapsed = snapshot.time - previous.time
                cells.append(f"{(row.pending - old.pending) / elapsed:+.1f}")
        rows.append(cells)
    grid = table(columns, rows, title=title)
    notes = []
    if any(row.pending is None for row in snapshot.queues):
        notes.append(
            "-: no worker has consumed this queue yet (the app's tasks stream holds "
            f"{snapshot.stored} message(s) in all, delayed ones included)"
        )
    if rates:
        assert previous is not None
        elapsed = snapshot.time - previous.time
        now, then = _processed(snapshot.workers), _processed(previous.workers)
        done = sum(count - then[key] for key, count in now.items() if key in then)
        published = snapshot.published - previous.published
        notes.append(f"processed {done / elapsed:.1f}/s, published {published / elapsed:.1f}/s")
    if not notes:
        return grid
    return Group(grid, Text("\n".join(notes), style="dim"))


def _queues_json(app: App, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "app": app.namespace,
        "queues": [attrs.asdict(row) for row in snapshot.queues],
        "workers": len(snapshot.workers),
        "stream_messages": snapshot.stored,
    }


@click.command("queues", short_help="Pending, in flight, redelivered, workers per queue.")
@app_options(positional=True)
@click.option("-q", "--queue", "only", multiple=True, help="Show only this queue (repeatable).")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C, with rates.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@json_option
def queues(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    only: tuple[str, ...],
    watch: bool,
    interval: float,
    as_json: bool,
) -> None:
    """Per queue: tasks pending, in flight, redelivered, and the workers consuming it.

    With --watch, a live view with rates (with --json: one JSON document per refresh).
    """
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)
    title = f"app {app.namespace} on {endpoint.url}"

    async def main() -> None:
        async with open_app_broker(app, endpoint.url) as broker:
            snapshot = await take_snapshot(broker, app, only)
            if not watch:
                if as_json:
                    print_json(_queues_json(app, snapshot))
                else:
                    stdout.print(_queues_table(snapshot, None, title))
                return
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:

                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(stop_on_signal)
                    await _watch(broker, app, only, snapshot, interval, title, as_json)

    run_async(main)


async def _watch(
    broker: Broker,
    app: App,
    only: tuple[str, ...],
    snapshot: Snapshot,
    interval: float,
    title: str,
    as_json: bool,
) -> None:
    previous: Snapshot | None = None
    if as_json:
        while True:
            document = _queues_json(app, snapshot)
            click.echo(json.dumps(document, default=str))
            await trio.sleep(interval)
            snapshot = await take_snapshot(broker, app, only)
    try:
        with Live(console=stdout, auto_refresh=False) as live:
            while True:
                live.update(_queues_table(snapshot, previous, title), refresh=True)
                await trio.sleep(interval)
                previous, snapshot = snapshot, await take_snapshot(broker, app, only)
    finally:
        if not stdout.is_terminal:
            stdout.print()  # Live leaves the last view without a final newline


@click.command("workers", short_help="Live workers: queues, busy slots, counts.")
@app_options(positional=True)
@json_option
def workers(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Live workers of the app: host, pid, queues, busy slots, counts."""
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> None:
        async with open_app_broker(app, endpoint.url) as broker:
            records = await read_workers(broker, app.namespace)
            now = broker.now()
        if as_json:
            print_json([attrs.asdict(record) for record in records])
            return
        if not records:
            stdout.print(f"no live workers of app {app.namespace} on {endpoint.url}")
            return
        rows = [
            [
                record.id,
                record.host,
                record.pid,
                ",".join(record.queues),
                f"{record.busy}/{record.concurrency}",
                record.succeeded,
                record.failed,
                record.retried,
                ago(now - record.started),
                ago(now - record.heartbeat) + " ago",
            ]
            for record in records
        ]
        columns = [
            "WORKER",
            "HOST",
            "PID",
            "QUEUES",
            "BUSY",
            "SUCCEEDED",
            "FAILED",
            "RETRIED",
            "UP",
            "SEEN",
        ]
        stdout.print(table(columns, rows, title=f"app {app.namespace} on {endpoint.url}"))

    run_async(main)


@click.command("purge", short_help="Drop every task waiting in a queue.")
@click.argument("queue")
@app_options(positional=False)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(
    queue: str,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove every task waiting in QUEUE (running ones are not affected)."""
    app = pick_app(None, app_option, namespace)
    try:
        subjects = app.layout.queue_subjects(queue)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="QUEUE") from None
    endpoint = resolve_endpoint(url, start_local=False)
    if not yes:
        click.confirm(
            f"Remove every task waiting in queue {queue!r} of app {app.namespace!r}?",
            abort=True,
            err=True,
        )

    async def main() -> int:
        async with open_app_broker(app, endpoint.url) as broker:
            return await broker.purge_stream(app.layout.tasks_stream, subjects)

    removed = run_async(main)
    if as_json:
        print_json({"app": app.namespace, "queue": queue, "removed": removed})
    else:
        stdout.print(f"removed {removed} task(s) from queue {queue} of app {app.namespace}")


@click.command("health", short_help="Check NATS, streams and workers (exit status).")
@app_options(positional=True)
@click.option(
    "--min-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Unhealthy with fewer live workers than this.",
)
@json_option
def health(
    app_target: str | None,
    app_option: str | None,
    namespace: str | None,
    url: str | None,
    min_workers: int,
    as_json: bool,
) -> None:
    """Check NATS, the app's streams and its live workers; exit status 1 if unhealthy.

    For probes: `actorq health -n shop --min-workers 1`.
    """
    app = pick_app(app_target, app_option, namespace)
    endpoint = resolve_endpoint(url, start_local=False)

    async def main() -> list[tuple[str, bool, str]]:
        checks = [("nats", True, f"reached {endpoint.url}")]
        async with open_broker(endpoint.url, **nats_options_from_env({})) as broker:
            layout = app.layout
            missing = []
            for stream in (layout.tasks_stream, layout.results_stream, layout.dlq_stream):
                try:
                    await broker.stream_info(stream)
                except NotFound:
                    missing.append(stream)
            detail = "missing " + ", ".join(missing) if missing else "tasks, results, dlq"
            checks.append(("streams", not missing, detail))
            live = await read_workers(broker, app.namespace)
            checks.append(
                ("workers", len(live) >= min_workers, f"{len(live)} live (need {min_workers})")
            )
        return checks

    try:
        checks = run_async(main)
    except CliError as error:
        checks = [("nats", False, error.format_message())]
    healthy = all(ok for _, ok, _ in checks)
    if as_json:
        print_json(
            {
                "app": app.namespace,
                "healthy": healthy,
                "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks],
            }
        )
    else:
        for name, ok, detail in checks:
            mark = "[green]ok[/]  " if ok else "[red]FAIL[/]"
            stdout.print(f"{mark} {name:8} {detail}")
    raise SystemExit(EXIT_OK if healthy else EXIT_FAILURE)
