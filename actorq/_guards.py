"""What a worker checks before running a task: idempotency records and concurrency slots.

Both live in the app's KV buckets, so every worker sees the same state:

- **idempotency**: a task enqueued with an ``idempotency_key`` has an id derived from the key;
  once it succeeded, its result record is kept under that id (for the app's
  ``idempotency_ttl``), and any later delivery of the same key is answered from it without
  running;
- **concurrency**: a task with a ``concurrency_key`` runs only while it holds one of the key's
  ``limit`` slots — KV keys ``<hash>.<i>`` created with a per-key TTL, renewed while the task
  runs and deleted (by revision) when it ends, so a crashed worker's slot frees itself.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from ._errors import KeyExists, NotFound, WrongRevision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .broker import Broker

logger = logging.getLogger("actorq.worker")


class IdempotencyRecords:
    """Result records of tasks whose idempotency key succeeded, by task id."""

    def __init__(self, broker: Broker, bucket: str, ttl: float) -> None:
        self.broker = broker
        self.bucket = bucket
        self.ttl = ttl

    async def completed(self, task_id: str) -> bytes | None:
        entry = await self.broker.kv_get(self.bucket, task_id)
        return None if entry is None else entry.value

    async def remember(self, task_id: str, record: bytes) -> None:
        await self.broker.kv_put(self.bucket, task_id, record, ttl=self.ttl)


@attrs.frozen
class _Slot:
    key: str
    revision: int


class ConcurrencySlots:
    """At most ``limit`` holders of a key at once, across every worker of the app."""

    def __init__(self, broker: Broker, bucket: str, *, owner: str, ttl: float) -> None:
        self.broker = broker
        self.bucket = bucket
        self.owner = owner.encode()
        self.ttl = ttl

    @staticmethod
    def _prefix(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    async def try_acquire(self, key: str, limit: int) -> _Slot | None:
        prefix = self._prefix(key)
        for index in range(limit):
            slot_key = f"{prefix}.{index}"
            try:
                revision = await self.broker.kv_create(
                    self.bucket, slot_key, self.owner, ttl=self.ttl
                )
            except KeyExists:
                continue
            return _Slot(slot_key, revision)
        return None

    @asynccontextmanager
    async def held(self, slot: _Slot) -> AsyncIterator[None]:
        """Keep ``slot`` (renewing its TTL) for the duration of the block, then free it."""
        current = slot
        async with trio.open_nursery() as nursery:

            async def renew() -> None:
                nonlocal current
                while True:
                    await trio.sleep(self.ttl / 3)
                    try:
                        revision = await self.broker.kv_update(
                            self.bucket, current.key, self.owner, current.revision, ttl=self.ttl
                        )
                    except Exception as error:  # the task goes on; the slot may be lost
                        logger.warning("concurrency slot %s not renewed: %s", current.key, error)
                        return
                    current = _Slot(current.key, revision)

            nursery.start_soon(renew)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await self.broker.kv_delete(
                            self.bucket, current.key, revision=current.revision
                        )
                    except (WrongRevision, NotFound):
                        pass  # expired and taken by another: not ours to delete
