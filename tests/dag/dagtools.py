"""Helpers shared by the DAG tests (imported by name: test directories are on sys.path)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import actorq
from actorq.testing import running_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

FAST = actorq.DagSettings(sweep_interval=1.0, leader_ttl=2.0, phantom_after=3.0)
"""Short sweeps and leases, so recovery happens within seconds of (virtual) time."""


@asynccontextmanager
async def dag_worker(client: actorq.Client, **options: Any) -> AsyncIterator[actorq.Worker]:
    """A worker that runs steps and schedules runs, with `FAST` settings unless overridden."""
    options.setdefault("dags", FAST)
    options.setdefault("ack_wait", 5.0)
    async with running_worker(client, **options) as worker:
        yield worker
