"""The typed store: values of one type in a KV bucket, updated by compare-and-set.

Values are structured and unstructured by actorq's one cattrs converter and stored as JSON, so
any NATS client can read them. `KvStore.update` is the read-modify-write every coordination
primitive here builds on: it reads the key, applies a function, and writes back only if the key
still has the revision it read; on a conflict it waits a short, growing, jittered while and
tries again (bounded: at most ``max_attempts`` tries, waits capped). Updates of one key from
the same process are serialised first (one in flight per key and process, whichever store
object they go through), so the retries only ever race other processes.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import weakref
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import attrs
import trio

from .._codec import converter, describe_structure_error
from .._errors import FencedOut, KeyExists, NotFound, WrongRevision
from .._names import validate_key
from ..broker import CaughtUp, KvEntry, KvOperation
from ._fencing import add_fence, split_fence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ..broker import Broker, KvConfig, WatchEvent
    from ._fencing import Fence

M = TypeVar("M")
logger = logging.getLogger("actorq.kv")

_MISSING: Any = object()


@attrs.frozen
class Entry(Generic[M]):
    """One revision of a key: its value and where it stands."""

    key: str
    value: M
    revision: int
    """The key's revision (compare-and-set on it; revisions only grow)."""
    created: float
    """When this revision was written, seconds since the epoch."""
    fence: int | None = None
    """The fencing token of the writer, for a value written by a fenced write."""


@attrs.frozen
class Deleted:
    """A watch event: the key was deleted, purged or expired."""

    key: str
    revision: int
    operation: KvOperation
    """`KvOperation.DELETE`, or `KvOperation.PURGE` (a purge, or a per-key TTL that expired)."""
    created: float


def whole_seconds(ttl: float, what: str = "ttl") -> int:
    """A TTL as the server keeps it: whole seconds, at least one (fractions are rounded up)."""
    if not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 1:
        raise ValueError(f"{what} must be at least 1 second (the server's minimum), got {ttl!r}")
    return math.ceil(ttl)


@attrs.define(eq=False)
class _KeyLock:
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    users: int = 0


