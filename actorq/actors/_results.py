"""The ResultRouter: one subscription per client, routing results to whoever awaits them.

Task ids start with the minting client's origin, and results are published on
``result.<origin>.<id>``, so one plain subscription on ``result.<origin>.*`` brings a client
the results of every task it enqueued — never a consumer per request. Results are also stored
(last message per subject), so an awaiter that comes late, or lives in another process, reads
the stored one; the router re-reads stored results of live waiters after a reconnect, because
plain subscriptions miss what is published while disconnected.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import aclosing

import attrs
import trio

from .._names import Layout, task_origin
from .._wire import ResultRecord, decode_result
from ..broker import Broker, ConnectionState, CoreMessage, take_ready

logger = logging.getLogger("actorq.results")

_MIN_SWEEP = 1024


@attrs.define(eq=False)
class PendingResult:
    """Where the result of one task lands; held by its handles, so it lives as long as they do."""

    task_id: str
    record: ResultRecord | None = None
    epoch: int = 0
    """The router's connection epoch when the result was last known not to be missed."""
    _arrived: trio.Event | None = attrs.field(default=None, init=False)
    """Made only when someone waits before the result is there (most results of a batch
    arrive before their handle is awaited)."""

    def resolve(self, record: ResultRecord) -> None:
        if self.record is None:
            self.record = record
            if self._arrived is not None:
                self._arrived.set()

    async def arrival(self) -> None:
        """Wait until the record is there."""
        if self.record is None:
            if self._arrived is None:
                self._arrived = trio.Event()
            await self._arrived.wait()


class ResultRouter:
    """Receives a client's results and resolves the `PendingResult` of each awaited task."""

    def __init__(self, broker: Broker, layout: Layout, origin: str) -> None:
        self.broker = broker
        self.layout = layout
        self.origin = origin
        # Task id -> weak reference: an entry lives as long as a handle holds its pending
        # result. Plain references (a WeakValueDictionary costs a Python-level KeyedRef per
        # entry) with dead ones swept whenever the table has doubled since the last sweep.
        self._pending: dict[str, weakref.ref[PendingResult]] = {}
        self._sweep_at = _MIN_SWEEP
        self.epoch = 0
        """Increments whenever the subscription may have missed results (a reconnect)."""

    def expect(self, task_id: str, *, again: bool = False) -> PendingResult:
        """The pending result of ``task_id``, registered so the router routes it there.

        ``again``: the task runs again (requeued), so an outcome already known is stale.
        """
        pending = None if again else self._get(task_id)
        if pending is None:
            pending = PendingResult(task_id, epoch=self.epoch)
            self._pending[task_id] = weakref.ref(pending)
            if len(self._pending) >= self._sweep_at:
                self._sweep()
        return pending

    def _get(self, task_id: str) -> PendingResult | None:
        ref = self._pending.get(task_id)
        return None if ref is None else ref()

    def _sweep(self) -> None:
        self._pending = {key: ref for key, ref in self._pending.items() if ref() is not None}
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._pending))

    def is_own(self, task_id: str) -> bool:
        return task_origin(task_id) == self.origin

    async def run(
        self, *, task_status: trio.TaskStatus[ResultRouter] = trio.TASK_STATUS_IGNORED
    ) -> None:
        subject = self.layout.result_origin_subjects(self.origin)
        async with self.broker.subscribe(subject) as messages, trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_reconnects)
            task_status.started(self)
            async for message in messages:
                self._route(message)
                for more in take_ready(messages):  # the rest of a burst: no checkpoint each
                    self._route(more)

    def _route(self, message: CoreMessage) -> None:
        task_id = message.subject.rsplit(".", 1)[-1]
        pending = self._get(task_id)
        if pending is not None:
            self._route_to(pending, message)

    async def _watch_reconnects(self) -> None:
        async with aclosing(self.broker.connection.transitions()) as transitions:
            async for state, _ in transitions:
                if state is ConnectionState.CONNECTED:
                    self.epoch += 1
                    await self._recheck_stored()

    async def _recheck_stored(self) -> None:
        for ref in list(self._pending.values()):
            pending = ref()
            if pending is not None and pending.record is None:
                await self.fetch_stored(pending)

    async def fetch_stored(self, pending: PendingResult) -> None:
        """Resolve ``pending`` from the results stream if its result is stored there."""
        stored = await self.broker.get_last(
            self.layout.results_stream, self.layout.result_subject(pending.task_id)
        )
        if stored is not None:
            pending.resolve(decode_result(stored.data))
        pending.epoch = self.epoch

    async def wait(self, pending: PendingResult) -> ResultRecord:
        """Wait for a result, reading the stored one if it may have been missed live."""
        if pending.record is not None:
            return pending.record
        if self.is_own(pending.task_id):
            if pending.epoch != self.epoch:
                await self.fetch_stored(pending)
            await pending.arrival()
        else:
            # Another client's task: its results do not come through our subscription, so
            # listen on its own subject for as long as we wait (subscribe first, then read the
            # stored one, so nothing falls in between).
            subject = self.layout.result_subject(pending.task_id)
            async with self.broker.subscribe(subject) as messages, trio.open_nursery() as nursery:

                async def listen() -> None:
                    async for message in messages:
                        self._route_to(pending, message)

                nursery.start_soon(listen)
                await self.fetch_stored(pending)
                await pending.arrival()
                nursery.cancel_scope.cancel()
        assert pending.record is not None
        return pending.record

    def _route_to(self, pending: PendingResult, message: CoreMessage) -> None:
        try:
            pending.resolve(decode_result(message.data))
        except Exception as error:
            logger.error("undecodable result on %s: %s", message.subject, error)
