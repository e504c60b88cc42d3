"""Streams, consumers and stored messages through JetStream's JSON API (loop side).

Management is not the hot path, but speaking the ``$JS.API`` JSON directly (one request, one
JSON answer) keeps every field of actorq's configs under our control (schedules, per-message
TTL, rollups) and gives the server's own error codes to map onto actorq's errors. Runs on the
Bridge's asyncio loop; returns actorq values.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import nats.errors

from .._errors import BrokerError, NotConnected, NotFound
from ._protocol import (
    ConsumerConfig,
    ConsumerInfo,
    StoredMessage,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from nats.aio.client import Client

_NANOS = 1_000_000_000

STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
STREAM_NAME_IN_USE = 10058
NO_MESSAGE_FOUND = 10037
STREAM_STORE_EOF = 10057

_SYSTEM_HEADERS = frozenset(
    {"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Last-Sequence"}
)


class ApiError(BrokerError):
    """The JetStream API answered with an error."""

    def __init__(self, message: str, code: int, err_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code


class ApiNotFound(NotFound):
    """A JetStream API 404 (stream, consumer or message not found)."""

    def __init__(self, message: str, err_code: int) -> None:
        super().__init__(message)
        self.err_code = err_code


def nanos(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * _NANOS)


def parse_time(text: str) -> float:
    """Seconds since the epoch from the server's RFC 3339 time (nanosecond precision)."""
    head, _, fraction = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return base + (float("0." + fraction) if fraction else 0.0)


