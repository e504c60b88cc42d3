"""What every ``actorq`` command shares: finding the app, finding NATS, printing, failing well.

- The app is named the way uvicorn names one: ``module:attr`` (the current directory is on the
  import path) or ``path/to/file.py:attr``; commands that need no code take ``--namespace``.
- The URL comes from ``--url``, then ``ACTORQ_URL``, then the local node under ``.actorq/``.
- Bad input ends in one ``Error: ...`` line and a meaningful exit status, never a traceback:
  0 ok, 1 failure (unreachable NATS, not found, unhealthy), 2 usage (bad target, bad option).
- Tables for people (rich), ``--json`` for scripts: one JSON document on standard output.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click
import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._app import App
from ._client import nats_options_from_env
from ._errors import EmbeddedServerError, InvalidUrl, NotConnected, NotFound
from ._local_node import DEFAULT_DIRECTORY, ensure_local_node, read_local_node
from .broker import Broker, open_broker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

CONNECT_HINT = (
    "start NATS with `actorq server` (or `actorq server start` for the local node), "
    "or point --url / ACTORQ_URL at a running one"
)


class CliError(click.ClickException):
    """A failure: one ``Error: ...`` line, exit status 1."""

    exit_code = EXIT_FAILURE


class BadInput(CliError):
    """Bad input (a target that is no App, a bad option value): one line, exit status 2."""

    exit_code = EXIT_USAGE


# --- the app ---------------------------------------------------------------------------------


def load_app(target: str) -> App:
    """Import ``module:attr`` or ``path/to/file.py:attr`` and return the `App` it names.

    ``attr`` defaults to ``app``. The current directory goes first on ``sys.path`` (as with
    ``python -m``), so ``examples.quickstart:app`` is found from the repository root.

    Raises:
        CliError: (exit 2) the module cannot be imported, or the attribute is missing or
            not an `App`.
    """
    where, colon, attr = target.rpartition(":")
    if not colon:
        where, attr = target, "app"
    if not where or not attr:
        raise BadInput(f"expected MODULE:APP or path/to/file.py:APP, got {target!r}")
    if where.endswith(".py") or os.sep in where:
        module = _import_file(Path(where))
    else:
        module = _import_module(where)
    value: object = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise BadInput(
                f"module {module.__name__!r} has no attribute {attr!r}{_apps_hint(module)}",
            )
        value = getattr(value, part)
    if not isinstance(value, App):
        raise BadInput(f"{target} is {_describe(value)}, not an actorq.App{_apps_hint(module)}")
    return value


def _import_module(name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise BadInput(
                f"cannot import module {name!r}: no module named {missing!r} (looked in {cwd} "
                "and the installed packages; run from the folder that contains it)",
            ) from None
        raise BadInput(f"importing {name!r} failed: {_one_line(error)}") from None
    except Exception as error:
        raise BadInput(f"importing {name!r} failed: {_one_line(error)}") from None


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    name = path.stem
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file's sibling modules import as they do for python
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise BadInput(f"importing {path} failed: {_one_line(error)}") from None
    return module


def _one_line(error: BaseException) -> str:
    """An exception as one line, with where it happened in the user's code."""
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    if isinstance(error, SyntaxError):
        return f"{text} ({error.filename}, line {error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        text += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return text


def _describe(value: object) -> str:
    return "a module" if type(value).__name__ == "module" else f"a {type(value).__name__}"


def _apps_hint(module: Any) -> str:
    names = sorted(name for name, value in vars(module).items() if isinstance(value, App))
    if names:
        return f" (its App objects: {', '.join(names)})"
    return " (it defines no actorq.App)"


def app_of_namespace(namespace: str) -> App:
    """An `App` with no tasks, for commands that need only the namespace."""
    try:
        return App(namespace)
    except ValueError as error:
        raise BadInput(str(error)) from None


def pick_app(positional: str | None, app_option: str | None, namespace: str | None) -> App:
    """The app from ``[MODULE:APP]``, else ``--app``, else ``--namespace``."""
    target = positional or app_option
    if target is not None:
        return load_app(target)
    if namespace is not None:
        return app_of_namespace(namespace)
    raise BadInput(
        "name the app: MODULE:APP (or -A MODULE:APP), or -n NAMESPACE (or set ACTORQ_APP)",
    )


