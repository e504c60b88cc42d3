"""Apps for tests: the same tasks under a namespace of their own.

Tests that share one NATS server stay apart by namespace, not by server: every stream,
consumer, subject and bucket of an app lives under its namespace. `isolated_app` gives a test
its own namespace without re-registering anything.
"""

from __future__ import annotations

import copy
import secrets
from typing import TYPE_CHECKING

from .._names import Layout

if TYPE_CHECKING:
    from .._app import App


def isolated_app(app: App, namespace: str | None = None) -> App:
    """A copy of ``app`` — same tasks, same settings — under another namespace.

    ``namespace`` defaults to the app's own (cut to 19 characters) plus ``-`` and 12 random
    hex characters, which is fresh even on a server that outlives the test run.

    Raises:
        ValueError: an invalid namespace.
    """
    if namespace is None:
        namespace = f"{app.namespace[:19]}-{secrets.token_hex(6)}"
    clone = copy.copy(app)
    clone.layout = Layout(namespace)
    return clone