class Admin:
    """JSON API requests over the Bridge's connection."""

    def __init__(self, nc: Client, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def api(self, subject: str, payload: dict[str, Any] | None, what: str) -> dict[str, Any]:
        """One ``$JS.API`` request; raises `ApiNotFound` / `ApiError` on an error answer."""
        self.check_connected(what)
        body = json.dumps(payload).encode() if payload is not None else b""
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except nats.errors.NoRespondersError:
            raise BrokerError(f"{what}: JetStream is not enabled on the server") from None
        except nats.errors.TimeoutError:
            self.check_connected(what)
            raise BrokerError(
                f"{what}: no answer from JetStream within {self.timeout:g}s"
            ) from None
        answer: dict[str, Any] = json.loads(msg.data)
        error = answer.get("error")
        if error is not None:
            description = error.get("description", "unknown error")
            code, err_code = error.get("code", 0), error.get("err_code", 0)
            if code == 404:
                raise ApiNotFound(f"{what}: {description}", err_code)
            raise ApiError(f"{what}: {description} (code {code}/{err_code})", code, err_code)
        return answer

    def check_connected(self, what: str) -> None:
        """Fail fast instead of waiting out a timeout while the connection is down."""
        if not self.nc.is_connected:
            state = "closed" if self.nc.is_closed else "reconnecting"
            raise NotConnected(f"{what}: not connected to NATS ({state})")

    # --- streams --------------------------------------------------------------------

    async def ensure_stream(self, config: StreamConfig) -> None:
        body = stream_json(config)
        what = f"stream {config.name!r}"
        try:
            await self.api(f"$JS.API.STREAM.CREATE.{config.name}", body, f"create {what}")
        except ApiError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            await self.api(f"$JS.API.STREAM.UPDATE.{config.name}", body, f"update {what}")

    async def stream_info(self, name: str) -> StreamInfo:
        answer = await self.api(f"$JS.API.STREAM.INFO.{name}", None, f"stream {name!r}")
        state = answer["state"]
        return StreamInfo(
            name=answer["config"]["name"],
            messages=state.get("messages", 0),
            bytes=state.get("bytes", 0),
            first_seq=state.get("first_seq", 0),
            last_seq=state.get("last_seq", 0),
            consumer_count=state.get("consumer_count", 0),
        )

    async def delete_stream(self, name: str) -> None:
        await self.api(f"$JS.API.STREAM.DELETE.{name}", None, f"delete stream {name!r}")

    async def purge_stream(self, name: str, subject: str | None) -> int:
        body = {"filter": subject} if subject is not None else None
        answer = await self.api(f"$JS.API.STREAM.PURGE.{name}", body, f"purge stream {name!r}")
        return int(answer.get("purged", 0))

    # --- consumers ------------------------------------------------------------------

    async def ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        body = {"stream_name": stream, "config": consumer_json(config)}
        await self.api(
            f"$JS.API.CONSUMER.CREATE.{stream}.{config.name}",
            body,
            f"consumer {config.name!r} on stream {stream!r}",
        )

    async def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        answer = await self.api(
            f"$JS.API.CONSUMER.INFO.{stream}.{name}", None, f"consumer {name!r} on {stream!r}"
        )
        return ConsumerInfo(
            stream=answer["stream_name"],
            name=answer["name"],
            num_pending=answer.get("num_pending", 0),
            num_ack_pending=answer.get("num_ack_pending", 0),
            num_redelivered=answer.get("num_redelivered", 0),
            num_waiting=answer.get("num_waiting", 0),
        )

    async def delete_consumer(self, stream: str, name: str) -> None:
        await self.api(
            f"$JS.API.CONSUMER.DELETE.{stream}.{name}",
            None,
            f"delete consumer {name!r} on {stream!r}",
        )

    # --- stored messages ------------------------------------------------------------

    async def get(self, stream: str, query: dict[str, Any]) -> StoredMessage | None:
        """Direct get (any replica answers); the API's message get if direct is off."""
        self.check_connected(f"get from stream {stream!r}")
        try:
            msg = await self.nc.request(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(query).encode(), timeout=self.timeout
            )
        except nats.errors.NoRespondersError:
            return await self._get_from_api(stream, query)
        except nats.errors.TimeoutError:
            self.check_connected(f"get from stream {stream!r}")
            raise BrokerError(f"get from stream {stream!r}: no answer in time") from None
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            if status == "404":  # (a missing stream has no direct-get responders at all)
                return None
            raise BrokerError(f"get from stream {stream!r}: {status} {headers.get('Description')}")
        return StoredMessage(
            subject=headers["Nats-Subject"],
            data=msg.data,
            headers={k: v for k, v in headers.items() if k not in _SYSTEM_HEADERS},
            seq=int(headers["Nats-Sequence"]),
            timestamp=parse_time(headers["Nats-Time-Stamp"]),
        )

    async def _get_from_api(self, stream: str, query: dict[str, Any]) -> StoredMessage | None:
        try:
            answer = await self.api(f"$JS.API.STREAM.MSG.GET.{stream}", query, f"stream {stream!r}")
        except ApiNotFound as exc:
            if exc.err_code == NO_MESSAGE_FOUND:
                return None
            raise
        message = answer["message"]
        raw_headers = base64.b64decode(message["hdrs"]) if message.get("hdrs") else b""
        return StoredMessage(
            subject=message["subject"],
            data=base64.b64decode(message.get("data", "")),
            headers=parse_header_block(raw_headers),
            seq=message["seq"],
            timestamp=parse_time(message["time"]),
        )

    async def delete_message(self, stream: str, seq: int) -> None:
        what = f"delete message {seq} from stream {stream!r}"
        try:
            await self.api(f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": seq}, what)
        except ApiError as exc:
            if exc.err_code == STREAM_STORE_EOF:
                raise NotFound(f"{what}: no such message") from None
            raise


def parse_header_block(raw: bytes) -> dict[str, str]:
    """Headers from a ``NATS/1.0`` block (as the message-get API returns them)."""
    headers: dict[str, str] = {}
    for line in raw.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode()] = value.strip().decode("utf-8", "replace")
    return headers


def stream_json(config: StreamConfig) -> dict[str, Any]:
    duplicate_window = config.duplicate_window
    if config.max_age is not None:
        duplicate_window = min(duplicate_window, config.max_age)
    body: dict[str, Any] = {
        "name": config.name,
        "subjects": list(config.subjects),
        "retention": config.retention.value,
        "storage": config.storage.value,
        "num_replicas": config.replicas,
        "max_age": nanos(config.max_age),
        "max_msgs_per_subject": config.max_msgs_per_subject or -1,
        "max_msg_size": config.max_msg_size or -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_consumers": -1,
        "discard": "old",
        "duplicate_window": nanos(duplicate_window),
        "allow_rollup_hdrs": config.allow_rollup,
        "allow_direct": config.allow_direct,
    }
    # Only mention what is on: older servers reject fields they do not know.
    if config.allow_msg_schedules:
        body["allow_msg_schedules"] = True
    if config.allow_msg_ttl:
        body["allow_msg_ttl"] = True
    if config.allow_msg_counter:
        body["allow_msg_counter"] = True
    return body


def consumer_json(config: ConsumerConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "durable_name": config.name,
        "name": config.name,
        "ack_policy": "explicit",
        "ack_wait": nanos(config.ack_wait),
        "max_ack_pending": config.max_ack_pending,
        "max_deliver": config.max_deliver,
        "deliver_policy": config.deliver_policy.value,
        "replay_policy": "instant",
    }
    if len(config.filter_subjects) == 1:
        body["filter_subject"] = config.filter_subjects[0]
    elif config.filter_subjects:
        body["filter_subjects"] = list(config.filter_subjects)
    if config.inactive_threshold is not None:
        body["inactive_threshold"] = nanos(config.inactive_threshold)
    return body
