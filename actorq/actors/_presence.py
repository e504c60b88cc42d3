"""Presence: every running Worker keeps a heartbeat record in its app's workers bucket.

``actorq workers`` (and ``actorq queues``, ``actorq health``) must see which workers are alive
without asking them anything: each worker writes a small JSON record — id, host, pid, queues,
slots, busy slots, counters — into the KV bucket ``actorq_<ns>_workers`` every ``interval``
seconds, each write with a per-key TTL of a few intervals. A worker that stops gracefully
deletes its record; one that crashes (``kill -9``, a lost machine) disappears when its last
write expires. Readers never need a clean-up job.

The actor never fails its worker: a write that fails (NATS down, a slow server) is logged at
debug level and tried again on the next beat.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from .. import _codec
from .._errors import NotFound
from .._names import Layout
from ..broker import Broker, KvConfig
from ._stop import current_stop_signal

if TYPE_CHECKING:
    from .._app import App

logger = logging.getLogger("actorq.worker")

HEARTBEAT_INTERVAL = 2.0
"""Seconds between two writes of a worker's record."""
HEARTBEAT_TTL = 10.0
"""Seconds a record lives without a new write: a crashed worker vanishes after this."""
BUCKET_MAX_AGE = 3600.0
"""Delete markers of stopped workers are dropped after this (live records are rewritten)."""
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=-]")


def workers_bucket(namespace: str) -> str:
    """The KV bucket of an app's worker records (``actorq_<ns>_workers``)."""
    return Layout(namespace).workers_bucket


def worker_key(worker_id: str) -> str:
    """A KV key for a worker id (``host:pid:hex``; the key alphabet is narrower)."""
    return _KEY_UNSAFE.sub("_", worker_id)


@attrs.frozen
class WorkerRecord:
    """What a live worker publishes about itself."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    started: float
    """Seconds since the epoch (the broker's clock)."""
    heartbeat: float
    """When this record was written."""
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0


class _Executions(Protocol):
    @property
    def succeeded(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def retried(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...


class _Statistics(Protocol):
    @property
    def busy(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def executions(self) -> _Executions: ...


class _Client(Protocol):
    @property
    def app(self) -> App: ...
    @property
    def broker(self) -> Broker: ...


class PresentWorker(Protocol):
    """What presence reads of a worker (`actorq.Worker` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def queues(self) -> tuple[str, ...]: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def client(self) -> _Client: ...

    def statistics(self) -> _Statistics: ...


class Presence:
    """Writes a worker's `WorkerRecord` every ``interval`` seconds; deletes it on stop."""

    def __init__(
        self,
        worker: PresentWorker,
        *,
        interval: float = HEARTBEAT_INTERVAL,
        ttl: float = HEARTBEAT_TTL,
    ) -> None:
        self.worker = worker
        self.broker = worker.client.broker
        self.app = worker.client.app
        self.bucket = workers_bucket(self.app.namespace)
        self.key = worker_key(worker.id)
        self.interval = interval
        self.ttl = ttl
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = self.broker.now()
        self._bucket_ready = False

    def record(self) -> WorkerRecord:
        """The worker as it is now."""
        stats = self.worker.statistics()
        executions = stats.executions
        return WorkerRecord(
            id=self.worker.id,
            host=self.host,
            pid=self.pid,
            queues=tuple(self.worker.queues),
            concurrency=self.worker.concurrency,
            busy=stats.busy,
            started=self.started,
            heartbeat=self.broker.now(),
            received=stats.received,
            succeeded=executions.succeeded,
            failed=executions.failed,
            retried=executions.retried,
            dead_lettered=executions.dead_lettered,
        )

    async def beat(self) -> bool:
        """Write the record once; False (logged) if it could not be written."""
        try:
            if not self._bucket_ready:
                await self.broker.ensure_kv(
                    KvConfig(
                        bucket=self.bucket,
                        max_age=BUCKET_MAX_AGE,
                        replicas=self.app.replicas,
                        allow_per_key_ttl=True,
                    )
                )
                self._bucket_ready = True
            # Every revision carries its own TTL, so each write renews the record's life.
            await self.broker.kv_put(
                self.bucket, self.key, _codec.dumps(self.record()), ttl=self.ttl
            )
        except Exception as error:
            logger.debug("presence of worker %s not written: %r", self.worker.id, error)
            return False
        return True

    async def run(
        self, *, task_status: trio.TaskStatus[Presence] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Beat until asked to stop, then delete the record."""
        stop = current_stop_signal()
        # The first record is written before the worker counts as started (so a reader that
        # saw the worker ready finds it), but never holds the start up for long.
        with trio.move_on_after(min(self.interval, 2.0)):
            await self.beat()
        task_status.started(self)
        try:
            with stop.move_on():
                while True:
                    await trio.sleep(self.interval)
                    await self.beat()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                try:
                    await self.broker.kv_delete(self.bucket, self.key)
                except Exception as error:
                    logger.debug("presence of worker %s not removed: %r", self.worker.id, error)


def presence_of(worker: PresentWorker) -> Presence:
    """The presence actor of a worker (a child of the Worker's supervisor)."""
    return Presence(worker)


async def read_workers(broker: Broker, namespace: str) -> list[WorkerRecord]:
    """The live workers of an app, by id (none when the bucket does not exist yet).

    Records whose last heartbeat is older than their TTL are skipped even if the server has
    not removed them yet.
    """
    bucket = workers_bucket(namespace)
    try:
        keys = await broker.kv_keys(bucket)
    except NotFound:
        return []
    now = broker.now()
    records: list[WorkerRecord] = []
    for key in keys:
        try:
            entry = await broker.kv_get(bucket, key)
        except NotFound:
            break  # the bucket went away while we read it
        if entry is None:
            continue
        try:
            record = _codec.converter.structure(_codec.loads(entry.value), WorkerRecord)
        except Exception:
            continue  # a record of another version of actorq: not ours to read
        if now - record.heartbeat <= HEARTBEAT_TTL:
            records.append(record)
    return sorted(records, key=lambda record: (record.started, record.id))
