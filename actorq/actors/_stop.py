"""The graceful stop request a supervisor gives each child.

A supervisor stops a child in two steps: it *asks* (the child's `StopSignal` fires), then,
after the child's `Shutdown` grace, it *cancels*. The signal reaches the child through a context
variable that the supervisor sets in the child's task, so every ``run`` can reach its own
signal with `current_stop_signal()` (and so can the tasks it spawns) without any parameter in
its signature, and an actor runs unchanged outside a supervisor, where the signal never fires.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator


@final
class StopSignal:
    """A read-only view of "my supervisor asked me to stop".

    Once it fires it stays fired. Typical use in an actor's ``run``::

        stop = current_stop_signal()
        with stop.move_on():
            async for message in inbox:
                ...              # normal work, left when the stop is requested
        ...                      # drain: finish in-flight work before `stop.deadline`

    A child that ignores the signal is cancelled at `deadline` anyway.
    """

    __slots__ = ("_deadline", "_event", "_scopes")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._deadline = math.inf
        self._scopes: set[trio.CancelScope] = set()

    def is_set(self) -> bool:
        """Whether a graceful stop has been requested."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until a graceful stop is requested (returns at once if it already was)."""
        await self._event.wait()

    @property
    def deadline(self) -> float:
        """The trio time at which the child will be cancelled.

        ``math.inf`` until a stop is requested, and afterwards when the child's shutdown is
        `Shutdown.infinity`. Inside the child, `trio.current_effective_deadline` agrees.
        """
        return self._deadline

    @contextmanager
    def move_on(self) -> Iterator[trio.CancelScope]:
        """A ``with`` block that is left (cancelled) when a graceful stop is requested.

        Like ``trio.move_on_after``, but the trigger is the stop request; the yielded scope's
        ``cancelled_caught`` tells whether that is why the block ended. Unlike
        ``trio_util.move_on_when`` it needs no nursery, so an exception raised inside the block
        comes out as itself, not wrapped in an `ExceptionGroup`.
        """
        with trio.CancelScope() as scope:
            if self.is_set():
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def _request(self, deadline: float) -> None:
        if not self._event.is_set():
            self._deadline = deadline
            self._event.set()
            for scope in self._scopes:
                scope.cancel()
        else:
            self._deadline = min(self._deadline, deadline)

    def __repr__(self) -> str:
        state = f"requested, deadline {self._deadline}" if self.is_set() else "not requested"
        return f"<StopSignal {state}>"


_current: ContextVar[StopSignal] = ContextVar("actorq_stop_signal")


def current_stop_signal() -> StopSignal:
    """The `StopSignal` of the supervised child running in this task.

    Tasks spawned by a child inherit its signal. Outside any supervisor this returns a fresh
    signal that never fires, so actors work the same when started directly with
    ``nursery.start``.
    """
    try:
        return _current.get()
    except LookupError:
        return StopSignal()


def set_stop_signal(signal: StopSignal) -> None:
    """Make ``signal`` the current task's stop signal (the supervisor's child runner calls it)."""
    _current.set(signal)
