"""Counter streams on the memory broker: ``Nats-Incr`` as nats-server 2.12+ applies it (ADR-49).

In a stream with ``allow_msg_counter`` every subject is a counter. A publish carries only an
increment header (``Nats-Incr: +1``, ``-5``, ``0``; any size) and no body; the stream adds it to
the subject's last total and stores ``{"val":"<total>"}`` with the publish's headers, and the
PubAck carries the total. Purging the subject resets it. What the server refuses, with its own
descriptions (measured on nats-server 2.15.1): an increment on a stream without counters, a
publish without one on a counter stream, a body, an increment that is not an integer, and the
headers that make no sense on a counter (expected sequences, rollups). Counter streams can not
have per-message TTLs and keep limits retention (checked with the stream's config).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from ._memory_headers import EXPECTED_LAST_SEQUENCE, EXPECTED_STREAM, Refused
from ._protocol import EXPECTED_LAST_SUBJECT_SEQUENCE, INCR, ROLLUP

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._memory_stream import MemStream

_INCREMENT = re.compile(r"[+-]?\d+")
_FORBIDDEN = (
    ROLLUP,
    EXPECTED_STREAM,
    EXPECTED_LAST_SEQUENCE,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    "Nats-Expected-Last-Msg-Id",
)


def counter_body(total: int) -> bytes:
    """The stored body of a counter message."""
    return json.dumps({"val": str(total)}, separators=(",", ":")).encode()


def counter_total(data: bytes) -> int:
    """The total a stored counter message holds (0 for a body that is not one)."""
    try:
        return int(json.loads(data)["val"])
    except (ValueError, KeyError, TypeError):
        return 0


def apply_increment(
    stream: MemStream, subject: str, data: bytes, headers: Mapping[str, str]
) -> tuple[bytes, int] | None:
    """The body to store and the new total for a publish to a counter stream; None when the
    publish is not a counter message on a counter stream (nothing to do).

    Raises:
        Refused: the server would refuse the message.
    """
    increment = headers.get(INCR)
    if not stream.config.allow_msg_counter:
        if increment is not None:
            raise Refused("message counters is disabled", "the stream has no allow_msg_counter")
        return None
    if increment is None:
        raise Refused("message counter increment is missing", f"publish {INCR} to a counter")
    if data:
        raise Refused("message counter has payload", "a counter message carries no body")
    text = increment.strip()
    if not _INCREMENT.fullmatch(text) or any(name in headers for name in _FORBIDDEN):
        raise Refused(
            "message counter increment is invalid",
            f"{INCR} {increment!r} must be an integer such as +1 or -5, without rollups or"
            " expected sequences",
        )
    last = stream.last_on(subject)
    total = (counter_total(last.data) if last is not None else 0) + int(text)
    return counter_body(total), total
