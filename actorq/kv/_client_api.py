"""The coordination primitives a `Client` offers (mixed into `actorq.Client`).

Each method builds a primitive on the client's broker, in buckets namespaced by the app
(``actorq_<ns>_locks``, ``actorq_<ns>_kv_<name>``...; see `Layout`), replicated like the app's
streams. Nothing touches the server until the primitive is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ..broker import KvConfig, StreamConfig
from ._counter import Counter
from ._lock import Lock
from ._ratelimit import Rate, RateLimiter
from ._store import KvStore
from ._waitgroup import WaitGroup

if TYPE_CHECKING:
    from .._app import App
    from ..actors._leader import LeaderElector
    from ..broker import Broker

M = TypeVar("M")


class CoordinationApi:
    """Methods of `actorq.Client` that open coordination primitives on its broker."""

    app: App
    broker: Broker

    def _replicas(self, replicas: int | None) -> int:
        return self.app.replicas if replicas is None else replicas

    def _lease_bucket(self, bucket: str) -> KvConfig:
        return KvConfig(bucket, replicas=self.app.replicas, allow_per_key_ttl=True)

    def kv(
        self,
        bucket: str,
        model: type[M],
        *,
        history: int = 1,
        max_age: float | None = None,
        replicas: int | None = None,
        ttl: float | None = None,
        per_key_ttl: bool = False,
    ) -> KvStore[M]:
        """A typed store: values of type ``model`` in the app's bucket ``bucket``.

        Args:
            bucket: The store's name (1-64 letters, digits, ``_``, ``-``); the bucket is
                ``actorq_<ns>_kv_<bucket>``.
            model: An attrs class (or any type the cattrs converter handles).
            history: Revisions kept per key (1-64).
            max_age: Seconds every value lives after its last write; None for ever.
            replicas: Copies on a cluster (default: the app's ``replicas``).
            ttl: Default per-key TTL of writes, in seconds (whole seconds, at least 1); turns
                on per-key TTL.
            per_key_ttl: Allow ``ttl=`` on individual writes without a default.

        Bucket options apply when the bucket is first used (created, or updated to them).
        """
        config = KvConfig(
            self.app.layout.kv_bucket(bucket),
            history=history,
            max_age=max_age,
            replicas=self._replicas(replicas),
            allow_per_key_ttl=per_key_ttl or ttl is not None,
        )
        return KvStore(self.broker, config.bucket, model, config=config, ttl=ttl)

    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        timeout: float | None = None,
        holder: str | None = None,
    ) -> Lock:
        """A lease lock: ``async with client.lock("reports", ttl=10) as lease: ...``.

        Args:
            name: The lock (a key: letters, digits, ``_=/-``, dot-separated).
            ttl: Seconds a crashed holder keeps others waiting (at least 1).
            timeout: Seconds to wait for a held lock; None forever, 0 tries once (`LockHeld`).
            holder: Describes this holder in the lease record (default ``host:pid``).
        """
        bucket = self.app.layout.locks_bucket
        return Lock(
            self.broker, bucket, name, ttl=ttl, timeout=timeout, holder=holder,
            config=self._lease_bucket(bucket),
        )  # fmt: skip

    def leader(self, role: str, *, ttl: float = 10.0, holder: str | None = None) -> LeaderElector:
        """A `LeaderElector` campaigning for ``role`` once started (``nursery.start(e.run)``).

        Args:
            role: The role (a key), e.g. ``"scheduler"``.
            ttl: Seconds after which a dead leader is replaced (at least 1).
            holder: Describes this candidate (default ``host:pid``).
        """
        from ..actors._leader import LeaderElector

        bucket = self.app.layout.leaders_bucket
        return LeaderElector(
            self.broker, bucket, role, ttl=ttl, holder=holder, config=self._lease_bucket(bucket)
        )

    def wait_group(self, name: str) -> WaitGroup:
        """A distributed wait group (``add``, ``done``, ``wait``, ``close``)."""
        bucket = self.app.layout.wait_groups_bucket
        return WaitGroup(
            self.broker, bucket, name, config=KvConfig(bucket, replicas=self.app.replicas)
        )

    def counter(self, name: str) -> Counter:
        """A distributed counter on the app's counter stream (``add``, ``value``, ``reset``)."""
        layout = self.app.layout
        config = StreamConfig(
            layout.counters_stream,
            (layout.counter_subjects,),
            replicas=self.app.replicas,
            allow_msg_counter=True,
        )
        return Counter(self.broker, config.name, layout.counter_subject(name), name, config=config)

    def rate_limiter(self, name: str, rate: str | Rate, *, guard: float = 0.05) -> RateLimiter:
        """A distributed rate limiter: ``async with limiter.acquire(key): ...``.

        Args:
            name: The limiter (a key); every process using the same name shares the limit.
            rate: ``"100/s"``, ``"20/m"``, ``"5/h"``... or a `Rate`.
            guard: Seconds added to each window, for the jitter between computing a slot and
                using it (see `RateLimiter`).
        """
        bucket = self.app.layout.rate_limits_bucket
        return RateLimiter(
            self.broker, bucket, name, rate, guard=guard, config=self._lease_bucket(bucket)
        )
