"""``actorq run MODULE:APP``: run a Worker for an app, as a program a process manager can own.

One process runs one `Worker` under trio. SIGINT or SIGTERM drains it (intake stops, running
tasks finish within ``--shutdown-grace``, late messages are given back); a second signal exits
at once (tasks still running come back after their ack wait — nothing is lost, at-least-once).
``--processes N`` supervises N such processes (`actorq._cli_processes`), ``--reload`` restarts
one on code changes.

Exit status: 0 after a signal and a clean drain; 1 when the worker failed or NATS could not be
reached; 2 for bad input (unknown module, not an App, a bad option, ``memory://``);
128 + the signal's number after a second signal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click
import trio

from ._cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    BadInput,
    Endpoint,
    load_app,
    refuse_memory,
    resolve_endpoint,
    run_async,
)
from ._cli_logging import LEVELS, configure_logging
from ._client import connect
from ._names import validate_queue
from ._worker import Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._app import App

logger = logging.getLogger("actorq.run")


def choose_queues(app: App, options: tuple[str, ...]) -> tuple[str, ...]:
    """``-Q`` values (repeatable, comma-separated), else every queue the app's tasks use."""
    named = [part.strip() for option in options for part in option.split(",") if part.strip()]
    if not named:
        used = {task.settings.queue for task in app.tasks.values()} or {"default"}
        named = sorted(used, key=lambda queue: (queue != "default", queue))
    try:
        return tuple(dict.fromkeys(validate_queue(queue) for queue in named))
    except ValueError as error:
        raise BadInput(str(error)) from None


@click.command("run", short_help="Run a worker for an app.")
@click.argument("target", metavar="MODULE:APP")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Slots: tasks run at once (per process).",
)
@click.option(
    "-Q",
    "--queues",
    "queue_options",
    multiple=True,
    metavar="QUEUE[,QUEUE]",
    help="Queues to consume (repeat or comma-separate). Default: every queue the app's tasks use.",
)
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (for CPU-bound work); a crashed one is restarted.",
)
@click.option(
    "--url",
    envvar="ACTORQ_URL",
    metavar="URL",
    help="NATS URL. Default: $ACTORQ_URL, else the local node under .actorq/ (started if "
    "none answers).",
)
@click.option("--reload", is_flag=True, help="Restart the worker when a .py file changes.")
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder to watch with --reload (repeatable). Default: the current directory.",
)
@click.option(
    "--ack-wait",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds before a task of a vanished worker is delivered again.",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks get to finish on SIGINT/SIGTERM.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="ACTORQ_LOG_LEVEL",
    help="Least severe level logged.",
)
@click.option(
    "--json-logs", is_flag=True, envvar="ACTORQ_JSON_LOGS", help="One JSON object per log line."
)
@click.option("--supervised", is_flag=True, hidden=True)
def run(
    target: str,
    concurrency: int,
    queue_options: tuple[str, ...],
    processes: int,
    url: str | None,
    reload: bool,
    reload_dirs: tuple[Path, ...],
    ack_wait: float,
    shutdown_grace: float,
    log_level: str,
    json_logs: bool,
    supervised: bool,
) -> None:
    """Run a worker for the app MODULE:APP (or path/to/file.py:APP).

    SIGINT/SIGTERM drain it gracefully; a second signal stops it at once.
    """
    configure_logging(log_level, json_logs=json_logs)
    if reload and processes > 1:
        raise BadInput("--reload runs one worker process; leave out --processes")
    if url:
        refuse_memory(url, "run")
    # With --reload the app is imported by the worker process only, so a broken edit does
    # not end the watcher: the next save restarts the worker.
    app = None if reload else load_app(target)
    queues = queue_options if app is None else choose_queues(app, queue_options)
    endpoint = resolve_endpoint(url, start_local=True)
    if reload or processes > 1:
        # Worker processes inherit the URL (the local node resolved once, here) through the
        # environment: on their command line, credentials in it would show in `ps`.
        os.environ["ACTORQ_URL"] = endpoint.url
        argv = child_argv(
            target, concurrency, queues, ack_wait, shutdown_grace, log_level, json_logs
        )
    if reload:
        from ._cli_processes import run_with_reload

        sys.exit(run_with_reload(argv, reload_dirs or (Path.cwd(),), shutdown_grace))
    assert app is not None
    if processes > 1:
        from ._cli_processes import supervise_processes

        logger.info(
            "supervising %d worker processes of app %r on %s (%s), queues %s, %d slots each",
            processes,
            app.namespace,
            endpoint.url,
            endpoint.source,
            ", ".join(queues),
            concurrency,
            extra={"event": "supervisor_start", "url": endpoint.url, "processes": processes},
        )
        argv.append("--supervised")
        sys.exit(_run_logged(lambda: supervise_processes(argv, processes, shutdown_grace)))
    options = WorkerOptions(app, endpoint, queues, concurrency, ack_wait, shutdown_grace)
    sys.exit(_run_logged(lambda: serve_worker(options, supervised=supervised)))