def app_options(*, positional: bool) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``[MODULE:APP]`` (when ``positional``), ``-A/--app``, ``-n/--namespace`` and ``--url``."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        command = url_option(command)
        command = click.option(
            "-n",
            "--namespace",
            envvar="ACTORQ_NAMESPACE",
            metavar="NS",
            help="The app's namespace, when its code is not at hand.",
        )(command)
        command = click.option(
            "-A",
            "--app",
            "app_option",
            envvar="ACTORQ_APP",
            metavar="MODULE:APP",
            help="The app: module:attr or path/to/file.py:attr.",
        )(command)
        if positional:
            command = click.argument("app_target", required=False, metavar="[MODULE:APP]")(command)
        return command

    return decorate


def url_option(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--url",
        envvar="ACTORQ_URL",
        metavar="URL",
        help="NATS URL (comma-separate a cluster's). Default: $ACTORQ_URL, else the local "
        "node under .actorq/.",
    )(command)


# --- the URL -------------------------------------------------------------------------------


@attrs.frozen
class Endpoint:
    """A resolved broker URL and where it came from (for startup lines)."""

    url: str
    source: str


def resolve_endpoint(url: str | None, *, start_local: bool) -> Endpoint:
    """``--url`` / ``ACTORQ_URL`` (click fills both into ``url``), else the local node.

    With ``start_local`` the local node is started if none answers (what a worker or a
    producer does); otherwise its absence is an error (inspection has nothing to inspect).
    """
    if url:
        from_env = os.environ.get("ACTORQ_URL") == url
        return Endpoint(url, "ACTORQ_URL" if from_env else "--url")
    if start_local:
        try:
            found = ensure_local_node(DEFAULT_DIRECTORY)
        except EmbeddedServerError as error:
            raise CliError(str(error)) from None
        return Endpoint(found, f"the local node in {DEFAULT_DIRECTORY}/")
    node = read_local_node(DEFAULT_DIRECTORY)
    if node is None or not node.answers():
        raise CliError(
            f"no URL given and no local node answers in {DEFAULT_DIRECTORY}/: " + CONNECT_HINT
        )
    return Endpoint(node.url, f"the local node in {DEFAULT_DIRECTORY}/")


def refuse_memory(url: str, command: str) -> None:
    if url.strip().startswith("memory:"):
        raise BadInput(
            f"`actorq {command}` cannot use {url!r}: the memory broker lives inside one "
            "process, so nothing else could reach it; use a NATS URL, or no URL for the "
            "local node",
        )


@asynccontextmanager
async def open_app_broker(app: App, url: str) -> AsyncIterator[Broker]:
    """The broker, once the app is known to exist there (its tasks stream does).

    Inspection must not create streams for a mistyped namespace, so it does not use
    `actorq.connect` (which creates them) until this check passed.
    """
    async with open_broker(url, **nats_options_from_env({})) as broker:
        try:
            await broker.stream_info(app.layout.tasks_stream)
        except NotFound:
            raise CliError(
                f"app {app.namespace!r} has no streams on {url}: nothing of it has connected "
                "there yet (check the namespace and the URL)"
            ) from None
        yield broker


def run_async(function: Callable[[], Any]) -> Any:
    """``trio.run`` with actorq's errors turned into one ``Error:`` line each."""
    try:
        return trio.run(function)
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
        raise _translated(single) from None
    except (NotConnected, InvalidUrl, EmbeddedServerError) as error:
        raise _translated(error) from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


def _translated(error: BaseException) -> BaseException:
    if isinstance(error, NotConnected):
        return CliError(f"{error}; {CONNECT_HINT}")
    if isinstance(error, InvalidUrl):
        return BadInput(str(error))
    if isinstance(error, EmbeddedServerError):
        return CliError(str(error))
    return error


# --- output --------------------------------------------------------------------------------


def _console(*, err: bool) -> Console:
    # Not a terminal (a pipe, a file, a test): wide enough that tables are not cut at 80.
    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty() or "COLUMNS" in os.environ
    return Console(stderr=err, highlight=False, soft_wrap=True, width=None if tty else 200)


stdout = _console(err=False)
stderr = _console(err=True)


def print_json(document: Any) -> None:
    """One JSON document on standard output (for ``--json``)."""
    click.echo(json.dumps(document, indent=2, default=str))


def table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None
) -> Table:
    """A plain rich table: headers, right-aligned numbers."""
    rows = [list(row) for row in rows]
    grid = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for index, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(row[index], int | float) for row in rows)
        grid.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        grid.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    return grid


def ago(seconds: float) -> str:
    """``3s``, ``4m12s``, ``2h05m``: a short duration for tables."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
