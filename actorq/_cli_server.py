"""``actorq server``: run NATS for actorq from the command line.

``actorq server`` alone runs a node (or ``--cluster N`` routed nodes) in the foreground until
Ctrl-C or SIGTERM, printing the client URL(s) on one line of standard output as soon as they
are ready — handy to script against and to watch. ``actorq server start|stop|status`` manage
the detached local node recorded under ``.actorq/``, the one actorq uses when no URL is given.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click
import trio

from ._embedded import open_quiet_nursery, start_server
from ._embedded_cluster import start_cluster
from ._errors import EmbeddedServerError
from ._local_node import DEFAULT_DIRECTORY, ensure_local_node, read_local_node, stop_local_node

_FOREGROUND_OPTIONS = ("port", "host", "store_dir", "nodes", "verbose")


async def _serve(*, port: int, host: str, store_dir: Path | None, nodes: int | None) -> None:
    # Watch the signals from the start, so Ctrl-C also interrupts a slow start-up.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_quiet_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    click.echo(f"{signal.Signals(signum).name}: stopping", err=True)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            where = store_dir if store_dir is not None else "a temporary directory"
            if nodes is None:
                async with start_server(port=port, host=host, store_dir=store_dir) as single:
                    await _announce(single.url, f"node (store: {where})")
            else:
                ports = None if port == 0 else [port + i for i in range(nodes)]
                async with start_cluster(
                    nodes, host=host, store_dir=store_dir, ports=ports
                ) as cluster:
                    await _announce(cluster.url, f"{nodes}-node cluster (stores under: {where})")


async def _announce(url: str, what: str) -> None:
    click.echo(url)  # alone on standard output, for scripts
    click.echo(f"NATS JetStream {what} ready; Ctrl-C to stop", err=True)
    await trio.sleep_forever()


@click.group("server", invoke_without_command=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Client port; 0 picks a free one. With --cluster: the first node's, the others "
    "take the next ports.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream store (with --cluster, one subdirectory per node). Default: a temporary "
    "directory, removed at exit.",
)
@click.option(
    "--cluster",
    "nodes",
    type=click.IntRange(min=2),
    default=None,
    metavar="N",
    help="Run N routed nodes with clustered JetStream instead of one.",
)
@click.option("-v", "--verbose", is_flag=True, help="Echo the server log.")
@click.pass_context
def server(
    ctx: click.Context,
    port: int,
    host: str,
    store_dir: Path | None,
    nodes: int | None,
    verbose: bool,
) -> None:
    """Run NATS with JetStream in the foreground until Ctrl-C.

    Prints the client URL (comma-joined URLs for a cluster) on standard output once ready.
    The subcommands manage the local node under .actorq/ instead.
    """
    if ctx.invoked_subcommand is not None:
        for name in _FOREGROUND_OPTIONS:
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                option = "--cluster" if name == "nodes" else "--" + name.replace("_", "-")
                raise click.UsageError(
                    f"{option} is for the foreground server, not for "
                    f"`actorq server {ctx.invoked_subcommand}`"
                )
        return
    if verbose:
        logging.basicConfig(format="%(message)s")
        logging.getLogger("actorq.embedded").setLevel(logging.DEBUG)
    try:
        trio.run(lambda: _serve(port=port, host=host, store_dir=store_dir, nodes=nodes))
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from None


_directory_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DIRECTORY,
    show_default=True,
    help="Where the local node is recorded (its store is in DIR/store).",
)


@server.command("start")
@_directory_option
def start(directory: Path) -> None:
    """Start the local node (detached) unless it runs; print its URL.

    It keeps running until `actorq server stop`.
    """
    before = read_local_node(directory)
    try:
        url = ensure_local_node(directory)
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from None
    node = read_local_node(directory)
    click.echo(url)
    if node is not None and before is not None and before.pid == node.pid:
        click.echo(f"local node already running (pid {node.pid})", err=True)
    elif node is not None:
        click.echo(
            f"started the local node (pid {node.pid}, store {node.store_dir}); "
            "stop it with `actorq server stop`",
            err=True,
        )


@server.command("stop")
@_directory_option
def stop(directory: Path) -> None:
    """Stop the local node; its store stays."""
    try:
        node = stop_local_node(directory)
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from None
    if node is None:
        click.echo(f"no local node recorded under {directory}", err=True)
    else:
        click.echo(f"stopped the local node (pid {node.pid}); its store stays in {node.store_dir}")


@server.command("status")
@_directory_option
def status(directory: Path) -> None:
    """Show the local node; exit status 1 when it is not running."""
    node = read_local_node(directory)
    if node is None:
        click.echo(f"no local node recorded under {directory}", err=True)
        raise SystemExit(1)
    if not node.answers():
        click.echo(
            f"the local node recorded at {node.url} (pid {node.pid}) does not answer", err=True
        )
        raise SystemExit(1)
    click.echo(f"{node.url}  running (pid {node.pid}, store {node.store_dir})")
