"""What actorq puts on the wire: task messages, result records and dead letters.

A task message's body is JSON ``{"args": [...], "kwargs": {...}}``; everything about the task
that routing, inspection or the worker needs before decoding the body travels in headers
(task name, id, attempts already made, enqueue time, per-call options). Results and dead
letters are JSON documents of the attrs classes below, written by the one converter. All of it
is readable with the ``nats`` CLI and from any language.
"""

from __future__ import annotations

import base64
import math
import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from . import _codec
from ._names import Layout, validate_task_id, validate_task_name
from ._retry import Backoff, RetryPolicy, qualified_name
from ._task import Task

H_TASK = "Actorq-Task"
H_ID = "Actorq-Id"
H_ATTEMPT = "Actorq-Attempt"
"""Attempts already made before this message was published (0 for a fresh enqueue)."""
H_ENQUEUED = "Actorq-Enqueued"
H_TIMEOUT = "Actorq-Timeout"
H_DEADLINE = "Actorq-Deadline"
H_RETRY = "Actorq-Retry"
H_RESULT = "Actorq-Result"
"""``stored`` (default) or ``live``: whether the result is kept in the results stream."""
H_RESULT_TTL = "Actorq-Result-Ttl"
H_STATUS = "Actorq-Status"


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
    return headers


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
    )


def queue_of_subject(layout: Layout, subject: str) -> str:
    """The queue token of a task subject (``actorq.<ns>.task.<queue>.<task>``)."""
    prefix = f"{layout.prefix}.task."
    if subject.startswith(prefix):
        return subject[len(prefix) :].split(".", 1)[0]
    return ""
