"""Small helpers shared by the public namespaces."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Make re-exported public names report the public module they are reached from.

    Tracebacks, reprs and docs then say ``actorq.Worker`` rather than
    ``actorq._worker.Worker``. Only objects defined inside actorq are touched.
    """
    seen: set[int] = set()

    def fix(name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod = getattr(obj, "__module__", None)
        if mod is None or not mod.startswith("actorq."):
            return
        if isinstance(obj, type) and attrs.has(obj):
            # String annotations are resolved in the defining module's namespace, which the
            # new __module__ would hide from cattrs and typing.get_type_hints. Classes that
            # name types imported only for type checking are never structured; skip them.
            with contextlib.suppress(NameError):
                attrs.resolve_types(obj)
        try:
            obj.__module__ = module_name
        except (AttributeError, TypeError):
            return
        if isinstance(obj, type):
            for attr_name, attr_value in obj.__dict__.items():
                if not attr_name.startswith("_"):
                    fix(attr_name, attr_value)

    for name, obj in namespace.items():
        if not name.startswith("_"):
            fix(name, obj)
