"""Checks made while a DAG is built and before it is submitted: argument types (a step's
return annotation against the parameter it feeds), and cycles.

A literal argument is checked like an enqueue's (``_typecheck.check_value``). A reference to a
step has no value yet, so its *type* is checked instead: the upstream task's return annotation
must fit the parameter's annotation (``int`` fits ``float``, ``int | None``, ``Any``...). What
cannot be decided (an unannotated side, a forward reference) passes: the worker structures the
value when it runs, as it does for any task.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import types
import typing
from typing import Any

from .._typecheck import check_value, type_name

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

_ANY: tuple[object, ...] = (Any, object, inspect.Parameter.empty)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    supertype = getattr(annotation, "__supertype__", None)  # NewType
    return _unwrap(supertype) if supertype is not None else annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


_compatible_memo: dict[tuple[Any, Any], bool] = {}
_MEMO_LIMIT = 4096


def compatible(source: Any, target: Any) -> bool:
    """Whether every value of type ``source`` fits ``target`` (lenient where it cannot tell).

    Memoized (a pure function of two annotations): a fan-out checks the same pair for
    every one of its steps."""
    try:
        return _compatible_memo[(source, target)]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation
        return _compatible(source, target)
    answer = _compatible(source, target)
    if len(_compatible_memo) < _MEMO_LIMIT:
        _compatible_memo[(source, target)] = answer
    return answer


def _compatible(source: Any, target: Any) -> bool:
    source, target = _unwrap(source), _unwrap(target)
    if target in _ANY or source in _ANY:
        return True
    if isinstance(source, typing.TypeVar) or isinstance(target, typing.TypeVar):
        return True
    if source == target:
        return True
    if source is None:
        source = type(None)
    if target is None:
        target = type(None)
    if _is_union(source):
        return all(compatible(arm, target) for arm in typing.get_args(source))
    if _is_union(target):
        return any(compatible(source, arm) for arm in typing.get_args(target))
    if typing.get_origin(target) is typing.Literal or typing.get_origin(source) is typing.Literal:
        if typing.get_origin(source) is typing.Literal:
            values = typing.get_args(source)
            return all(check_fits(value, target) for value in values)
        return False
    source_origin = typing.get_origin(source) or source
    target_origin = typing.get_origin(target) or target
    if not (isinstance(source_origin, type) and isinstance(target_origin, type)):
        return True  # a string or otherwise unresolved annotation: the worker decides
    if target_origin is float and source_origin is int:
        return True
    if source_origin is bool and target_origin is int:
        return False  # check_value refuses a bool for an int too
    if not issubclass(source_origin, target_origin):
        return False
    source_args, target_args = typing.get_args(source), typing.get_args(target)
    if not source_args or not target_args:
        return True
    if target_origin is tuple or source_origin is tuple:
        return _tuples_compatible(source_args, target_args)
    if len(source_args) != len(target_args):
        return True
    return all(compatible(s, t) for s, t in zip(source_args, target_args, strict=True))


def _tuples_compatible(source: tuple[Any, ...], target: tuple[Any, ...]) -> bool:
    if len(target) == 2 and target[1] is Ellipsis:
        items = source[:1] if len(source) == 2 and source[1] is Ellipsis else source
        return all(compatible(item, target[0]) for item in items)
    if len(source) == 2 and source[1] is Ellipsis:
        return False
    return len(source) == len(target) and all(
        compatible(s, t) for s, t in zip(source, target, strict=True)
    )


def check_fits(value: object, annotation: Any) -> bool:
    try:
        check_value(value, annotation, "")
    except TypeError:
        return False
    return True


def element_annotation(annotation: Any, index: int | str) -> Any:
    """The annotation of one element of a container annotated ``annotation``."""
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args:
        return Any
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[index] if isinstance(index, int) and index < len(args) else Any
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        return args[1] if len(args) == 2 else Any
    return args[0]


class RefChecker:
    """Checks one argument that may contain references (anywhere inside lists, tuples and
    dicts); ``describe(value)`` returns ``(source annotation, what)`` for a reference and
    None for anything else."""

    def __init__(self, describe: Callable[[object], tuple[Any, str, object] | None]) -> None:
        self._describe = describe

    def contains_ref(self, value: object) -> bool:
        if self._describe(value) is not None:
            return True
        if isinstance(value, list | tuple):
            return any(self.contains_ref(item) for item in value)
        if isinstance(value, dict):
            return any(self.contains_ref(item) for item in value.values())
        return False

    def check(self, value: object, annotation: Any, where: str) -> None:
        """Raise `TypeError` unless ``value`` (references included) fits ``annotation``."""
        described = self._describe(value)
        if described is not None:
            source, what, default = described
            if not compatible(source, annotation):
                raise TypeError(
                    f"{where} expects {type_name(annotation)}, but {what} returns"
                    f" {type_name(source)}"
                )
            if default is not _NO_DEFAULT:
                check_value(default, annotation, f"{where} (the default of {what})")
            return
        if not self.contains_ref(value):
            check_value(value, annotation, where)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"{where}: a dict holding step references needs str keys")
                self.check(item, element_annotation(annotation, key), f"{where}[{key!r}]")
            return
        assert isinstance(value, list | tuple)
        for index, item in enumerate(value):
            self.check(item, element_annotation(annotation, index), f"{where}[{index}]")


_NO_DEFAULT: Any = object()
NO_DEFAULT = _NO_DEFAULT
"""`RefChecker` describe functions return it when a reference has no default."""


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in the graph ``step -> the steps it depends on``, as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            for child in children:
                mark = state.get(child)
                if mark == 1:
                    return path[path.index(child) :] + [child]
                if mark is None:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(edges.get(child, ()))))
                    break
            else:
                stack.pop()
                state[node] = 2
                path.pop()
    return None
