"""OpenTelemetry tracing for actorq, as middleware (``pip install 'actorq[otel]'``).

``app.use(OpenTelemetryMiddleware())`` gives every enqueue a producer span and every attempt
a consumer span, and carries the trace context in the message headers (W3C ``traceparent``),
so one trace runs from the code that enqueued a task through the worker that ran it — and
into whatever the handler calls, since its span is current while the handler runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._middleware import Middleware

if TYPE_CHECKING:
    from .._context import TaskContext
    from .._middleware import Dispatch, DispatchNext, ProcessNext

SYSTEM = "nats"


class OpenTelemetryMiddleware(Middleware):
    """Spans for enqueue (``PRODUCER``) and process (``CONSUMER``), linked through headers.

    Args:
        tracer_provider: Where spans go; the global provider by default.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("actorq", tracer_provider=tracer_provider)

    async def dispatch(self, dispatch: Dispatch, call_next: DispatchNext) -> None:
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": dispatch.queue,
            "actorq.task": dispatch.task.name,
            "actorq.task_id": dispatch.task_id,
        }
        with self.tracer.start_as_current_span(
            f"enqueue {dispatch.task.name}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            propagate.inject(dispatch.headers)
            await call_next(dispatch)

    async def process(self, task: TaskContext, call_next: ProcessNext) -> Any:
        parent = propagate.extract(dict(task.headers))
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": task.queue,
            "actorq.task": task.name,
            "actorq.task_id": task.id,
            "actorq.attempt": task.attempt,
        }
        token = otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(
                f"process {task.name}",
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                record_exception=True,
                set_status_on_exception=True,
            ) as span:
                value = await call_next()
                span.set_status(Status(StatusCode.OK))
                return value
        finally:
            otel_context.detach(token)
