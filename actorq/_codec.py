"""The one converter: Python values to JSON on the wire and back.

Arguments, results and every envelope actorq writes go through the single cattrs converter
built here, preconfigured for JSON (datetimes as ISO 8601, bytes as base85, sets as lists,
attrs classes as objects). JSON keeps messages readable by any NATS tool and any language; no
pickle, ever: data from the network is structured into declared types, never executed.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")

converter = make_converter()
"""The converter every actorq module uses; register hooks for custom types on it."""

_PASSTHROUGH: tuple[object, ...] = (Any, object, inspect.Parameter.empty, None)


def to_json(value: object) -> Any:
    """Unstructure a value into JSON-compatible builtins."""
    return converter.unstructure(value)


def from_json(value: Any, annotation: Any) -> Any:
    """Structure a JSON value into ``annotation`` (returned unchanged when it is unannotated)."""
    if annotation in _PASSTHROUGH or isinstance(annotation, typing.TypeVar):
        return value
    if annotation is type(None):
        if value is not None:
            raise TypeError(f"expected null, got {value!r}")
        return None
    return converter.structure(value, annotation)


def dumps(value: object) -> bytes:
    """Compact JSON bytes of an unstructured value."""
    return json.dumps(to_json(value), separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes; raises `ValueError` (with the position) on malformed input."""
    return json.loads(data)


def describe_structure_error(error: BaseException) -> str:
    """A one-line-per-problem description of a cattrs structuring failure, for error records."""
    if isinstance(error, cattrs.BaseValidationError):
        lines = cattrs.transform_error(error)
        return "; ".join(lines)
    return f"{type(error).__name__}: {error}"