def _run_logged(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` under trio; an unexpected failure is logged (with its traceback, which
    is worth having in a worker's log) and is exit status 1."""
    try:
        status: int = run_async(main)
    except click.ClickException:
        raise
    except Exception:
        logger.critical("the worker failed", exc_info=True, extra={"event": "failed"})
        return EXIT_FAILURE
    return status


def child_argv(
    target: str,
    concurrency: int,
    queues: tuple[str, ...],
    ack_wait: float,
    shutdown_grace: float,
    log_level: str,
    json_logs: bool,
) -> list[str]:
    """The command line of one worker process, as ``--processes`` and ``--reload`` start it."""
    argv = [sys.executable, "-m", "actorq", "run", target]
    argv += ["--concurrency", str(concurrency), "--ack-wait", repr(ack_wait)]
    argv += ["--shutdown-grace", repr(shutdown_grace), "--log-level", log_level]
    if queues:
        argv += ["--queues", ",".join(queues)]
    if json_logs:
        argv.append("--json-logs")
    return argv


@attrs.frozen
class WorkerOptions:
    """What one worker process runs: the app, where, which queues, how many slots."""

    app: App
    endpoint: Endpoint
    queues: tuple[str, ...]
    concurrency: int
    ack_wait: float
    shutdown_grace: float


async def serve_worker(options: WorkerOptions, *, supervised: bool = False) -> int:
    """Run one worker until a signal (or, ``supervised``, until the parent process is gone)."""
    app, endpoint = options.app, options.endpoint
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        work = trio.CancelScope()
        async with trio.open_nursery() as root:
            root.start_soon(_stop_on_signals, signals, work, options.shutdown_grace)
            if supervised:
                root.start_soon(_stop_when_parent_exits, work)
            try:
                with work:
                    async with connect(app, endpoint.url) as client:
                        worker = Worker(
                            client,
                            concurrency=options.concurrency,
                            queues=options.queues,
                            ack_wait=options.ack_wait,
                            shutdown_grace=options.shutdown_grace,
                        )
                        async with trio.open_nursery() as nursery:
                            await nursery.start(worker.run)
                            _announce(worker, options)
                        logger.error("the worker stopped on its own")
                        return EXIT_FAILURE
            finally:
                root.cancel_scope.cancel()
    logger.info("worker stopped", extra={"event": "stopped"})
    return EXIT_OK


def _announce(worker: Worker, options: WorkerOptions) -> None:
    endpoint = options.endpoint
    logger.info(
        "worker %s ready: app %r on %s (%s), queues %s, %d slots, pid %d",
        worker.id,
        options.app.namespace,
        endpoint.url,
        endpoint.source,
        ", ".join(worker.queues),
        worker.concurrency,
        os.getpid(),
        extra={
            "event": "ready",
            "worker_id": worker.id,
            "app": options.app.namespace,
            "url": endpoint.url,
            "queues": list(worker.queues),
            "concurrency": worker.concurrency,
        },
    )


async def _stop_on_signals(
    signals: AsyncIterator[int], work: trio.CancelScope, grace: float
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not work.cancel_called:
            logger.info(
                "%s: draining (running tasks get up to %gs; %s again stops at once)",
                name,
                grace,
                name,
                extra={"event": "draining", "signal": name},
            )
            work.cancel()
            continue
        logger.warning(
            "%s again: stopping now; tasks still running will be delivered again",
            name,
            extra={"event": "killed", "signal": name},
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(128 + signum)


async def _stop_when_parent_exits(work: trio.CancelScope) -> None:
    """Under ``--processes`` the parent holds our stdin open: end of file means it is gone."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some():
            pass
    if not work.cancel_called:
        logger.warning("the supervising process is gone: draining", extra={"event": "orphaned"})
        work.cancel()
