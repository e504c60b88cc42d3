"""Prometheus metrics for actorq, as middleware (``pip install 'actorq[prometheus]'``).

``app.use(PrometheusMiddleware())`` counts, per task and queue, what was enqueued, started,
succeeded, failed (every failed attempt), retried, dead-lettered and cancelled, and observes
handler durations and queue waits (enqueue to start). ``serve(port)`` exposes them over HTTP
for a scraper (``actorq run --metrics-port``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from .._middleware import Middleware

if TYPE_CHECKING:
    from .._context import TaskContext
    from .._middleware import Dispatch, DispatchNext, ProcessNext, Settled

_LABELS = ("task", "queue")


class PrometheusMiddleware(Middleware):
    """Counters and histograms per task and queue (metric names start with ``prefix``).

    Args:
        registry: Where the metrics are registered (a fresh `CollectorRegistry` by default,
            so several apps in one process do not collide).
        prefix: Prefix of every metric name.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, prefix: str = "actorq"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()

        def counter(name: str, help_text: str) -> Counter:
            return Counter(f"{prefix}_{name}", help_text, _LABELS, registry=self.registry)

        self.enqueued = counter("tasks_enqueued", "Tasks enqueued.")
        self.started = counter("tasks_started", "Attempts started.")
        self.succeeded = counter("tasks_succeeded", "Tasks that succeeded.")
        self.failed = counter("tasks_failed", "Attempts that failed (retried or not).")
        self.retried = counter("tasks_retried", "Failed attempts that will be retried.")
        self.dead_lettered = counter("tasks_dead_lettered", "Tasks that failed for good.")
        self.cancelled = counter("tasks_cancelled", "Tasks cancelled.")
        self.duration = Histogram(
            f"{prefix}_task_duration_seconds", "Handler run time.", _LABELS, registry=self.registry
        )
        self.queue_wait = Histogram(
            f"{prefix}_task_queue_wait_seconds",
            "Time from enqueue to the start of an attempt.",
            _LABELS,
            registry=self.registry,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Expose the metrics at ``http://addr:port/metrics`` (a background thread)."""
        return start_http_server(port, addr=addr, registry=self.registry)

    async def dispatch(self, dispatch: Dispatch, call_next: DispatchNext) -> None:
        await call_next(dispatch)
        self.enqueued.labels(dispatch.task.name, dispatch.queue).inc()

    async def process(self, task: TaskContext, call_next: ProcessNext) -> Any:
        labels = (task.name, task.queue)
        self.started.labels(*labels).inc()
        wait = (dt.datetime.now(dt.UTC) - task.enqueued_at).total_seconds()
        self.queue_wait.labels(*labels).observe(max(0.0, wait))
        return await call_next()

    def settled(self, task: TaskContext, outcome: Settled) -> None:
        labels = (task.name, task.queue)
        status = outcome.status
        if status == "succeeded":
            self.succeeded.labels(*labels).inc()
        elif status == "cancelled":
            self.cancelled.labels(*labels).inc()
        elif status in ("retried", "failed"):
            self.failed.labels(*labels).inc()
            (self.retried if status == "retried" else self.dead_lettered).labels(*labels).inc()
        if outcome.duration:
            self.duration.labels(*labels).observe(outcome.duration)
