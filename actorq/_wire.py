"""What actorq puts on the wire: task messages, result records and dead letters.

A task message's body is JSON ``{"args": [...], "kwargs": {...}}``; everything about the task
that routing, inspection or the worker needs before decoding the body travels in headers
(task name, id, attempts already made, enqueue time, per-call options). Results and dead
letters are JSON documents of the attrs classes below, written by the one converter. All of it
is readable with the ``nats`` CLI and from any language.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import _codec
from ._errors import TaskCancelled, TaskFailed
from ._names import Layout, keyed_task_id, validate_task_id, validate_task_name
from ._retry import Backoff, RetryPolicy, qualified_name
from .broker import MSG_ID, SCHEDULE, SCHEDULE_TARGET, Message

if TYPE_CHECKING:
    from ._task import BoundCall, Task

H_TASK = "Actorq-Task"
H_ID = "Actorq-Id"
H_ATTEMPT = "Actorq-Attempt"
"""Attempts already made before this message was published (0 for a fresh enqueue)."""
H_ENQUEUED = "Actorq-Enqueued"
H_TIMEOUT = "Actorq-Timeout"
H_DEADLINE = "Actorq-Deadline"
H_RETRY = "Actorq-Retry"
H_RESULT = "Actorq-Result"
"""``stored`` (default) or ``live``: whether the result is kept in the results stream; ``none``
for a task whose outcome is kept elsewhere (a DAG step's, in its run's state)."""
H_RESULT_TTL = "Actorq-Result-Ttl"
H_STATUS = "Actorq-Status"
H_IDEMPOTENCY = "Actorq-Idempotency-Key"
H_RATE_LIMIT = "Actorq-Rate-Limit"
H_RATE_SLOT = "Actorq-Rate-Slot"
"""On a task put back by its rate limit: the start time it reserved (so it is not reserved
twice)."""
H_CONCURRENCY = "Actorq-Concurrency"
"""``<limit>:<key>``: at most ``limit`` tasks with this key run at once."""


class Kind:
    """Error kinds recorded with a failure (`TaskFailed.kind`)."""

    ERROR = "error"
    """The handler raised."""
    TIMEOUT = "timeout"
    DEADLINE = "deadline"
    DECODE = "decode"
    """The message or its arguments could not be decoded."""
    ENCODE = "encode"
    """The result could not be encoded as JSON."""
    UNKNOWN_TASK = "unknown_task"
    RESULT_TOO_LARGE = "result_too_large"
    CANCELLED = "cancelled"


class MalformedMessage(Exception):
    """A task message that cannot be understood; it goes to the dead-letter queue."""


@attrs.frozen
class ErrorInfo:
    kind: str
    message: str
    type: str = ""
    traceback: str = ""


@attrs.frozen
class ResultRecord:
    """The outcome of a task, as stored under its result subject."""

    id: str
    task: str
    status: str
    """``succeeded``, ``failed`` or ``cancelled``."""
    value: Any = None
    error: ErrorInfo | None = None
    attempts: int = 1
    finished_at: float = 0.0
    worker: str = ""


@attrs.frozen
class DeadLetter:
    """A task that failed for good, with everything needed to inspect or requeue it."""

    task_id: str
    task: str
    queue: str
    subject: str
    headers: dict[str, str]
    payload: str
    """The original body: its text when it is UTF-8, else base64 (see ``payload_encoding``)."""
    payload_encoding: str
    attempts: int
    error: ErrorInfo
    failed_at: float
    worker: str = ""
    seq: int = 0
    """Sequence of the entry in the dead-letter stream (set when read back)."""

    def original_payload(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode()


def decode_result(data: bytes) -> ResultRecord:
    """A `ResultRecord` from the JSON stored under a result subject."""
    record: ResultRecord = _codec.converter.structure(_codec.loads(data), ResultRecord)
    return record


def result_value(record: ResultRecord, *, task_id: str, task: str, return_type: Any) -> Any:
    """The value of a finished task, structured to ``return_type``; or the error it ended with.

    Every kind of producer (the trio client, the asyncio and blocking producers) turns an
    outcome into a value or an exception here, so they all raise the same errors.

    Raises:
        TaskFailed: the task failed for good, or its value does not fit ``return_type``
            (kind ``decode``).
        TaskCancelled: the task was cancelled.
    """
    if record.status == "succeeded":
        try:
            return _codec.from_json(record.value, return_type)
        except Exception as error:
            raise TaskFailed(
                task_id=task_id,
                task=task,
                kind=Kind.DECODE,
                message=(
                    "the result does not match the return annotation: "
                    + _codec.describe_structure_error(error)
                ),
                attempts=record.attempts,
            ) from None
    if record.status == "cancelled":
        raise TaskCancelled(f"task {task} ({task_id}) was cancelled")
    info = record.error
    raise TaskFailed(
        task_id=task_id,
        task=task,
        kind=info.kind if info else Kind.ERROR,
        message=info.message if info else "unknown failure",
        type=info.type if info else "",
        remote_traceback=info.traceback if info else "",
        attempts=record.attempts,
    )


def encode_payload_text(payload: bytes) -> tuple[str, str]:
    try:
        return payload.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode(), "base64"


# --- retry policies on the wire --------------------------------------------------------------


def retry_to_header(policy: RetryPolicy) -> str:
    document = {
        "max_attempts": policy.max_attempts,
        "backoff": _codec.to_json(policy.backoff),
        "non_retryable": [
            entry if isinstance(entry, str) else qualified_name(entry)
            for entry in policy.non_retryable
        ],
    }
    return _codec.dumps(document).decode()


def retry_from_header(text: str) -> RetryPolicy:
    document = _codec.loads(text)
    return RetryPolicy(
        max_attempts=document["max_attempts"],
        backoff=_codec.from_json(document["backoff"], Backoff),
        non_retryable=tuple(document.get("non_retryable", ())),
    )


# --- task messages ---------------------------------------------------------------------------


@attrs.frozen
class TaskEnvelope:
    """A task message as a worker sees it, headers parsed."""

    id: str
    task: str
    attempts_before: int
    enqueued_at: float
    timeout: float | None
    deadline: float | None
    retry: RetryPolicy | None
    store_result: bool
    result_ttl: float | None
    payload: bytes
    headers: Mapping[str, str]
    idempotency_key: str | None = None
    rate_limit: str | None = None
    rate_slot: float | None = None
    concurrency: tuple[int, str] | None = None
    """``(limit, key)`` of a task with a concurrency key."""
    publish_result: bool = True
    """False when the outcome is kept elsewhere (``Actorq-Result: none``): nothing is
    published to the results stream."""


def task_headers(
    task: Task[Any, Any], task_id: str, *, now: float, attempts_before: int = 0
) -> dict[str, str]:
    """The headers of a task message enqueued at ``now`` (the broker's clock)."""
    settings = task.settings
    headers = {H_TASK: task.name, H_ID: task_id, H_ENQUEUED: repr(now)}
    if attempts_before:
        headers[H_ATTEMPT] = str(attempts_before)
    if settings.timeout is not None:
        headers[H_TIMEOUT] = repr(float(settings.timeout))
    if isinstance(settings.deadline, dt.timedelta):
        headers[H_DEADLINE] = repr(now + settings.deadline.total_seconds())
    elif settings.deadline is not None:
        headers[H_DEADLINE] = repr(settings.deadline.timestamp())
    if settings.retry is not None:
        headers[H_RETRY] = retry_to_header(settings.retry)
    if not settings.store_result:
        headers[H_RESULT] = "live"
    if settings.result_ttl is not None:
        headers[H_RESULT_TTL] = repr(float(settings.result_ttl))
    if settings.idempotency_key is not None:
        headers[H_IDEMPOTENCY] = settings.idempotency_key
    if settings.concurrency_key is not None:
        headers[H_CONCURRENCY] = f"{settings.concurrency_limit}:{settings.concurrency_key}"
    if settings.rate_limit is not None:
        headers[H_RATE_LIMIT] = settings.rate_limit
    return headers


def task_id_for(layout: Layout, task: Task[Any, Any], new_id: Callable[[], str]) -> str:
    """The id of a task about to be enqueued: fresh, or derived from its dedupe or
    idempotency key so every enqueue with that key shares one id."""
    key = task.settings.idempotency_key or task.settings.dedupe_key
    if key is None:
        return new_id()
    return keyed_task_id(layout.namespace, task.name, key)


def task_message(layout: Layout, call: BoundCall[Any], task_id: str, *, now: float) -> Message:
    """The message that enqueues ``call`` as task ``task_id`` at ``now`` (the broker's clock):
    on its queue's subject, or — when it must wait (``delay``/``at``) — as a schedule the
    server fires onto that subject at its time. The task id doubles as the ``Nats-Msg-Id``,
    so a publish retried after a lost ack is stored once."""
    task, payload = call.task, call.payload
    settings = task.settings
    dag_only = settings.dag_options()
    if dag_only:
        raise ValueError(
            f"task {task.name!r} carries DAG step option(s) {', '.join(dag_only)}: they apply"
            " only to a step of a DAG (dag.step(task.options(...), ...)), not to an enqueue"
        )
    headers = task_headers(task, task_id, now=now)
    headers[MSG_ID] = task_id
    subject = layout.task_subject(settings.queue, task.name, settings.priority)
    run_at = settings.run_at(now)
    if run_at is None:
        return Message(subject, payload, headers)
    headers[SCHEDULE] = schedule_at(run_at)
    headers[SCHEDULE_TARGET] = subject
    return Message(layout.schedule_subject(task_id), payload, headers)


def schedule_at(seconds: float) -> str:
    """A ``Nats-Schedule`` firing once at ``seconds`` since the epoch (to the microsecond;
    the server honours the fraction)."""
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"@at {when.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def _number(headers: Mapping[str, str], name: str) -> float | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise MalformedMessage(f"header {name} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise MalformedMessage(f"header {name} is not finite: {text!r}")
    return value


def parse_task_message(headers: Mapping[str, str], payload: bytes) -> TaskEnvelope:
    """Read a task message's headers. Raises `MalformedMessage` naming the problem."""
    missing = [name for name in (H_TASK, H_ID) if name not in headers]
    if missing:
        raise MalformedMessage(f"missing header(s) {', '.join(missing)}")
    try:
        task_name = validate_task_name(headers[H_TASK])
        task_id = validate_task_id(headers[H_ID])
    except ValueError as error:
        raise MalformedMessage(str(error)) from None
    attempts = _number(headers, H_ATTEMPT) or 0
    retry = None
    if H_RETRY in headers:
        try:
            retry = retry_from_header(headers[H_RETRY])
        except Exception as error:
            raise MalformedMessage(f"header {H_RETRY} is invalid: {error}") from None
    return TaskEnvelope(
        id=task_id,
        task=task_name,
        attempts_before=int(attempts),
        enqueued_at=_number(headers, H_ENQUEUED) or 0.0,
        timeout=_number(headers, H_TIMEOUT),
        deadline=_number(headers, H_DEADLINE),
        retry=retry,
        store_result=headers.get(H_RESULT, "stored") != "live",
        result_ttl=_number(headers, H_RESULT_TTL),
        payload=payload,
        headers=headers,
        idempotency_key=headers.get(H_IDEMPOTENCY),
        rate_limit=headers.get(H_RATE_LIMIT),
        rate_slot=_number(headers, H_RATE_SLOT),
        concurrency=_concurrency(headers),
        publish_result=headers.get(H_RESULT) != "none",
    )


def _concurrency(headers: Mapping[str, str]) -> tuple[int, str] | None:
    text = headers.get(H_CONCURRENCY)
    if text is None:
        return None
    limit, _, key = text.partition(":")
    if not limit.isdigit() or int(limit) < 1 or not key:
        raise MalformedMessage(f"header {H_CONCURRENCY} is not '<limit>:<key>': {text!r}")
    return int(limit), key


def queue_of_subject(layout: Layout, subject: str) -> str:
    """The queue token of a task subject (``actorq.<ns>.task.<queue>.<task>``)."""
    prefix = f"{layout.prefix}.task."
    if subject.startswith(prefix):
        return subject[len(prefix) :].split(".", 1)[0]
    return ""
