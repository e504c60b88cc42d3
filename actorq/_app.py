"""The application: a namespace and its registry of tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from ._middleware import LoggingMiddleware, Middleware
from ._names import Layout
from ._periodic import Periodic, Schedule, make_periodic
from ._retry import DEFAULT_RETRY, RetryPolicy
from ._task import Task, TaskOptions, make_task

P = ParamSpec("P")
R = TypeVar("R")


class _TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """An actorq application: the namespace of its streams, subjects and buckets, and its tasks.

    Producers and workers that share a namespace share work; several apps can share one NATS.

    Args:
        namespace: 1-32 lowercase letters, digits, ``_`` or ``-``.
        default_retry: The retry policy of tasks that set none.
        result_ttl: Seconds stored results are kept (default one day).
        max_result_size: Largest encoded result in bytes; a bigger one fails the task clearly
            (kind ``result_too_large``) instead of being refused by the server.
        replicas: Replicas of the app's streams and buckets (3 on a production cluster).
        idempotency_ttl: Seconds the result of a task with an ``idempotency_key`` is kept to
            answer later enqueues with the same key (default one day).
        middleware: Middleware wrapping every enqueue and execution (see `Middleware`);
            default: a `LoggingMiddleware`. Add more with `use`.
    """

    def __init__(
        self,
        namespace: str,
        *,
        default_retry: RetryPolicy = DEFAULT_RETRY,
        result_ttl: float = 24 * 3600.0,
        max_result_size: int = 512 * 1024,
        replicas: int = 1,
        idempotency_ttl: float = 24 * 3600.0,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        self.layout = Layout(namespace)
        self.default_retry = default_retry
        if result_ttl <= 0:
            raise ValueError(f"result_ttl must be positive, got {result_ttl!r}")
        self.result_ttl = float(result_ttl)
        self.max_result_size = max_result_size
        self.replicas = replicas
        if idempotency_ttl < 1:
            raise ValueError(f"idempotency_ttl must be at least 1 second, got {idempotency_ttl!r}")
        self.idempotency_ttl = float(idempotency_ttl)
        self.middleware: list[Middleware] = (
            [LoggingMiddleware()] if middleware is None else list(middleware)
        )
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, Periodic] = {}

    @property
    def namespace(self) -> str:
        return self.layout.namespace

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """Registered tasks by name."""
        return dict(self._tasks)

    def __repr__(self) -> str:
        return f"App({self.namespace!r}, tasks={sorted(self._tasks)})"

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        store_result: bool = True,
        result_ttl: float | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        store_result: bool = True,
        result_ttl: float | None = None,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., queue=...)``.

        ``async def`` functions run on the worker's trio loop; plain ``def`` functions run in
        a worker thread. The default name is the module-qualified function name; name tasks
        explicitly when producers and workers live in different codebases.

        Raises:
            ValueError: an invalid or already registered name, or an invalid option.
            TypeError: not a function, a generator, or unresolvable annotations.
        """
        settings = TaskOptions(
            queue=queue,
            retry=retry,
            timeout=timeout,
            store_result=store_result,
            result_ttl=result_ttl,
        )

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            task = make_task(function, name=name, settings=settings)
            if task.name in self._tasks:
                raise ValueError(
                    f"task {task.name!r} is already registered in app {self.namespace!r}"
                )
            self._tasks[task.name] = task
            return task

        return register if fn is None else register(fn)

    def periodic(
        self, schedule: str | Schedule, task: Task[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> Periodic:
        """Run ``task(*args, **kwargs)`` on a recurring schedule fired by the NATS server.

        ``schedule`` is a six-field cron expression (``"0 */5 * * * *"``: seconds first),
        ``"@every 30s"``, an alias (``"@hourly"``...) or a `Schedule` with a time zone. Every
        worker of the app installs it at start (idempotently); each tick runs once, on one
        worker, however many run. Arguments are checked now, like an enqueue's.

        Raises:
            ValueError: an expression the server would refuse (named, with the problem).
            TypeError: arguments that do not fit the task.
        """
        periodic = make_periodic(schedule, task, task.encode_arguments(args, kwargs))
        self._periodic[periodic.id] = periodic
        return periodic

    @property
    def periodics(self) -> tuple[Periodic, ...]:
        """The periodic tasks registered with `periodic`."""
        return tuple(self._periodic.values())

    def use(self, middleware: Middleware) -> Middleware:
        """Add a middleware (inside the ones added before it). Returns it."""
        if not isinstance(middleware, Middleware):
            raise TypeError(f"app.use() takes an actorq.Middleware, got {middleware!r}")
        self.middleware.append(middleware)
        return middleware

    def lookup(self, name: str) -> Task[Any, Any] | None:
        return self._tasks.get(name)

    def retry_policy(self, task: Task[Any, Any]) -> RetryPolicy:
        return task.settings.retry or self.default_retry
