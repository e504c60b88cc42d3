"""The asyncio producer: enqueue actorq tasks and await their results from asyncio code.

Most programs that enqueue work are asyncio web apps (FastAPI, Starlette, aiohttp). This
producer runs nats-py directly on the caller's own event loop — no trio, no extra thread — and
speaks exactly what the trio client speaks: the same task messages (built by
`_wire.task_message`, ids minted by `_names.TaskIds`, keyed ids by `_wire.task_id_for`), the
same argument checks before anything is published (`Task.encode_arguments`), the same streams
(`_streams.app_stream_configs`), the same results (one subscription per producer, late ones
read from the results stream) and the same errors. Workers cannot tell who enqueued a task.

It is only a producer: workers, the dead-letter queue and the coordination primitives live in
the trio client (`actorq.connect`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload
from urllib.parse import urlsplit

import nats.errors
from nats.aio.client import Client as NatsClient

from ._aio_results import ResultListener, TaskHandle
from ._client import nats_options_from_env, resolve_url
from ._errors import InvalidUrl, NotConnected, PublishFailed, TaskDropped
from ._middleware import dispatch_message
from ._names import TaskIds, new_origin, validate_task_id
from ._streams import app_stream_configs
from ._task import BoundCall, Task, resolve_task
from ._wire import task_id_for
from .actors._bridge_loop import _describe, redact
from .broker import Message, PubAck
from .broker._jetstream_admin import Admin
from .broker._jetstream_wire import _puback_result
from .broker._open import MEMORY_SCHEME, NATS_SCHEMES

if TYPE_CHECKING:
    from ._app import App

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("actorq.producer")

PUBLISH_WINDOW = 1000
"""Publishes of one `enqueue_many` awaiting their PubAck at once."""

_Callback = Callable[..., Awaitable[None]]


class _FirstConnectFailed(Exception):
    """Raised from our error callback to stop nats-py retrying the very first connect."""


async def _resolve(url: str | None) -> str:
    resolved = resolve_url(url)
    if resolved is None:
        from ._embedded import ensure_local_node

        # Starting (or finding) the local node blocks for a moment, once, at connect.
        resolved = await asyncio.to_thread(ensure_local_node)
    scheme = urlsplit(resolved.split(",")[0].strip()).scheme
    if scheme == MEMORY_SCHEME:
        raise InvalidUrl(
            f"the asyncio producer needs a NATS server, got {resolved!r}: the memory broker"
            " lives inside one trio program (use actorq.connect there, or a nats:// URL)"
        )
    if scheme not in NATS_SCHEMES:
        raise InvalidUrl(
            f"unsupported broker URL {resolved!r}: use nats://HOST:PORT (or tls://, ws://,"
            " wss://); several comma-separated for a cluster"
        )
    return resolved


@asynccontextmanager
async def connect(
    app: App,
    url: str | None = None,
    *,
    publish_timeout: float = 30.0,
    request_timeout: float = 5.0,
    **nats_options: Any,
) -> AsyncIterator[Producer]:
    """Connect an asyncio producer of ``app`` to NATS, on the running event loop.

    ::

        async with actorq.aio.connect(app, "nats://127.0.0.1:4222") as producer:
            handle = await producer.enqueue(add, 1, 2)
            assert await handle.result(timeout=10) == 3

    Args:
        app: The application whose tasks this producer enqueues (it needs the tasks' code
            only to check arguments and type results; names work too).
        url: ``nats://host:port`` (comma-separate several for a cluster; ``tls://``,
            ``ws://``, ``wss://`` too), or None: ``ACTORQ_URL`` if set, else the local
            embedded node recorded under ``./.actorq/`` (started if none answers).
            ``memory://`` URLs are refused: the memory broker lives inside a trio program.
        publish_timeout: Seconds an enqueue keeps trying to get its message stored (across
            reconnects; a re-sent message keeps its ``Nats-Msg-Id``, so it is stored once)
            before it raises `PublishFailed`.
        request_timeout: Seconds one request to the server (a publish attempt, a stream
            update, a stored-result read) may take.
        nats_options: Passed to nats-py's ``connect`` (``user``, ``password``, ``token``,
            ``user_credentials``, ``tls``, ``name``, reconnect settings...); ``ACTORQ_USER``,
            ``ACTORQ_PASSWORD``, ``ACTORQ_TOKEN`` and ``ACTORQ_CREDS`` fill in the same.
            Unlike nats-py's default, the producer reconnects forever
            (``max_reconnect_attempts=-1``) unless told otherwise. Your ``error_cb``,
            ``disconnected_cb`` and ``reconnected_cb`` are called after the producer's own.

    The streams of the app are created if missing, as the trio client does. Use the
    producer only on the loop it was connected on.

    Raises:
        InvalidUrl: a URL that names no NATS server.
        NotConnected: the first connect failed (the message names the URL and why).
    """
    resolved = await _resolve(url)
    options = nats_options_from_env(nats_options)
    producer = Producer(
        app, resolved, publish_timeout=publish_timeout, request_timeout=request_timeout
    )
    await producer._open(options)
    try:
        yield producer
    finally:
        await producer._close()


class Producer:
    """Enqueues tasks of one app from asyncio code and awaits their results.

    From `connect`. Several producers may share a loop; each has its own connection.
    """

    def __init__(
        self, app: App, url: str, *, publish_timeout: float, request_timeout: float
    ) -> None:
        self.app = app
        self._url = url
        self.url = redact(url)
        """The URL connected to (without passwords)."""
        self._publish_timeout = publish_timeout
        self._request_timeout = request_timeout
        self._nc = NatsClient()
        self._admin = Admin(self._nc, timeout=request_timeout)
        self._ids = TaskIds(new_origin())
        self._listener = ResultListener(self._nc, self._admin, app.layout, self._ids.origin)
        self._first_connect = True
        self._connect_errors: list[BaseException] = []

    def __repr__(self) -> str:
        return f"<actorq.aio.Producer of app {self.app.namespace!r} on {self.url}>"

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up right now (False while reconnecting)."""
        return bool(self._nc.is_connected)

    def new_task_id(self) -> str:
        """A fresh task id: this producer's origin, then a counter."""
        return self._ids.next()

    # --- lifecycle --------------------------------------------------------------------

    async def _open(self, options: dict[str, Any]) -> None:
        servers = [part.strip() for part in self._url.split(",") if part.strip()]
        user_error: _Callback | None = options.pop("error_cb", None)
        user_disconnected: _Callback | None = options.pop("disconnected_cb", None)
        user_reconnected: _Callback | None = options.pop("reconnected_cb", None)
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("name", f"actorq producer {self.app.namespace}")

        async def error_cb(error: Exception) -> None:
            if self._first_connect:
                self._connect_errors.append(error)
                # Try every server once, then give up instead of retrying for minutes.
                if len(self._connect_errors) >= len(servers):
                    raise _FirstConnectFailed
                return
            if self._nc.is_reconnecting:
                logger.debug("reconnecting to NATS at %s: %s", self.url, _describe(error))
            else:
                logger.warning("NATS connection error (%s): %s", self.url, _describe(error))
            if user_error is not None:
                await user_error(error)

        async def disconnected_cb() -> None:
            if not self._first_connect and not self._nc.is_closed:
                logger.warning("lost the connection to NATS at %s; reconnecting", self.url)
            if user_disconnected is not None:
                await user_disconnected()

        async def reconnected_cb() -> None:
            logger.info("reconnected to NATS at %s", self.url)
            self._listener.reconnected()
            if user_reconnected is not None:
                await user_reconnected()

        try:
            await self._nc.connect(
                servers=servers,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                **options,
            )
        except (_FirstConnectFailed, TimeoutError, OSError, nats.errors.Error) as error:
            if not isinstance(error, _FirstConnectFailed):
                self._connect_errors.append(error)
            await self._close()
            last = self._connect_errors[-1] if self._connect_errors else error
            raise NotConnected(f"cannot connect to NATS at {self.url}: {_describe(last)}") from None
        self._first_connect = False
        try:
            for config in app_stream_configs(self.app):
                await self._admin.ensure_stream(config)
            await self._listener.start()
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        try:
            await self._listener.stop()
            if not self._nc.is_closed:
                await asyncio.wait_for(self._nc.close(), timeout=5)
        except Exception:  # noqa: BLE001 - closing after the fact; nothing to report to
            logger.debug("closing the NATS connection failed", exc_info=True)

    # --- enqueueing -------------------------------------------------------------------

    @overload
    async def enqueue(
        self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[R]: ...
    @overload
    async def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]: ...

    async def enqueue(self, task: Any, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Publish one task and return its handle once the server has stored it.

        ``task`` is a task object (``add`` or ``add.options(queue="fast")``) or a registered
        name; a name the app does not register goes to the default queue unchecked. Every
        other positional and keyword argument goes to the task.

        Raises:
            TypeError: the arguments do not fit the task's signature (nothing is published).
            PublishFailed: the server refused the message, or did not store it within
                ``publish_timeout``.
            NotConnected: the connection is closed.
            TaskDropped: the app's dispatch middleware dropped it.
        """
        resolved: Task[Any, Any] = resolve_task(self.app, task)
        call = BoundCall(resolved, resolved.encode_arguments(args, kwargs))
        return (await self._publish([call]))[0]

    async def enqueue_many(self, calls: Iterable[BoundCall[Any]]) -> list[TaskHandle[Any]]:
        """Publish a batch of tasks, many acks awaited at once: ``[add.bind(1, 2), ...]``.

        Raises:
            PublishFailed: the server refused at least one message (the others are stored).
            NotConnected: the connection is closed.
            TaskDropped: the app's dispatch middleware dropped it.
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

        Raises:
            ValueError: ``task_id`` is not a task id.
        """
        validate_task_id(task_id)
        if task is None:
            name, return_type = "?", Any
        else:
            resolved: Task[Any, Any] = resolve_task(self.app, task)
            name, return_type = resolved.name, resolved.return_type
        return TaskHandle(self._listener, self._listener.expect(task_id), name, return_type)

    async def _publish(self, calls: list[BoundCall[Any]]) -> list[TaskHandle[Any]]:
        layout = self.app.layout
        now = time.time()
        handles: list[TaskHandle[Any]] = []
        messages: list[Message] = []
        dropped = 0
        for call in calls:
            task = call.task
            task_id = task_id_for(layout, task, self._ids.next)
            message = await dispatch_message(self.app, call, task_id, now=now)
            if message is None:
                dropped += 1
                continue
            messages.append(message)
            # Registered before publishing, so a result that comes back at once is not missed.
            pending = self._listener.expect(task_id)
            handles.append(TaskHandle(self._listener, pending, task.name, task.return_type))
        if messages:
            await self._send(messages)
        if dropped:
            raise TaskDropped(
                f"dispatch middleware dropped {dropped} of {len(calls)} task(s); the others"
                " were published"
            )
        return handles

    async def _send(self, messages: list[Message]) -> None:
        if len(messages) == 1:
            results = [await self._publish_one(messages[0])]
        else:
            window = asyncio.Semaphore(PUBLISH_WINDOW)

            async def bounded(message: Message) -> PubAck | PublishFailed:
                async with window:
                    return await self._publish_one(message)

            results = list(await asyncio.gather(*(bounded(m) for m in messages)))
        failures = [r for r in results if not isinstance(r, PubAck)]
        if failures:
            if len(results) == 1:
                raise failures[0]
            raise PublishFailed(
                f"{len(failures)} of {len(results)} tasks were refused: {failures[0]}"
            )

    async def _publish_one(self, message: Message) -> PubAck | PublishFailed:
        """Publish and wait for the PubAck, re-sending (same ``Nats-Msg-Id``) until stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        headers = dict(message.headers)
        pause = 0.05
        reason = "no PubAck from the server"
        while (remaining := deadline - loop.time()) > 0:
            if self._nc.is_closed:
                raise NotConnected(f"cannot enqueue: the connection to {self.url} is closed")
            try:
                reply = await self._nc.request(
                    message.subject,
                    message.data,
                    timeout=min(remaining, self._request_timeout),
                    headers=headers,
                )
            except nats.errors.TimeoutError:
                continue  # the ack (or the message) was lost: send it again, stored once
            except nats.errors.NoRespondersError:
                # No stream leader right now (an election after a node loss), or no stream.
                reason = "no stream answered for this subject"
            except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError):
                reason = "not connected to NATS"
            except nats.errors.ConnectionClosedError:
                raise NotConnected(
                    f"cannot enqueue: the connection to {self.url} is closed"
                ) from None
            else:
                return _puback_result(message.subject, reply.data, reply.headers)
            await asyncio.sleep(min(pause, max(remaining, 0)))
            pause = min(pause * 2, 1.0)
        return PublishFailed(
            f"publish to {message.subject!r}: {reason} within {self._publish_timeout:g}s"
        )
