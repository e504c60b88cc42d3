"""The ``actorq`` command line."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="actorq")
def cli() -> None:
    """actorq: a task queue and workflow engine on trio and NATS JetStream."""


def main() -> None:
    """Entry point of the ``actorq`` console script."""
    cli()
