"""The blocking producer: enqueue actorq tasks and wait for results from ordinary code.

Django and Flask views, management commands, scripts, thread pools: code that blocks. This
producer is the asyncio producer (`_aio`) hosted on an asyncio loop in one daemon thread; its
blocking methods hand coroutines to that loop and wait for them. Everything the asyncio
producer guarantees holds here too: the same messages, argument checks (raised in the calling
thread, before anything reaches the loop), results and errors. One producer may be shared by
every thread of a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, final, overload

from . import _aio
from ._task import BoundCall, Task, resolve_task

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable
    from types import TracebackType

    from ._aio_results import TaskHandle as AsyncTaskHandle
    from ._app import App
    from ._wire import ResultRecord

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread, until `stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block until it ends; its outcome is ours.

        If the wait is interrupted (Ctrl-C), the coroutine is cancelled.
        """
        if os.getpid() != self.pid:
            coroutine.close()
            raise RuntimeError(
                "this actorq producer was connected in another process (before a fork):"
                " connect one in each process, after forking"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if os.getpid() == self.pid and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()


def connect(
    app: App,
    url: str | None = None,
    *,
    publish_timeout: float = 30.0,
    request_timeout: float = 5.0,
    **nats_options: Any,
) -> Producer:
    """Connect a blocking producer of ``app`` to NATS; close it with ``close()`` or ``with``.

    ::

        with actorq.sync.connect(app, "nats://127.0.0.1:4222") as producer:
            handle = producer.enqueue(add, 1, 2)
            assert handle.result(timeout=10) == 3

    The arguments are those of `actorq.aio.connect`. In a web app, connect once per process
    (at start-up, or lazily on first use) and share the producer between threads; in a
    pre-forking server (gunicorn, uWSGI) connect in each worker process, after the fork.

    Raises:
        InvalidUrl: a URL that names no NATS server.
        NotConnected: the first connect failed (the message names the URL and why).
    """
    thread = _LoopThread(f"actorq-producer-{app.namespace}")
    stack = contextlib.AsyncExitStack()
    try:
        producer = thread.run(
            stack.enter_async_context(
                _aio.connect(
                    app,
                    url,
                    publish_timeout=publish_timeout,
                    request_timeout=request_timeout,
                    **nats_options,
                )
            )
        )
    except BaseException:
        thread.stop()
        raise
    return Producer(producer, stack, thread)


@final
class Producer:
    """Enqueues tasks of one app from blocking code and waits for their results. From
    `connect`; safe to share between threads."""

    def __init__(
        self, producer: _aio.Producer, stack: contextlib.AsyncExitStack, thread: _LoopThread
    ) -> None:
        self._producer = producer
        self._stack = stack
        self._thread = thread
        self._closed = False
        self._lock = threading.Lock()
        self.app = producer.app
        self.url = producer.url
        """The URL connected to (without passwords)."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<actorq.sync.Producer of app {self.app.namespace!r} on {state}>"

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up right now (False while reconnecting)."""
        return not self._closed and self._producer.connected

    def close(self) -> None:
        """Close the connection and stop the producer's thread. Idempotent.

        Handles stop working; tasks already enqueued are unaffected.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if os.getpid() == self._thread.pid:
                self._thread.run(self._stack.aclose())
        finally:
            self._thread.stop()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError(f"{self!r} is closed")
        return self._thread.run(coroutine)

    @overload
    def enqueue(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]: ...
    @overload
    def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]: ...

    def enqueue(self, task: Any, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Publish one task; returns its handle once the server has stored it.

        ``task`` is a task object or a registered name; every other argument goes to the
        task.

        Raises:
            TypeError: the arguments do not fit the task's signature (nothing is published).
            PublishFailed: the server refused the message, or did not store it in time.
            NotConnected: the connection is closed.
            TaskDropped: the app's dispatch middleware dropped it.
        """
        resolved: Task[Any, Any] = resolve_task(self.app, task)
        call = BoundCall(resolved, resolved.encode_arguments(args, kwargs))
        return self.enqueue_many([call])[0]

    def enqueue_many(self, calls: Iterable[BoundCall[Any]]) -> list[TaskHandle[Any]]:
        """Publish a batch of tasks, many acks awaited at once: ``[add.bind(1, 2), ...]``.

        Raises:
            PublishFailed: the server refused at least one message (the others are stored).
        """
        handles = self._run(self._producer.enqueue_many(list(calls)))
        return [TaskHandle(self, handle) for handle in handles]

    def call(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Enqueue a task and block until its result (see `enqueue`, `TaskHandle.result`)."""
        handle: TaskHandle[R] = self.enqueue(task, *args, **kwargs)
        return handle.result()

    @overload
    def handle(self, task_id: str, task: Task[Any, R], /) -> TaskHandle[R]: ...
    @overload
    def handle(self, task_id: str, task: str | None = None, /) -> TaskHandle[Any]: ...

    def handle(self, task_id: str, task: Task[Any, Any] | str | None = None, /) -> TaskHandle[Any]:
        """A handle on any task by id — enqueued here, elsewhere, before or after now.

        Raises:
            ValueError: ``task_id`` is not a task id.
        """

        async def make() -> AsyncTaskHandle[Any]:
            return self._producer.handle(task_id, task)

        return TaskHandle(self, self._run(make()))


@final
class TaskHandle(Generic[R]):
    """A task that was enqueued, seen from blocking code: wait for its result here."""

    __slots__ = ("_handle", "_producer", "id", "task")

    def __init__(self, producer: Producer, handle: AsyncTaskHandle[R]) -> None:
        self._producer = producer
        self._handle = handle
        self.id: str = handle.id
        """The task id (32 hex characters)."""
        self.task: str = handle.task
        """The task's registered name (``?`` when the handle was made without it)."""

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task} {self.id}>"

    @property
    def done(self) -> bool:
        """Whether the outcome has arrived here (without waiting or asking the server)."""
        return self._handle.done

    def outcome(self, *, timeout: float | None = None) -> ResultRecord:
        """Block until the raw outcome record arrives, without raising for failures.

        Raises:
            ResultTimeout: no outcome within ``timeout`` seconds.
        """
        return self._producer._run(self._handle.outcome(timeout=timeout))

    def result(self, *, timeout: float | None = None) -> R:
        """Block until the task's result arrives, structured to its return annotation.

        Args:
            timeout: Seconds to wait; None waits until the result arrives. A timeout does not
                affect the task, which may still run.

        Raises:
            TaskFailed: the task failed for good (kind, message, remote traceback, attempts).
            TaskCancelled: the task was cancelled.
            ResultTimeout: no result within ``timeout``.
        """
        return self._producer._run(self._handle.result(timeout=timeout))
