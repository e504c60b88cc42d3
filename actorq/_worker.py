"""`Worker`: runs an app's tasks from one or more queues.

A Worker is a supervisor of its actors, started in the user's nursery::

    Worker (supervisor, rest_for_one)
    ├── LeaseKeeper       renews leases of long-running deliveries
    ├── SlotPool          ``concurrency`` slots, one task each
    └── QueueActor × n    one per queue: pull credits = free slots

Cancelling the scope the worker runs in stops it gracefully, in reverse order: the queues stop
intake at once (late arrivals are given back), the slots finish their tasks within
``shutdown_grace`` and are then cancelled (their messages naked for immediate redelivery), and
the lease keeper goes last so in-flight tasks keep their leases while they finish.
"""

from __future__ import annotations

import gc
import os
import secrets
import socket
from contextlib import aclosing
from typing import TYPE_CHECKING

import attrs
import trio
from trio_util import AsyncBool

from ._client import ensure_app_streams
from ._execution import Executor
from ._options import PRIORITY_LEVELS
from ._settle import ExecutionStatistics
from .actors import ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorPolicy
from .actors._cancel import CancelWatch
from .actors._lease import LeaseKeeper
from .actors._presence import presence_of
from .actors._queue import QueueActor
from .actors._slots import SlotCredits, SlotPool
from .broker import ConnectionState, ConsumerConfig, Delivery
from .dag._service import WorkerDags
from .dag._settings import DagSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._client import Client


@attrs.frozen
class WorkerStatistics:
    """A snapshot of a worker (from `Worker.statistics`)."""

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    received: int
    lease_renewals: int
    executions: ExecutionStatistics


