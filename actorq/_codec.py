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


_SCALARS = frozenset({str, int, float, bool, type(None)})


def to_json(value: object) -> Any:
    """Unstructure a value into JSON-compatible builtins.

    Values of the exact JSON types (``str``, ``int``, ``float``, ``bool``, None, and ``list``
    and ``dict`` with ``str`` keys holding such values) are what the converter would return
    anyway, so they are copied here without its dispatch; everything else — subclasses
    included, so hooks registered for them apply — goes through the converter.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [to_json(item) for item in value]  # type: ignore[attr-defined]
    if kind is dict:
        document: dict[str, Any] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return converter.unstructure(value)
            document[key] = to_json(item)
        return document
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


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One compact encoder for every call (``json.dumps`` with options builds a new one each time).
# No circular-reference markers: `to_json` has walked the value already, so a cycle has
# failed there, and without shared markers the encoder is safe to use from any thread.
_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _encoder is not None:
    _encoder = _encoder(
        None, _not_serializable, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )


def dumps(value: object) -> bytes:
    """Compact JSON bytes of an unstructured value."""
    document = to_json(value)
    if _encoder is None:  # pragma: no cover - a Python without the C accelerator
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return "".join(_encoder(document, 0)).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes; raises `ValueError` (with the position) on malformed input."""
    return json.loads(data)


def describe_structure_error(error: BaseException) -> str:
    """A one-line-per-problem description of a cattrs structuring failure, for error records."""
    if isinstance(error, cattrs.BaseValidationError):
        lines = cattrs.transform_error(error)
        return "; ".join(lines)
    return f"{type(error).__name__}: {error}"
