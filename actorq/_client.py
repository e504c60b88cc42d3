"""`connect` and the `Client`: enqueue tasks and await their results.

One `connect` is one Runtime: the broker (and its Bridge, on NATS) plus a root supervisor of
the client's own actors — the ResultRouter (one result subscription for every task this client
enqueues) and the Outbox (batched publishing, and the bounded buffer that holds enqueues while
NATS is unreachable). Several clients may live in one process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar, overload

import trio

from . import _codec
from ._app import App
from ._dlq import DeadLetterQueue
from ._errors import MailboxFull, PublishFailed, TaskDropped, WrongLastSequence
from ._handle import TaskHandle
from ._middleware import dispatch_message
from ._names import TaskIds, new_origin, validate_task_id
from ._periodic import Periodic, PeriodicInfo, same_schedule
from ._streams import app_bucket_configs, app_stream_configs
from ._task import BoundCall, Task, resolve_task
from ._wire import H_ID, H_STATUS, H_TASK, ResultRecord, decode_result, task_id_for
from .actors import ActorRef, ChildSpec, Overflow, Shutdown, Supervisor
from .actors._outbox import Outbox, Publish, publish_directly
from .actors._results import ResultRouter
from .broker import EXPECTED_LAST_SUBJECT_SEQUENCE, Broker, Message, PubAck, open_broker
from .dag._client_api import DagApi
from .kv._client_api import CoordinationApi

P = ParamSpec("P")
R = TypeVar("R")

_ENV_OPTIONS = {
    "ACTORQ_USER": "user",
    "ACTORQ_PASSWORD": "password",
    "ACTORQ_TOKEN": "token",
    "ACTORQ_CREDS": "user_credentials",
}


def resolve_url(url: str | None) -> str | None:
    """An explicit URL, else ``ACTORQ_URL``, else None (the local embedded node)."""
    return url or os.environ.get("ACTORQ_URL") or None


def nats_options_from_env(options: dict[str, Any]) -> dict[str, Any]:
    """NATS connection options from ``ACTORQ_*`` variables; explicit options win."""
    merged = {name: os.environ[var] for var, name in _ENV_OPTIONS.items() if os.environ.get(var)}
    merged.update(options)
    return merged


async def _local_node_url() -> str:
    from ._embedded import ensure_local_node

    return await trio.to_thread.run_sync(ensure_local_node)


async def ensure_app_streams(broker: Broker, app: App) -> None:
    """Create (or update) the app's streams and KV buckets. Idempotent."""
    for config in app_stream_configs(app):
        await broker.ensure_stream(config)
    for bucket in app_bucket_configs(app):
        await broker.ensure_kv(bucket)


