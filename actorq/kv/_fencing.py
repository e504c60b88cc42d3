"""Fencing tokens: proof of holding a lease, checked by every fenced write.

A lease (a lock, a leadership) is a KV key created with a TTL. Its *fencing token* is the
revision at which it was created: revisions are stream sequences, so a lease acquired later
always has a higher token. A holder that stalls (a long GC pause, a partition) may not notice
at once that its lease expired and someone else holds it now; fencing makes sure it can do no
harm meanwhile. A fenced write to a typed store

1. refuses if the key was last written under a higher token (a newer holder wrote it),
2. refuses if the lease key no longer holds this holder's owner id (the lease is gone), and
3. writes by compare-and-set on the revision it read, recording its token in the value.

So once a newer holder has written a key, no older holder can write it again, and a holder
whose lease is visibly gone cannot write at all. The value's JSON carries the token in one
extra field, ``_actorq_fence``, which reading strips off.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs

from .._codec import converter
from .._errors import FencedOut

if TYPE_CHECKING:
    from ..broker import Broker

FENCE_FIELD = "_actorq_fence"
"""The field of a fenced value's JSON object that holds the writer's fencing token."""


@attrs.frozen
class LeaseRecord:
    """The value of a lease key (JSON on the wire, readable with ``nats kv get``)."""

    owner: str
    """A random id unique to this acquisition (so a holder recognises its own lease)."""
    holder: str
    """Who holds it, for people: host, process id and a label."""
    acquired: float
    """When it was acquired, seconds since the epoch (the broker's clock)."""
    ttl: float
    """Seconds it lives without renewal."""


def encode_record(record: LeaseRecord) -> bytes:
    return json.dumps(converter.unstructure(record), separators=(",", ":")).encode()


def decode_record(data: bytes) -> LeaseRecord | None:
    """The record in a lease key's value, or None if it is not one."""
    try:
        return converter.structure(json.loads(data), LeaseRecord)
    except Exception:  # noqa: BLE001 - anything else under the key is "not a lease of ours"
        return None


@attrs.frozen
class Fence:
    """What a fenced write needs: the lease it relies on and that lease's fencing token.

    Get one from a held lock (``lease.fence``) or from a `LeaderElector` while it leads
    (``elector.fence``), and pass it to a typed store's ``put``/``update``/``delete`` as
    ``fence=``.
    """

    broker: Broker = attrs.field(repr=False, eq=False)
    bucket: str
    """The lease's bucket."""
    key: str
    """The lease's key (the lock's or role's name)."""
    owner: str
    """The owner id of the acquisition this fence belongs to."""
    token: int
    """The fencing token: the lease's revision when it was created."""

    async def verify(self) -> None:
        """Check that the lease is still held by this acquisition.

        Raises:
            FencedOut: the lease key is gone or holds another owner.
        """
        entry = await self.broker.kv_get(self.bucket, self.key)
        record = decode_record(entry.value) if entry is not None else None
        if record is None or record.owner != self.owner:
            now = "nobody holds it" if record is None else f"{record.holder} holds it now"
            raise FencedOut(
                f"fenced write refused: the lease {self.key!r} (token {self.token}) is no longer"
                f" held by this holder ({now})"
            )


def add_fence(data: object, token: int, where: str) -> object:
    """The unstructured value ``data`` with ``token`` recorded in it.

    Raises:
        TypeError: the value is not a JSON object (only objects can carry the token).
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"{where}: a fenced write needs a value that is a JSON object (an attrs class),"
            f" got {type(data).__name__}"
        )
    return {**data, FENCE_FIELD: token}


def split_fence(data: object) -> tuple[object, int | None]:
    """An unstructured value without its fencing token, and the token (None if unfenced)."""
    if isinstance(data, dict) and FENCE_FIELD in data:
        rest = dict(data)
        token = rest.pop(FENCE_FIELD)
        return rest, int(token) if isinstance(token, int) else None
    return data, None
