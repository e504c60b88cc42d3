"""OpenTelemetry spans and Prometheus metrics, both built on middleware."""

from __future__ import annotations

import socket
import urllib.request

import pytest
import trio
import trio.testing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import actorq
from actorq import Backoff, RetryPolicy
from actorq.contrib.otel import OpenTelemetryMiddleware
from actorq.contrib.prometheus import PrometheusMiddleware
from actorq.testing import running_worker


async def test_a_trace_runs_from_the_producer_through_the_worker_into_the_handler(
    autojump_clock: trio.testing.MockClock, memory_url: str, namespace: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("handler")
    app = actorq.App(namespace)
    app.use(OpenTelemetryMiddleware(tracer_provider=provider))

    @app.task
    async def lookup(user: str) -> str:
        with tracer.start_as_current_span("database query"):
            return user.upper()

    async with actorq.connect(app, memory_url) as client, running_worker(client) as worker:
        with tracer.start_as_current_span("web request"):
            assert await client.call(lookup, "ada") == "ADA"
        await worker.wait_idle()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, enqueue = spans["web request"], spans[f"enqueue {lookup.name}"]
    process, query = spans[f"process {lookup.name}"], spans["database query"]
    assert len({s.context.trace_id for s in (request, enqueue, process, query)}) == 1
    assert enqueue.parent.span_id == request.context.span_id
    assert process.parent.span_id == enqueue.context.span_id
    assert query.parent.span_id == process.context.span_id
    assert (enqueue.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert process.attributes["actorq.attempt"] == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metric(text: str, name: str, task: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'task="{task}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {task} not exported:\n{text}")


async def test_prometheus_counts_outcomes_and_serves_them(memory_url: str, namespace: str) -> None:
    metrics = PrometheusMiddleware()
    app = actorq.App(
        namespace, default_retry=RetryPolicy(max_attempts=2, backoff=Backoff.constant(0.01))
    )
    app.use(metrics)
    calls = 0

    @app.task
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("once")

    @app.task
    async def broken() -> None:
        raise RuntimeError("always")

    port = free_port()
    server, thread = metrics.serve(port, addr="127.0.0.1")
    try:
        with trio.fail_after(10):
            async with actorq.connect(app, memory_url) as client, running_worker(client) as worker:
                await client.call(flaky)
                with pytest.raises(actorq.TaskFailed):
                    await client.call(broken)
                await worker.wait_idle()
            url = f"http://127.0.0.1:{port}/metrics"
            text = await trio.to_thread.run_sync(scrape, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert metric(text, "actorq_tasks_enqueued_total", flaky.name) == 1
    assert metric(text, "actorq_tasks_started_total", flaky.name) == 2
    assert metric(text, "actorq_tasks_retried_total", flaky.name) == 1
    assert metric(text, "actorq_tasks_succeeded_total", flaky.name) == 1
    assert metric(text, "actorq_tasks_failed_total", broken.name) == 2
    assert metric(text, "actorq_tasks_dead_lettered_total", broken.name) == 1
    assert metric(text, "actorq_task_duration_seconds_count", flaky.name) == 2
    assert metric(text, "actorq_task_queue_wait_seconds_count", broken.name) == 2
