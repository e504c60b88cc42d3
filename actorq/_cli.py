"""The ``actorq`` command line.

A click group; each family of commands lives in its own ``_cli_*`` module and is added here,
so this file stays the table of contents.
"""

from __future__ import annotations

import click

from ._cli_server import server


@click.group()
@click.version_option(package_name="actorq")
def cli() -> None:
    """actorq: a task queue and workflow engine on trio and NATS JetStream."""


cli.add_command(server)


def main() -> None:
    """Entry point of the ``actorq`` console script."""
    cli()