# One lock per (broker, bucket, key) with updates in flight, shared by every store object.
_key_locks: weakref.WeakKeyDictionary[object, dict[tuple[str, str], _KeyLock]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def serialised(broker: Broker, bucket: str, key: str) -> AsyncIterator[None]:
    """Hold the process-wide lock of one key of one bucket (dropped when nobody waits)."""
    table = _key_locks.setdefault(broker, {})
    entry = table.setdefault((bucket, key), _KeyLock())
    entry.users += 1
    try:
        async with entry.lock:
            yield
    finally:
        entry.users -= 1
        if entry.users == 0:
            del table[(bucket, key)]


class KvStore(Generic[M]):
    """Values of type ``M`` (an attrs class, or anything the cattrs converter handles) in one
    KV bucket. Get one from a client: ``client.kv("orders", Order)``.

    The bucket is created (or updated to ``config``) on first use. Every method may raise
    `actorq.NotConnected` (and the other broker errors); none leaves a partial write behind.

    Args:
        broker: The broker the bucket lives on.
        bucket: The bucket's full name (clients namespace it: ``actorq_<ns>_kv_<name>``).
        model: The type of the values.
        config: The bucket's configuration, ensured on first use; None to use an existing
            bucket as it is.
        ttl: The default per-key time to live of writes, in seconds (the bucket must allow
            per-key TTL); None for values that live until deleted (or the bucket's max age).
        max_attempts: How many times `update` tries before it gives up on conflicts.
        backoff: ``(first, cap)``: the wait after a conflict starts below ``first`` seconds
            and doubles up to ``cap`` (each wait is random up to that bound).
    """

    def __init__(
        self,
        broker: Broker,
        bucket: str,
        model: type[M],
        *,
        config: KvConfig | None = None,
        ttl: float | None = None,
        max_attempts: int = 100,
        backoff: tuple[float, float] = (0.005, 0.25),
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
        self.broker = broker
        self.bucket = bucket
        self.model = model
        self.config = config
        self.ttl = whole_seconds(ttl) if ttl is not None else None
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._ensured = config is None
        self._ensuring = trio.Lock()

    def __repr__(self) -> str:
        return f"<KvStore {self.bucket!r} of {getattr(self.model, '__name__', self.model)}>"

    async def ensure(self) -> None:
        """Create the bucket (or update it to the store's config) now rather than on first use."""
        if self._ensured:
            return
        async with self._ensuring:
            if not self._ensured and self.config is not None:
                await self.broker.ensure_kv(self.config)
            self._ensured = True

    # --- encoding -------------------------------------------------------------------------

    def encode(self, value: M, fence: int | None = None) -> bytes:
        data = converter.unstructure(value)
        if fence is not None:
            data = add_fence(data, fence, f"bucket {self.bucket!r}")
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, raw: KvEntry) -> Entry[M]:
        """The typed entry of a stored revision.

        Raises:
            ValueError: the stored bytes are not a valid ``M``.
        """
        try:
            data, fence = split_fence(json.loads(raw.value))
            value = converter.structure(data, self.model)
        except Exception as exc:
            raise ValueError(
                f"bucket {self.bucket!r} key {raw.key!r} revision {raw.revision}: the value is"
                f" not a valid {getattr(self.model, '__name__', self.model)}:"
                f" {describe_structure_error(exc)}"
            ) from exc
        return Entry(raw.key, value, raw.revision, raw.created, fence)

    def _ttl(self, ttl: float | None) -> int | None:
        return whole_seconds(ttl) if ttl is not None else self.ttl

    # --- reads ----------------------------------------------------------------------------

    async def get(self, key: str) -> Entry[M] | None:
        """The key's live entry, or None if it is absent, deleted or expired.

        Raises:
            ValueError: a malformed key, or a stored value that is not an ``M``.
        """
        validate_key(key)
        await self.ensure()
        raw = await self.broker.kv_get(self.bucket, key)
        return self.decode(raw) if raw is not None else None

    async def keys(self) -> list[str]:
        """The keys with a live value, sorted."""
        await self.ensure()
        return await self.broker.kv_keys(self.bucket)

    @asynccontextmanager
    async def watch(
        self, key: str = ">", *, include_history: bool = False, updates_only: bool = False
    ) -> AsyncIterator[AsyncIterator[Entry[M] | Deleted | CaughtUp]]:
        """Watch keys (``key`` may use ``*`` and ``>``): first the current entries (every
        revision kept, with ``include_history``), then `CaughtUp`, then each change as it
        happens: an `Entry` per write, a `Deleted` per delete, purge or expiry.

        ``updates_only`` skips the current entries. A value that does not decode is logged and
        skipped. The watch ends with the block::

            async with store.watch() as events:
                async for event in events:
                    ...
        """
        if key != ">":
            for token in key.split("."):
                if token not in ("*", ">"):
                    validate_key(token)
        await self.ensure()
        async with self.broker.kv_watch(
            self.bucket, key, include_history=include_history, updates_only=updates_only
        ) as events:
            yield _TypedWatch(self, events)

    # --- writes ---------------------------------------------------------------------------

    async def put(
        self, key: str, value: M, *, ttl: float | None = None, fence: Fence | None = None
    ) -> int:
        """Write ``value`` whatever the key holds; returns the new revision.

        Args:
            ttl: Seconds this revision lives (default: the store's ``ttl``).
            fence: Write only on behalf of this lease (see `Fence`); raises `FencedOut`.
        """
        if fence is not None:
            return await self.update(key, lambda _: value, default=value, ttl=ttl, fence=fence)
        validate_key(key)
        await self.ensure()
        return await self.broker.kv_put(self.bucket, key, self.encode(value), ttl=self._ttl(ttl))

    async def create(self, key: str, value: M, *, ttl: float | None = None) -> int:
        """Write ``value`` only if the key has no live value; returns the new revision.

        Raises:
            KeyExists: the key has a live value.
        """
        validate_key(key)
        await self.ensure()
        return await self.broker.kv_create(self.bucket, key, self.encode(value), ttl=self._ttl(ttl))

    async def delete(
        self, key: str, *, revision: int | None = None, fence: Fence | None = None
    ) -> None:
        """Delete the key (watchers see a `Deleted`).

        Args:
            revision: Delete only if this is still the key's revision (raises `WrongRevision`).
            fence: Delete only on behalf of this lease (raises `FencedOut`).
        """
        validate_key(key)
        await self.ensure()
        if fence is None:
            await self.broker.kv_delete(self.bucket, key, revision=revision)
            return
        async with serialised(self.broker, self.bucket, key):
            await self._retrying(key, lambda: self._fenced_delete(key, revision, fence))

    async def _fenced_delete(self, key: str, revision: int | None, fence: Fence) -> int:
        entry = await self._fenced_read(key, fence)
        if entry is None:
            return 0
        if revision is not None and entry.revision != revision:
            raise WrongRevision(
                f"bucket {self.bucket!r} key {key!r}: revision {revision} is not the latest"
                f" ({entry.revision})"
            )
        await self.broker.kv_delete(self.bucket, key, revision=entry.revision)
        return 0

    async def purge(self, key: str) -> None:
        """Remove the key and its history."""
        validate_key(key)
        await self.ensure()
        await self.broker.kv_purge(self.bucket, key)

    async def update(
        self,
        key: str,
        fn: Callable[[M], M | Awaitable[M]],
        *,
        default: M = _MISSING,
        ttl: float | Callable[[M], float] | None = None,
        fence: Fence | None = None,
    ) -> int:
        """Read-modify-write: store ``fn(current value)``; returns the new revision.

        The write is a compare-and-set on the revision read. When another writer got there
        first, the update waits a little (random, growing, capped) and runs again from the
        read, so ``fn`` may be called several times: it must not mutate its argument, and
        should have no side effects. An exception from ``fn`` aborts the update (nothing is
        written). Updates of the same key from this process run one at a time.

        Args:
            fn: The new value from the current one; may be async.
            default: The value ``fn`` gets when the key is absent (the write then creates it);
                without it, an absent key raises `NotFound`.
            ttl: Seconds the new revision lives (default: the store's ``ttl``), or a function
                of the new value giving them.
            fence: Write only on behalf of this lease: refused with `FencedOut` if the lease is
                gone or a holder of a newer lease wrote the key.

        Raises:
            NotFound: the key is absent and there is no ``default``.
            WrongRevision: still conflicting after ``max_attempts`` tries.
            FencedOut: see ``fence``.

        Cancellation leaves the key as it was or with the new value, never anything else.
        """
        validate_key(key)
        await self.ensure()
        async with serialised(self.broker, self.bucket, key):
            return await self._retrying(
                key, lambda: self._update_once(key, fn, default, ttl, fence)
            )

    async def _update_once(
        self,
        key: str,
        fn: Callable[[M], M | Awaitable[M]],
        default: M,
        ttl: float | Callable[[M], float] | None,
        fence: Fence | None,
    ) -> int:
        entry = await (self._fenced_read(key, fence) if fence else self.get(key))
        if entry is None and default is _MISSING:
            raise NotFound(
                f"key {key!r} is not in bucket {self.bucket!r} (pass default= to create it)"
            )
        result = fn(entry.value if entry is not None else default)
        new = cast("M", await result if inspect.isawaitable(result) else result)
        data = self.encode(new, fence.token if fence is not None else None)
        seconds = self._ttl(ttl(new) if callable(ttl) else ttl)
        if entry is None:
            return await self.broker.kv_create(self.bucket, key, data, ttl=seconds)
        return await self.broker.kv_update(self.bucket, key, data, entry.revision, ttl=seconds)

    async def _fenced_read(self, key: str, fence: Fence) -> Entry[M] | None:
        entry = await self.get(key)
        if entry is not None and entry.fence is not None and entry.fence > fence.token:
            raise FencedOut(
                f"fenced write to bucket {self.bucket!r} key {key!r} refused: a holder of a newer"
                f" lease (token {entry.fence}) wrote it; this writer's token is {fence.token}"
            )
        await fence.verify()
        return entry

    async def _retrying(self, key: str, attempt: Callable[[], Awaitable[int]]) -> int:
        first, cap = self.backoff
        bound = first
        for tries in range(1, self.max_attempts + 1):
            try:
                return await attempt()
            except (WrongRevision, KeyExists) as exc:
                if tries == self.max_attempts:
                    raise WrongRevision(
                        f"bucket {self.bucket!r} key {key!r}: gave up after {tries} attempts,"
                        f" every one lost a race with another writer ({exc})"
                    ) from exc
            # Full jitter: concurrent losers spread out instead of colliding again.
            await trio.sleep(random.uniform(0, bound))
            bound = min(cap, bound * 2)
        raise AssertionError("unreachable")  # pragma: no cover


class _TypedWatch(Generic[M]):
    """The events of a broker watch, decoded (see `KvStore.watch`)."""

    def __init__(self, store: KvStore[M], events: AsyncIterator[WatchEvent]) -> None:
        self._store = store
        self._events = events

    def __aiter__(self) -> _TypedWatch[M]:
        return self

    async def __anext__(self) -> Entry[M] | Deleted | CaughtUp:
        while True:
            event = await anext(self._events)
            if isinstance(event, CaughtUp):
                return event
            if event.operation is not KvOperation.PUT:
                return Deleted(event.key, event.revision, event.operation, event.created)
            try:
                return self._store.decode(event)
            except ValueError as exc:
                logger.warning("watch of %r skips a value: %s", self._store.bucket, exc)

    async def aclose(self) -> None:
        """For ``contextlib.aclosing``; the watch itself ends with its ``async with``."""
        await trio.lowlevel.checkpoint()