class Worker:
    """Runs tasks of ``client.app`` from ``queues`` with at most ``concurrency`` at once.

    Start it with ``await nursery.start(worker.run)``; it returns once the consumers exist and
    the worker is taking work (`ready` is then true).

    Args:
        client: A connected client of the app.
        concurrency: Slots: tasks run at once (async handlers on the trio loop, plain ``def``
            handlers in threads).
        queues: The queues to consume.
        ack_wait: Seconds a delivery may go without an ack or a lease renewal before the
            server redelivers it; running handlers renew their lease every third of it.
        max_ack_pending: The consumer's limit of unacknowledged messages (shared by every
            worker of a queue).
        shutdown_grace: Seconds in-flight tasks get to finish when the worker is stopped.
        nak_threshold: Retries delayed by at most this many seconds wait as delayed naks;
            longer ones are acked and republished as server-fired schedules.
        thread_limit: Most plain ``def`` handlers running in threads at once (default:
            ``concurrency``).
        dags: Every worker runs DAG steps; True (default) also makes it a candidate for the
            app's DAG scheduler, False does not; a `DagSettings` tunes it.
        freeze_gc: When the worker starts taking work, move every object alive by then (the
            modules, the app, the connection) out of the garbage collector's sight
            (`gc.freeze`), so the full collections that a busy worker triggers scan only what
            tasks create: measured, they otherwise cost ~45 ms each and ~10 % of a busy
            worker's CPU, and show as latency spikes. Objects frozen this way are never
            collected as cyclic garbage; pass False to keep the collector as it is.
    """

    def __init__(
        self,
        client: Client,
        *,
        concurrency: int = 16,
        queues: Sequence[str] = ("default",),
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
        shutdown_grace: float = 30.0,
        nak_threshold: float = 10.0,
        thread_limit: int | None = None,
        dags: bool | DagSettings = True,
        freeze_gc: bool = True,
    ) -> None:
        if isinstance(queues, str):
            queues = (queues,)
        if not queues:
            raise ValueError("a worker needs at least one queue")
        self.client = client
        self.queues = tuple(dict.fromkeys(queues))
        for queue in self.queues:
            client.app.layout.queue_consumer(queue)  # validates the name
        if concurrency < len(self.queues):
            raise ValueError(
                f"concurrency {concurrency} is less than the {len(self.queues)} queues: an idle"
                " queue keeps one slot ready for its next task, so each needs at least one"
            )
        if ack_wait <= 0 or shutdown_grace < 0:
            raise ValueError("ack_wait must be positive and shutdown_grace not negative")
        self.concurrency = concurrency
        self.freeze_gc = freeze_gc
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.shutdown_grace = shutdown_grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.ready = AsyncBool(False)
        """True while the worker takes work (for readiness probes)."""
        broker = client.broker
        self._credits = SlotCredits(concurrency)
        self._leases = LeaseKeeper(broker, ack_wait)
        self._cancels = CancelWatch(broker, client.app.layout.cancel_bucket)
        self._dags = WorkerDags(client, self.id, dags)
        self._executor = Executor(
            client.app,
            broker,
            worker_id=self.id,
            nak_threshold=nak_threshold,
            thread_limiter=trio.CapacityLimiter(thread_limit or concurrency),
            cancels=self._cancels,
            on_start=self._leases.started,
            on_end=self._leases.ended,
            steps=self._dags.outcomes,
        )
        self._slots = SlotPool(self._credits, self._executor.execute, self._give_back)
        self._queue_actors = [
            self._queue_actor(queue, priority)
            for queue in self.queues
            for priority in range(PRIORITY_LEVELS)
        ]

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={list(self.queues)} concurrency={self.concurrency}>"

    def _queue_actor(self, queue: str, priority: int) -> QueueActor:
        layout = self.client.app.layout
        consumer = ConsumerConfig(
            name=layout.queue_consumer(queue, priority),
            filter_subjects=(layout.priority_subjects(queue, priority),),
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
        )
        others = len(self.queues) - 1
        return QueueActor(
            self.client.broker,
            layout.tasks_stream,
            consumer,
            self._credits,
            self._slots,
            share=max(1, self.concurrency - others),
            priority=priority,
            prepare=lambda: ensure_app_streams(self.client.broker, self.client.app),
        )

    async def _give_back(self, delivery: Delivery) -> None:
        await self.client.broker.nak(delivery)

    async def wait_idle(self) -> None:
        """Wait until no task is running on this worker (its queues may still hold work)."""
        await self._slots.busy.wait_value(0)

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            worker_id=self.id,
            queues=self.queues,
            concurrency=self.concurrency,
            busy=self._slots.busy.value,
            received=sum(actor.received for actor in self._queue_actors),
            lease_renewals=self._leases.renewals,
            executions=attrs.evolve(self._executor.statistics),
        )

    async def run(self, *, task_status: trio.TaskStatus[Worker] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; then drain gracefully (see the class docstring)."""
        children = [
            ChildSpec("leases", self._leases.run, shutdown=Shutdown.brutal()),
            ChildSpec("cancels", self._cancels.run, shutdown=Shutdown.brutal()),
            ChildSpec(
                "slots",
                self._slots.run,
                shutdown=Shutdown.after(self.shutdown_grace),
                restart=Restart.TRANSIENT,
            ),
        ]
        children += [
            ChildSpec(f"queue:{actor.consumer.name}", actor.run, shutdown=Shutdown.after(5.0))
            for actor in self._queue_actors
        ]
        children += self._dags.children()  # the DAG scheduler candidate, if it schedules
        # Last: its record (for `actorq workers`) goes first on shutdown, and a crash of it
        # restarts nothing else.
        children.append(ChildSpec("presence", presence_of(self).run, shutdown=Shutdown.after(3.0)))
        supervisor = Supervisor(
            f"worker:{self.id}",
            children,
            policy=SupervisorPolicy(strategy=Strategy.REST_FOR_ONE, intensity=5, period=30.0),
        )
        for periodic in self.client.app.periodics:
            await self.client.install_periodic(periodic)
        self._dags.install()  # current_dag() in the tasks this worker runs
        try:
            async with trio.open_nursery() as nursery:

                async def supervise(*, task_status: trio.TaskStatus[object]) -> None:
                    await supervisor.run(task_status=task_status)
                    nursery.cancel_scope.cancel()

                await nursery.start(supervise)
                nursery.start_soon(self._follow_connection)
                if self.freeze_gc:
                    gc.freeze()
                task_status.started(self)
        finally:
            self.ready.value = False

    async def _follow_connection(self) -> None:
        """Ready while connected: a paused worker takes no work."""
        async with aclosing(self.client.broker.connection.eventual_values()) as states:
            async for state in states:
                self.ready.value = state is ConnectionState.CONNECTED
