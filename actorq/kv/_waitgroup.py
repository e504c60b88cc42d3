"""A distributed wait group: add N, mark them done one by one, wait for zero, from any process.

The count is one key of a KV bucket, changed only by compare-and-set (`KvStore.update`), so
concurrent adds and dones from many processes lose nothing, and a change that would make it
negative is refused before anything is written. `wait` watches the key: it first sees the
current count, then every change, so it cannot miss the moment it reaches zero (a wait that
reads first and watches afterwards could).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._names import validate_key
from ..broker import CaughtUp
from ._store import Deleted, Entry, KvStore

if TYPE_CHECKING:
    from ..broker import Broker, KvConfig


@attrs.frozen
class WaitGroupState:
    """The value of a wait group's key."""

    count: int


class WaitGroup:
    """A counter of outstanding work that any process can wait on to reach zero.

    Get one with ``client.wait_group(name)``. A wait group nobody added to has a count of 0.

    Args:
        broker: The broker the bucket lives on.
        bucket: The bucket of wait groups.
        name: The group's name (a key).
        config: The bucket's config, ensured on first use.
    """

    def __init__(
        self, broker: Broker, bucket: str, name: str, *, config: KvConfig | None = None
    ) -> None:
        self.name = validate_key(name, "wait group name")
        self._store = KvStore(broker, bucket, WaitGroupState, config=config)

    def __repr__(self) -> str:
        return f"<WaitGroup {self.name!r}>"

    async def add(self, n: int = 1) -> int:
        """Add ``n`` (negative to take away) and return the new count.

        Raises:
            ValueError: the count would become negative (nothing is changed).
        """
        if not isinstance(n, int):
            raise TypeError(f"wait group {self.name!r}: add() takes an int, got {n!r}")
        new_count = 0

        def change(state: WaitGroupState) -> WaitGroupState:
            nonlocal new_count
            new_count = state.count + n
            if new_count < 0:
                raise ValueError(
                    f"wait group {self.name!r}: adding {n} to {state.count} would make the count"
                    " negative (more done() than add())"
                )
            return WaitGroupState(new_count)

        if n == 0:
            return await self.count()
        await self._store.update(self.name, change, default=WaitGroupState(0))
        return new_count

    async def done(self) -> int:
        """Mark one unit done (``add(-1)``); returns the new count.

        Raises:
            ValueError: the count is already 0.
        """
        return await self.add(-1)

    async def count(self) -> int:
        """The current count (0 for a group nobody added to, or one that was closed)."""
        entry = await self._store.get(self.name)
        return entry.value.count if entry is not None else 0

    async def wait(self) -> None:
        """Return once the count is 0 (at once if it is 0 now).

        Cancellation simply ends the wait. Use ``trio.fail_after`` for a time limit.
        """
        async with self._store.watch(self.name) as events:
            current: int | None = None
            async for event in events:
                if isinstance(event, CaughtUp):
                    if not current:
                        return
                elif isinstance(event, Deleted):
                    return
                elif isinstance(event, Entry):
                    current = event.value.count
                    if current == 0:
                        return

    async def close(self) -> None:
        """Remove the group (its count is 0 afterwards; a later `add` starts it again)."""
        await self._store.purge(self.name)
