"""The coordination primitives a `Client` offers (mixed into `actorq.Client`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._app import App
    from ..broker import Broker


class CoordinationApi:
    """Methods of `actorq.Client` that open coordination primitives on its broker."""

    app: App
    broker: Broker
