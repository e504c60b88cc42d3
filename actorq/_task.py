"""Tasks: registered functions, their options, and argument binding.

A `Task` is a frozen description of a registered function: its name (fixed at registration),
its signature (introspected once), and its `TaskOptions`. ``task.options(...)`` returns a new
frozen `Task` with some options changed — the only way options travel, so they can never be
confused with the task's own keyword arguments.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import attrs

from . import _codec
from ._names import default_task_name, validate_task_name
from ._options import TaskOptions, evolve_options
from ._typecheck import check_value

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen(eq=False)
class Task(Generic[P, R]):
    """A registered task. Create with ``@app.task``; change options with `options`.

    Calling the task object calls the function directly, in-process (handy in tests); use
    ``client.enqueue(task, ...)`` to run it on a worker.
    """

    name: str
    fn: Callable[..., Any] | None = attrs.field(repr=False)
    settings: TaskOptions = attrs.field(factory=TaskOptions)
    signature: inspect.Signature | None = attrs.field(default=None, repr=False)
    hints: dict[str, Any] = attrs.field(factory=dict, repr=False)
    is_async: bool = False
    _positional: tuple[str, ...] | None = attrs.field(init=False, repr=False)
    """The parameter names when every parameter is a plain one: a call passing exactly those,
    positionally, needs no `inspect.Signature.bind` (the common case, on both sides)."""

    def __attrs_post_init__(self) -> None:
        names = None
        if self.signature is not None and all(
            parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            for parameter in self.signature.parameters.values()
        ):
            names = tuple(self.signature.parameters)
        object.__setattr__(self, "_positional", names)

    def positional_binding(
        self, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[str, ...] | None:
        """The names ``args`` bind to when the call passes every parameter positionally and
        each is a plain one (no ``*args``, keyword-only, ...); None otherwise."""
        names = self._positional
        if names is not None and not kwargs and len(args) == len(names):
            return names
        return None

    @property
    def return_type(self) -> Any:
        """The annotated return type (``Any`` when unannotated)."""
        return self.hints.get("return", Any)

    @property
    def queue(self) -> str:
        return self.settings.queue

    def options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (see `TaskOptions`).

        Raises:
            TypeError: an unknown option name.
            ValueError: an invalid option value.
        """
        return attrs.evolve(self, settings=evolve_options(self.settings, changes))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        if self.fn is None:
            raise TypeError(f"task {self.name!r} is a remote reference and has no local function")
        return self.fn(*args, **kwargs)

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> BoundCall[R]:
        """This task with its arguments, checked and encoded now (for ``enqueue_many``).

        Raises:
            TypeError: the arguments do not fit the signature (see `encode_arguments`).
        """
        return BoundCall(self, self.encode_arguments(args, kwargs))

    def encode_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Bind and check arguments against the signature, and encode them as the payload.

        Raises `TypeError` before anything is published: wrong count, unknown keyword, a value
        that does not fit its annotation, or a value that cannot be encoded as JSON.
        """
        names = self.positional_binding(args, kwargs)
        if names is not None:
            for name, value in zip(names, args, strict=True):
                self._check_argument(name, value)
        elif self.signature is not None:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{self.name}(): {error}") from None
            for name, value in bound.arguments.items():
                self._check_argument(name, value)
            args, kwargs = tuple(bound.args), dict(bound.kwargs)
        try:
            return _codec.dumps({"args": list(args), "kwargs": kwargs})
        except Exception as error:
            raise TypeError(
                f"{self.name}(): arguments cannot be encoded as JSON: {error}"
            ) from None

    def _check_argument(self, name: str, value: Any) -> None:
        assert self.signature is not None
        parameter = self.signature.parameters[name]
        annotation = self.hints.get(name, Any)
        where = f"{self.name}(): argument {name!r}"
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            for index, item in enumerate(value):
                check_value(item, annotation, f"{where}[{index}]")
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            for key, item in value.items():
                check_value(item, annotation, f"{self.name}(): argument {key!r}")
        else:
            check_value(value, annotation, where)

    def decode_arguments(self, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        """Parse a payload and structure each argument into its annotated type (worker side).

        Raises `ValueError` for malformed JSON or shape, `TypeError` for arguments that do not
        bind or structure.
        """
        document = _codec.loads(payload)
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("args", []), list)
            or not isinstance(document.get("kwargs", {}), dict)
        ):
            raise ValueError(
                "payload must be a JSON object with 'args' (list) and 'kwargs' (object)"
            )
        args: list[Any] = document.get("args", [])
        kwargs: dict[str, Any] = document.get("kwargs", {})
        if self.signature is None:
            return args, kwargs
        names = self.positional_binding(args, kwargs)
        if names is not None:
            return [
                self._structure_argument(name, value)
                for name, value in zip(names, args, strict=True)
            ], {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self.name}(): {error}") from None
        for name, value in list(bound.arguments.items()):
            bound.arguments[name] = self._structure_argument(name, value)
        return list(bound.args), dict(bound.kwargs)

    def _structure_argument(self, name: str, value: Any) -> Any:
        assert self.signature is not None
        kind = self.signature.parameters[name].kind
        annotation = self.hints.get(name, Any)
        try:
            if kind is inspect.Parameter.VAR_POSITIONAL:
                return tuple(_codec.from_json(item, annotation) for item in value)
            if kind is inspect.Parameter.VAR_KEYWORD:
                return {k: _codec.from_json(v, annotation) for k, v in value.items()}
            return _codec.from_json(value, annotation)
        except Exception as error:
            raise TypeError(
                f"{self.name}(): argument {name!r}: {_codec.describe_structure_error(error)}"
            ) from None


@attrs.frozen(eq=False)
class BoundCall(Generic[R]):
    """A task and its encoded arguments, from `Task.bind`."""

    task: Task[Any, R]
    payload: bytes = attrs.field(repr=False)


def make_task(fn: Callable[..., Any], *, name: str | None, settings: TaskOptions) -> Task[Any, Any]:
    """Introspect a function once and describe it as a task."""
    if not callable(fn):
        raise TypeError(f"@app.task needs a function, got {fn!r}")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(f"{fn!r} is a generator; a task must return a value, not yield")
    task_name = validate_task_name(
        name if name is not None else default_task_name(fn.__module__, fn.__qualname__)
    )
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as error:
        raise TypeError(
            f"cannot resolve the annotations of task {task_name!r}: {error} (define the types"
            " it names at module level)"
        ) from None
    return Task(
        name=task_name,
        fn=fn,
        settings=settings,
        signature=signature,
        hints=hints,
        is_async=inspect.iscoroutinefunction(fn),
    )


def remote_task(name: str, *, queue: str = "default", returns: type[R] | Any = Any) -> Task[..., R]:
    """A reference to a task by name, for producers that do not have its code.

    Arguments are not checked against a signature (the producer has none); the worker that
    owns the task checks them. ``returns`` types the result.
    """
    return Task(
        name=validate_task_name(name),
        fn=None,
        settings=TaskOptions(queue=queue),
        hints={"return": returns},
    )


class TaskRegistry(Protocol):
    """What `resolve_task` needs of an app: its tasks by name."""

    def lookup(self, name: str) -> Task[Any, Any] | None: ...


def resolve_task(app: TaskRegistry, task: Task[P, R] | str) -> Task[P, R]:
    """A task object for ``task``: itself, the app's task of that name, or a remote reference
    (default queue) for a name the app does not register.

    Raises:
        TypeError: ``task`` is neither a task nor a name.
        ValueError: an invalid task name.
    """
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        registered = app.lookup(task)
        return registered if registered is not None else remote_task(task)  # type: ignore[return-value]
    raise TypeError(f"expected a task or a task name, got {task!r}")


AnyTask = Task[Any, Any]
TaskFunction = Callable[P, Awaitable[R]] | Callable[P, R]
