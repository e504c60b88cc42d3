"""Coordination primitives on JetStream KV: typed store, lease lock, leader election, wait
group, counter and rate limiter.

Reached from a connected client (``client.kv(...)``, ``client.lock(...)``,
``client.leader(...)``, ``client.wait_group(...)``, ``client.counter(...)``,
``client.rate_limiter(...)``); every primitive runs on both brokers, because the memory
broker's KV has the same revision semantics. See ``docs/coordination.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import (
    FencedOut as FencedOut,
    LeaseLost as LeaseLost,
    LockHeld as LockHeld,
)
from .._util import fixup_module_metadata as _fixup_module_metadata
from ._counter import Counter as Counter
from ._fencing import Fence as Fence
from ._lease import Lease as Lease
from ._lock import Lock as Lock
from ._ratelimit import Rate as Rate, RateLimiter as RateLimiter, parse_rate as parse_rate
from ._store import Deleted as Deleted, Entry as Entry, KvStore as KvStore
from ._waitgroup import WaitGroup as WaitGroup

if TYPE_CHECKING:
    from ..actors._leader import (
        LeaderElector as LeaderElector,
        LeadershipChange as LeadershipChange,
    )

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata

_ACTORS = ("LeaderElector", "LeadershipChange")


def __getattr__(name: str) -> object:
    # The elector is an actor and lives in actorq.actors, which imports this package's lease
    # machinery; importing it on first use keeps the two packages free of an import cycle.
    if name in _ACTORS:
        from .._util import fixup_module_metadata
        from ..actors import _leader

        value = getattr(_leader, name)
        fixup_module_metadata(__name__, {name: value})
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
