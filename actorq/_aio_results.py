"""Results for the asyncio producer: one subscription, stored results, and the handles.

The same scheme as the trio client's ResultRouter (see docs/architecture.md), on the caller's
asyncio loop: task ids begin with the producer's origin, so one plain subscription on
``result.<origin>.*`` brings the result of every task this producer enqueued. A result that
was published before anyone listened — another process's task, a handle made late, a result
sent while the connection was down — is read from the results stream with a direct get of the
last message on its subject. After a reconnect every unresolved handle re-reads its stored
result, because a plain subscription misses what is published while disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._errors import ResultTimeout
from ._names import Layout, task_origin
from ._wire import ResultRecord, decode_result, result_value

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from .broker._jetstream_admin import Admin

logger = logging.getLogger("actorq.producer")

R = TypeVar("R")


class _Pending:
    """Where the outcome of one task lands; held by its handles, so it lives as long as they."""

    __slots__ = ("__weakref__", "arrived", "epoch", "record", "task_id")

    def __init__(self, task_id: str, epoch: int) -> None:
        self.task_id = task_id
        self.record: ResultRecord | None = None
        self.arrived = asyncio.Event()
        self.epoch = epoch
        """The listener's connection epoch when this outcome was last known not missed."""

    def resolve(self, record: ResultRecord) -> None:
        if self.record is None:
            self.record = record
            self.arrived.set()


class ResultListener:
    """Receives one producer's results and resolves the handles waiting for them."""

    def __init__(self, nc: NatsClient, admin: Admin, layout: Layout, origin: str) -> None:
        self._nc = nc
        self._admin = admin
        self._layout = layout
        self.origin = origin
        self._pending: weakref.WeakValueDictionary[str, _Pending] = weakref.WeakValueDictionary()
        self._subscription: Subscription | None = None
        self._rechecks: set[asyncio.Task[None]] = set()
        self.epoch = 0
        """Increments whenever the subscription may have missed results (a reconnect)."""

    async def start(self) -> None:
        subject = self._layout.result_origin_subjects(self.origin)
        self._subscription = await self._nc.subscribe(subject, cb=self._on_message)

    async def stop(self) -> None:
        for task in list(self._rechecks):
            task.cancel()
        if self._subscription is not None and not self._nc.is_closed:
            try:
                await self._subscription.unsubscribe()
            except Exception:  # noqa: BLE001 - closing anyway; the server drops it with us
                logger.debug("unsubscribing the result subscription failed", exc_info=True)

    def expect(self, task_id: str) -> _Pending:
        """The pending outcome of ``task_id``, registered so results are routed there."""
        pending = self._pending.get(task_id)
        if pending is None:
            pending = _Pending(task_id, self.epoch)
            self._pending[task_id] = pending
        return pending

    def reconnected(self) -> None:
        """After a reconnect: re-read the stored outcome of everything still awaited."""
        self.epoch += 1
        task = asyncio.ensure_future(self._recheck())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _recheck(self) -> None:
        for pending in list(self._pending.values()):
            if pending.record is None:
                try:
                    await self._fetch_stored(pending)
                except Exception as error:  # noqa: BLE001 - a waiter re-reads on its own
                    logger.debug("re-reading result %s failed: %s", pending.task_id, error)

    async def _on_message(self, msg: Msg) -> None:
        pending = self._pending.get(msg.subject.rsplit(".", 1)[-1])
        if pending is not None:
            self._resolve_from(pending, msg)

    def _resolve_from(self, pending: _Pending, msg: Msg) -> None:
        try:
            pending.resolve(decode_result(msg.data))
        except Exception as error:  # noqa: BLE001 - a bad result must not stop the others
            logger.error("undecodable result on %s: %s", msg.subject, error)

    async def _fetch_stored(self, pending: _Pending) -> None:
        epoch = self.epoch
        stored = await self._admin.get(
            self._layout.results_stream,
            {"last_by_subj": self._layout.result_subject(pending.task_id)},
        )
        if stored is not None:
            pending.resolve(decode_result(stored.data))
        pending.epoch = epoch

    async def wait(self, pending: _Pending) -> ResultRecord:
        """Wait for an outcome, reading the stored one when it may have been missed live."""
        if pending.record is None:
            if task_origin(pending.task_id) == self.origin:
                if pending.epoch != self.epoch:
                    await self._fetch_stored(pending)
                await pending.arrived.wait()
            else:
                await self._wait_foreign(pending)
        assert pending.record is not None
        return pending.record

    async def _wait_foreign(self, pending: _Pending) -> None:
        # Another producer's task (or a keyed id): its results do not come through our
        # subscription, so listen on its own subject while we wait — subscribe first, then
        # read the stored one, so nothing falls in between.
        async def on_message(msg: Msg) -> None:
            self._resolve_from(pending, msg)

        subscription = await self._nc.subscribe(
            self._layout.result_subject(pending.task_id), cb=on_message
        )
        try:
            await self._fetch_stored(pending)
            await pending.arrived.wait()
        finally:
            if not self._nc.is_closed:
                await subscription.unsubscribe()


@final
class TaskHandle(Generic[R]):
    """A task that was enqueued, seen from asyncio code: await its result from here.

    Handles come from ``producer.enqueue`` (and ``enqueue_many``), or from
    ``producer.handle(id, task)`` in any process that knows the id. Several handles of one
    task may wait at once.
    """

    __slots__ = ("_listener", "_pending", "_return_type", "id", "task")

    def __init__(
        self, listener: ResultListener, pending: _Pending, task: str, return_type: Any
    ) -> None:
        self._listener = listener
        self._pending = pending
        self._return_type = return_type
        self.id: str = pending.task_id
        """The task id (32 hex characters)."""
        self.task: str = task
        """The task's registered name (``?`` when the handle was made without it)."""

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task} {self.id}>"

    @property
    def done(self) -> bool:
        """Whether the outcome has arrived here (without waiting or asking the server)."""
        return self._pending.record is not None

    async def outcome(self, *, timeout: float | None = None) -> ResultRecord:  # noqa: ASYNC109
        """The raw outcome record (status, value or error, attempts), without raising for
        failures.

        Raises:
            ResultTimeout: no outcome within ``timeout`` seconds.
        """
        scope = asyncio.timeout(None if timeout is None or math.isinf(timeout) else timeout)
        try:
            async with scope:
                return await self._listener.wait(self._pending)
        except TimeoutError:
            if not scope.expired():
                raise
            raise ResultTimeout(
                f"no result for task {self.task} ({self.id}) within {timeout} s"
            ) from None

    async def result(self, *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Wait for the task's result, structured to its return annotation.

        Args:
            timeout: Seconds to wait; None waits until the result arrives. A timeout does not
                affect the task, which may still run.

        Raises:
            TaskFailed: the task failed for good (kind, message, remote traceback, attempts).
            TaskCancelled: the task was cancelled.
            ResultTimeout: no result within ``timeout``.
        """
        record = await self.outcome(timeout=timeout)
        value: R = result_value(
            record, task_id=self.id, task=self.task, return_type=self._return_type
        )
        return value
