"""The ``actorq`` command line.

A click group; each family of commands lives in its own ``_cli_*`` module and is added here,
so this file stays the table of contents:

- ``actorq run``: a worker for an app (`actorq._cli_run`, `actorq._cli_processes`);
- ``actorq demo``: the tour on an embedded NATS (`actorq._demo`);
- ``actorq server``: NATS for actorq, foreground or the local node (`actorq._cli_server`);
- inspection: ``queues``, ``workers``, ``task``, ``enqueue``, ``purge``, ``health``
  (`actorq._cli_inspect`) and ``dlq`` (`actorq._cli_dlq`).

Shared conventions (app loading, URLs, output, exit codes) are in `actorq._cli_common`.
"""

from __future__ import annotations

import click

from ._cli_dag import dag
from ._cli_dlq import dlq
from ._cli_inspect import health, purge, queues, workers
from ._cli_run import run
from ._cli_server import server
from ._cli_tasks import enqueue, task
from ._demo import demo


@click.group()
@click.version_option(package_name="actorq")
def cli() -> None:
    """actorq: a task queue and workflow engine on trio and NATS JetStream."""


cli.add_command(run)
cli.add_command(demo)
cli.add_command(server)
for command in (queues, workers, task, enqueue, dlq, dag, purge, health):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``actorq`` console script."""
    cli()
