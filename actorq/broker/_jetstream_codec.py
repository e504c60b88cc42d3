"""Bytes of the hot path: PUB/HPUB commands, PubAcks, and the ``$JS.ACK`` reply subject.

The JetStream broker writes its publishes and acks as ready-made protocol commands into
nats-py's outgoing buffer (see `RawWriter`) instead of calling ``nc.publish`` per message,
which validates and formats every call with general-purpose code: on the hot path that costs
more than everything else the Bridge adds. What ``nc.publish`` guarantees is kept here:
subjects without whitespace or CR/LF (so no command can be injected), header names that are
HTTP tokens, header values with CR/LF turned into spaces, payloads within the server's limit.

Pure functions, no I/O; usable on either side of the Bridge.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from .._errors import BrokerError
from ._protocol import Delivery, PubAck

if TYPE_CHECKING:
    from collections.abc import Mapping

_NANOS = 1_000_000_000
_BAD_SUBJECT = re.compile(r"[ \t\r\n]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


class EncodeError(ValueError):
    """A subject or header that cannot go on the wire."""


@functools.lru_cache(maxsize=8192)
def subject_bytes(subject: str) -> bytes:
    """The subject, encoded, after the checks ``nc.publish`` makes (cached: subjects repeat)."""
    if not subject or _BAD_SUBJECT.search(subject):
        raise EncodeError(f"invalid subject {subject!r}: empty, or contains whitespace")
    return subject.encode()


@functools.lru_cache(maxsize=1024)
def _header_name(name: str) -> bytes:
    key = name.strip()
    if not _HEADER_NAME.fullmatch(key):
        raise EncodeError(f"invalid header name {name!r}")
    return key.encode() + b": "


def header_block(headers: Mapping[str, str]) -> bytes:
    """A ``NATS/1.0`` header block; values lose CR/LF (replaced by spaces), as with nats-py."""
    parts = [b"NATS/1.0\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            value = value.translate(_NEWLINES)
        parts.append(_header_name(name) + value.strip().encode() + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def pub_command(
    subject: str, reply: str, data: bytes, headers: Mapping[str, str] | None = None
) -> bytes:
    """A complete ``PUB`` (or ``HPUB`` with headers) protocol command."""
    head = subject_bytes(subject)
    if reply:
        head += b" " + subject_bytes(reply)
    if headers:
        block = header_block(headers)
        return b"HPUB %s %d %d\r\n%s%s\r\n" % (
            head,
            len(block),
            len(block) + len(data),
            block,
            data,
        )
    return b"PUB %s %d\r\n%s\r\n" % (head, len(data), data)


def reply_command(ack_subject: str, body: bytes) -> bytes:
    """A publish of an ack body to a delivery's ``$JS.ACK`` subject (trusted: the server's)."""
    return b"PUB %s %d\r\n%s\r\n" % (ack_subject.encode(), len(body), body)


# --- PubAcks --------------------------------------------------------------------------------

_STREAM_PREFIX = b'{"stream":"'
_SEQ = b'","seq":'


def parse_puback(data: bytes) -> PubAck | dict[str, Any]:
    """A `PubAck`, or the API's error object (``{"code":..,"err_code":..,"description":..}``).

    The server writes PubAcks as ``{"stream":"S","seq":N}`` with an optional
    ``,"duplicate":true`` (and, on newer servers, other fields, such as a counter stream's
    ``"val":"<total>"``); that common shape is read without a JSON parser, anything else goes
    through ``json.loads``.
    """
    if data.startswith(_STREAM_PREFIX):
        end = data.find(b'"', len(_STREAM_PREFIX))
        if end > 0 and data.startswith(_SEQ, end):
            stream = data[len(_STREAM_PREFIX) : end]
            start = end + len(_SEQ)
            stop = start
            size = len(data)
            while stop < size and 48 <= data[stop] <= 57:
                stop += 1
            tail = data[stop:] if stop > start else b""
            if tail == b"}":
                return PubAck(stream.decode(), int(data[start:stop]), False)
            if tail == b',"duplicate":true}':
                return PubAck(stream.decode(), int(data[start:stop]), True)
    answer = json.loads(data)
    error = answer.get("error")
    if error is not None:
        return dict(error)
    value = answer.get("val")  # counter streams: the total after the increment, as a string
    return PubAck(
        answer["stream"],
        answer["seq"],
        bool(answer.get("duplicate", False)),
        int(value) if value is not None else None,
    )


# --- deliveries ------------------------------------------------------------------------------


def parse_delivery(
    subject: str, reply: str, data: bytes, headers: dict[str, str] | None
) -> Delivery:
    """A `Delivery` from a message whose reply subject is a ``$JS.ACK`` subject.

    Two layouts exist (ADR-15): v1 ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.
    <ts>.<pending>`` (9 tokens) and v2 ``$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.
    <delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>...]`` (11 or more; domain ``_`` = none).
    """
    tokens = reply.split(".")
    count = len(tokens)
    if count == 9:
        start = 2
    elif count >= 11:
        start = 4
    else:
        raise BrokerError(f"not a JetStream ack subject: {reply!r}")
    if tokens[1] != "ACK" or tokens[0] != "$JS":
        raise BrokerError(f"not a JetStream ack subject: {reply!r}")
    return Delivery(
        subject,
        data,
        headers if headers is not None else {},
        tokens[start],
        tokens[start + 1],
        int(tokens[start + 3]),
        int(tokens[start + 4]),
        int(tokens[start + 2]),
        int(tokens[start + 6]),
        int(tokens[start + 5]) / _NANOS,
        reply,
    )
