"""Strict checks of argument values against annotations, before anything is published.

The worker structures JSON back into the handler's annotated types with the converter, which
coerces where JSON forces it (a list becomes a tuple, a dict an attrs instance). On the producer
side we hold Python values, so we can and should be strict: ``add("1", 2)`` for
``add(x: int, y: int)`` is a bug at the call site, refused with a `TypeError` that names the
task, the parameter and the expected type — the way ebind refuses non-assignable values.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import inspect
import types
import typing
from typing import Any


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(value: object, annotation: Any, where: str) -> None:
    """Raise `TypeError` unless ``value`` fits ``annotation``.

    ``where`` names the value in the message, e.g. ``"add(): argument 'x'"``.
    """
    problem = _mismatch(value, annotation)
    if problem is not None:
        raise TypeError(f"{where} {problem}")


def _fail(value: object, annotation: Any, path: str = "") -> str:
    at = f" at {path}" if path else ""
    return f"expected {type_name(annotation)}{at}, got {type(value).__name__} {_short(value)}"


def _mismatch(value: object, annotation: Any, path: str = "") -> str | None:
    """None when ``value`` fits, else a description of the first mismatch."""
    if annotation in (Any, object, inspect.Parameter.empty) or isinstance(
        annotation, typing.TypeVar
    ):
        return None
    if annotation is None or annotation is type(None):
        return None if value is None else _fail(value, None, path)
    supertype = getattr(annotation, "__supertype__", None)  # NewType
    if supertype is not None:
        return _mismatch(value, supertype, path)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _mismatch(value, args[0], path)
    if origin is typing.Union or origin is types.UnionType:
        if any(_mismatch(value, arm, path) is None for arm in args):
            return None
        return _fail(value, annotation, path)
    if origin is typing.Literal:
        return None if value in args else _fail(value, annotation, path)
    if origin is not None:
        return _generic_mismatch(value, annotation, origin, args, path)
    if not isinstance(annotation, type):
        return None  # a string or otherwise unresolvable annotation: the worker decides
    return _plain_mismatch(value, annotation, path)


def _plain_mismatch(value: object, annotation: type, path: str) -> str | None:
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif annotation is dt.date:
        ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    elif typing.is_typeddict(annotation):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, annotation)
    return None if ok else _fail(value, annotation, path)


_SEQUENCES: tuple[Any, ...] = (
    list,
    cabc.Sequence,
    cabc.MutableSequence,
    cabc.Collection,
    cabc.Iterable,
    set,
    frozenset,
    cabc.Set,
    cabc.MutableSet,
)


def _generic_mismatch(
    value: object, annotation: Any, origin: Any, args: tuple[Any, ...], path: str
) -> str | None:
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        if not isinstance(value, cabc.Mapping):
            return _fail(value, annotation, path)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        for key, item in value.items():
            problem = _mismatch(key, key_type, f"{path}[{key!r}] (key)") or _mismatch(
                item, value_type, f"{path}[{key!r}]"
            )
            if problem:
                return problem
        return None
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return _fail(value, annotation, path)
        if len(args) == 2 and args[1] is Ellipsis:
            element_types: list[Any] = [args[0]] * len(value)
        elif args == ((),):
            element_types = []
        else:
            element_types = list(args)
            if len(element_types) != len(value):
                return _fail(value, annotation, path)
        for index, (item, item_type) in enumerate(zip(value, element_types, strict=True)):
            problem = _mismatch(item, item_type, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if origin in _SEQUENCES:
        if isinstance(value, str | bytes | cabc.Mapping) or not isinstance(value, cabc.Iterable):
            return _fail(value, annotation, path)
        if origin in (set, frozenset, cabc.Set, cabc.MutableSet) and not isinstance(
            value, cabc.Set | list | tuple
        ):
            return _fail(value, annotation, path)
        if origin is list and not isinstance(value, list | tuple):
            return _fail(value, annotation, path)
        item_type = args[0] if args else Any
        for index, item in enumerate(value):  # type: ignore[arg-type]
            problem = _mismatch(item, item_type, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(origin, type):
        return _plain_mismatch(value, origin, path)
    return None
