"""The streams of one app: the configs of its task, result and dead-letter streams.

Every kind of client creates them on connect (idempotently), so whichever starts first — a
worker, the trio client, an asyncio or blocking producer — finds them: one definition here,
shared by all of them. See docs/architecture.md for the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker import KvConfig, Retention, StreamConfig

if TYPE_CHECKING:
    from ._app import App

DLQ_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a dead letter is kept."""
CANCEL_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a cancellation mark is kept (long enough for any queued task to be picked up)."""
DEDUPE_WINDOW = 120.0
"""Seconds within which a second publish with the same ``Nats-Msg-Id`` is stored once."""


def app_stream_configs(app: App) -> tuple[StreamConfig, StreamConfig, StreamConfig]:
    """The configs of the app's tasks, results and dead-letter streams."""
    layout = app.layout
    return (
        StreamConfig(
            name=layout.tasks_stream,
            subjects=(layout.task_subjects, layout.schedule_subjects),
            retention=Retention.WORK_QUEUE,
            replicas=app.replicas,
            duplicate_window=DEDUPE_WINDOW,
            allow_msg_schedules=True,
        ),
        StreamConfig(
            name=layout.results_stream,
            subjects=(layout.result_subjects,),
            replicas=app.replicas,
            max_age=app.result_ttl,
            max_msgs_per_subject=1,
            allow_msg_ttl=True,
        ),
        StreamConfig(
            name=layout.dlq_stream,
            subjects=(layout.dlq_subjects,),
            replicas=app.replicas,
            max_age=DLQ_MAX_AGE,
        ),
    )


DAG_HISTORY = 5
"""Revisions kept per key of the DAG bucket: enough to read how a step got where it is."""


def app_bucket_configs(app: App) -> tuple[KvConfig, ...]:
    """The app's KV buckets: cancellation marks, idempotency records, concurrency slots, DAG
    runs."""
    layout = app.layout
    return (
        KvConfig(bucket=layout.cancel_bucket, max_age=CANCEL_MAX_AGE, replicas=app.replicas),
        KvConfig(bucket=layout.idempotency_bucket, replicas=app.replicas, allow_per_key_ttl=True),
        KvConfig(bucket=layout.concurrency_bucket, replicas=app.replicas, allow_per_key_ttl=True),
        KvConfig(bucket=layout.dags_bucket, history=DAG_HISTORY, replicas=app.replicas),
    )