@asynccontextmanager
async def connect(
    app: App,
    url: str | None = None,
    *,
    buffer: int = 10_000,
    overflow: Overflow = Overflow.BLOCK,
    **nats_options: Any,
) -> AsyncIterator[Client]:
    """Connect to NATS (or the memory broker) as a client of ``app``.

    Args:
        app: The application whose tasks this client enqueues.
        url: ``nats://host:port`` (comma-separate several for a cluster), ``memory://NAME`` for
            the in-process memory broker (shared by every client of that name in the process),
            or None: ``ACTORQ_URL`` if set, else the local embedded node recorded under
            ``./.actorq/`` (started if none answers).
        buffer: How many enqueue requests may wait while NATS is unreachable.
        overflow: What a full buffer does: `Overflow.BLOCK` waits for room, `REJECT` raises
            `MailboxFull`, `DROP_NEWEST` / `DROP_OLDEST` fail the dropped enqueue with
            `TaskDropped`.
        nats_options: Passed to nats-py's ``connect`` (``user``, ``password``, ``token``,
            ``user_credentials``, ``tls``, reconnect settings...); ``ACTORQ_USER``,
            ``ACTORQ_PASSWORD``, ``ACTORQ_TOKEN`` and ``ACTORQ_CREDS`` fill in the same.

    Leaving the block stops the client's actors; tasks already published are unaffected.
    """
    resolved = resolve_url(url)
    if resolved is None:
        resolved = await _local_node_url()
    options = {} if resolved.startswith("memory:") else nats_options_from_env(nats_options)
    async with open_broker(resolved, **options) as broker:
        await ensure_app_streams(broker, app)
        origin = new_origin()
        router = ResultRouter(broker, app.layout, origin)
        outbox = Outbox(broker, capacity=buffer, overflow=overflow)
        runtime = Supervisor(
            "runtime",
            [
                ChildSpec("results", router.run, shutdown=Shutdown.brutal()),
                ChildSpec("outbox", outbox.run, shutdown=Shutdown.brutal()),
            ],
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            outbox_ref: ActorRef[Publish] = await runtime.wait_child_running("outbox")  # type: ignore[assignment]
            client = Client(app, broker, router, outbox_ref, origin, overflow, resolved)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()


class Client(CoordinationApi, DagApi):
    """A connection of one app to NATS: enqueue tasks and await results. From `connect`.

    Coordination primitives on the same connection (typed KV, locks, leader election, ...)
    come from `CoordinationApi`; DAG workflows (``submit``, ``dag_run``) from `DagApi`.
    """

    def __init__(
        self,
        app: App,
        broker: Broker,
        router: ResultRouter,
        outbox: ActorRef[Publish],
        origin: str,
        overflow: Overflow,
        url: str,
    ) -> None:
        self.app = app
        self.broker = broker
        self.url = url
        """The broker URL this client is connected to."""
        self._router = router
        self._cancel_task = self._cancel  # bound once: every handle holds it
        self._outbox = outbox
        self._origin = origin
        self._overflow = overflow
        self._ids = TaskIds(origin)
        self.dlq = DeadLetterQueue(self)
        """The app's dead-letter queue: list, requeue, purge."""

    def __repr__(self) -> str:
        return f"<Client of app {self.app.namespace!r} on {self.url}>"

    def new_task_id(self) -> str:
        """A fresh task id: this client's origin, then a counter."""
        return self._ids.next()

    async def install_periodic(self, periodic: Periodic) -> bool:
        """Install (or update) a periodic task's schedule on the server; False if it was
        already installed as is. Workers do this at start for every ``app.periodic``."""
        layout = self.app.layout
        wanted = periodic.message(layout, now=self.broker.now())
        stored = await self.broker.get_last(layout.tasks_stream, wanted.subject)
        if stored is not None and same_schedule(dict(stored.headers), stored.data, wanted):
            return False
        await self.broker.publish(wanted)
        return True

    async def periodic_schedules(self) -> list[PeriodicInfo]:
        """The periodic schedules installed on the server for this app."""
        layout = self.app.layout
        found: list[PeriodicInfo] = []
        seq = 1
        while True:
            stored = await self.broker.get_next(layout.tasks_stream, seq, layout.periodic_subjects)
            if stored is None:
                return found
            found.append(PeriodicInfo.of(stored))
            seq = stored.seq + 1

    async def remove_periodic(self, periodic_id: str) -> bool:
        """Remove an installed periodic schedule: it fires no more. False if there was none.

        A worker of an app that still registers it installs it again when it starts."""
        layout = self.app.layout
        removed = await self.broker.purge_stream(
            layout.tasks_stream, layout.periodic_subject(periodic_id)
        )
        return removed > 0

    async def purge_queue(self, queue: str) -> int:
        """Remove every task waiting in ``queue``; returns how many were removed."""
        layout = self.app.layout
        return await self.broker.purge_stream(layout.tasks_stream, layout.queue_subjects(queue))

    def resolve_task(self, task: Task[P, R] | str) -> Task[P, R]:
        """A task object for ``task``: itself, the app's task of that name, or a remote reference
        (default queue) for a name this app does not register."""
        return resolve_task(self.app, task)

    @overload
    async def enqueue(
        self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[R]: ...
    @overload
    async def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]: ...

    async def enqueue(self, task: Any, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Publish one task and return its handle once the server has stored it.

        Every positional and keyword argument goes to the task; options only through
        ``task.options(...)``. While NATS is unreachable the request waits in the client's
        buffer (see `connect`).

        Raises:
            TypeError: the arguments do not fit the task's signature (nothing is published).
            PublishFailed: the server refused the message.
            MailboxFull: the buffer is full and its policy is `Overflow.REJECT`.
            TaskDropped: the buffer dropped the request (`DROP_NEWEST` / `DROP_OLDEST`).
        """
        resolved = self.resolve_task(task)
        handles = await self._publish(
            [BoundCall(resolved, resolved.encode_arguments(args, kwargs))]
        )
        return handles[0]

    async def enqueue_many(self, calls: Iterable[BoundCall[Any]]) -> list[TaskHandle[Any]]:
        """Publish a batch of tasks with one window of acks: ``[task.bind(...), ...]``.

        Raises:
            PublishFailed: the server refused at least one message (the others are stored).
        """
        return await self._publish(list(calls))

    async def call(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Enqueue a task and wait for its result (see `enqueue` and `TaskHandle.result`)."""
        handle: TaskHandle[R] = await self.enqueue(task, *args, **kwargs)
        return await handle.result()

    @overload
    def handle(self, task_id: str, task: Task[Any, R], /) -> TaskHandle[R]: ...
    @overload
    def handle(self, task_id: str, task: str | None = None, /) -> TaskHandle[Any]: ...

    def handle(self, task_id: str, task: Task[Any, Any] | str | None = None, /) -> TaskHandle[Any]:
        """A handle on any task by id — enqueued here, elsewhere, before or after now.

        ``task`` (or its name) types the result; without it the result is plain JSON data.
        """
        return self._handle(task_id, task, again=False)

    def _handle(
        self, task_id: str, task: Task[Any, Any] | str | None, *, again: bool
    ) -> TaskHandle[Any]:
        validate_task_id(task_id)
        if task is None:
            name, return_type = "?", Any
        else:
            resolved = self.resolve_task(task)
            name, return_type = resolved.name, resolved.return_type
        return self._new_handle(task_id, name, return_type, again=again)

    async def _publish(self, calls: list[BoundCall[Any]]) -> list[TaskHandle[Any]]:
        layout = self.app.layout
        now = self.broker.now()
        handles: list[TaskHandle[Any]] = []
        messages: list[Message] = []
        dropped = 0
        for call in calls:
            task_id = task_id_for(layout, call.task, self.new_task_id)
            message = await self._dispatch(call, task_id, now)
            if message is None:
                dropped += 1
                continue
            messages.append(message)
            handles.append(self._new_handle(task_id, call.task.name, call.task.return_type))
        if messages:
            await self._send(messages)
        if dropped:
            raise TaskDropped(
                f"dispatch middleware dropped {dropped} of {len(calls)} task(s); the others"
                " were published"
            )
        return handles

    def _new_handle(
        self, task_id: str, task: str, return_type: Any, *, again: bool = False
    ) -> TaskHandle[Any]:
        pending = self._router.expect(task_id, again=again)
        return TaskHandle(self._router, pending, task, return_type, cancel=self._cancel_task)

    async def _dispatch(self, call: BoundCall[Any], task_id: str, now: float) -> Message | None:
        """The call's message after the app's dispatch middleware; None if one dropped it."""
        return await dispatch_message(self.app, call, task_id, now=now)

    async def _send(self, messages: list[Message]) -> None:
        direct = await publish_directly(self.broker, self._outbox, messages)
        try:
            results = (
                direct
                if direct is not None
                else await self._outbox.ask(lambda reply: Publish(messages, reply))
            )
        except MailboxFull as error:
            if self._overflow in (Overflow.DROP_NEWEST, Overflow.DROP_OLDEST):
                raise TaskDropped(
                    f"the client's buffer was full ({self._overflow.name}): "
                    f"{len(messages)} task(s) dropped unpublished"
                ) from error
            raise
        failures = [r for r in results if not isinstance(r, PubAck)]
        if failures:
            raise (
                failures[0]
                if len(results) == 1
                else PublishFailed(
                    f"{len(failures)} of {len(results)} tasks were refused: {failures[0]}"
                )
            )

    async def _cancel(self, task_id: str, task: str) -> bool:
        """Mark a task cancelled and record the cancellation as its outcome (see
        `TaskHandle.cancel`). False if it already had an outcome."""
        layout = self.app.layout
        await self.broker.kv_put(layout.cancel_bucket, task_id, self._origin.encode())
        record = ResultRecord(
            id=task_id,
            task=task,
            status="cancelled",
            attempts=0,
            finished_at=self.broker.now(),
            worker=f"client {self._origin}",
        )
        headers = {
            H_ID: task_id,
            H_TASK: task,
            H_STATUS: "cancelled",
            EXPECTED_LAST_SUBJECT_SEQUENCE: "0",
        }
        message = Message(layout.result_subject(task_id), _codec.dumps(record), headers)
        try:
            await self.broker.publish(message)
        except WrongLastSequence:
            # An outcome was stored first — possibly by the worker that just cancelled it.
            stored = await self.broker.get_last(layout.results_stream, message.subject)
            return stored is not None and decode_result(stored.data).status == "cancelled"
        return True
