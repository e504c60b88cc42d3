"""The one-shot reply slot of a request/reply exchange (`ActorRef.ask`).

The asker creates it and waits on it; the actor answers it once, with a value or an exception;
the mailbox gives up on the asker's behalf when the request is dropped or the actor stops.
"""

from __future__ import annotations

from typing import Generic, TypeVar, final

import trio

R = TypeVar("R")


@final
class Reply(Generic[R]):
    """The one-shot reply slot carried by a request sent with `ActorRef.ask`.

    The actor answers exactly once, with `send` or `fail`; the asker's ``ask`` then returns the
    value or raises the exception. Answering after the asker gave up (timeout, cancellation, the
    request was dropped) is harmless: the answer is discarded. Replies are created by ``ask``
    only.
    """

    __slots__ = ("_done", "_error", "_event", "_given_up", "_mailbox", "_value")

    def __init__(self, mailbox: str) -> None:
        self._mailbox = mailbox
        self._event = trio.Event()
        self._done = False
        self._given_up = False
        self._value: R | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the actor has answered."""
        return self._done

    @property
    def abandoned(self) -> bool:
        """Whether the asker stopped waiting; an actor may skip work nobody will read."""
        return self._given_up

    def send(self, value: R) -> None:
        """Answer the request with a value.

        Raises:
            RuntimeError: The request was already answered.
        """
        self._answer(value, None)

    def fail(self, error: BaseException) -> None:
        """Answer the request with an exception, which ``ask`` raises in the asker.

        Raises:
            RuntimeError: The request was already answered.
        """
        self._answer(None, error)

    def _answer(self, value: R | None, error: BaseException | None) -> None:
        if self._done:
            raise RuntimeError("this request was already answered")
        self._done = True
        self._value, self._error = value, error
        self._event.set()

    def _abandon(self, error: BaseException) -> None:
        # The runtime gives up on the asker's behalf; a later answer from the actor is ignored.
        if not self._done and not self._given_up:
            self._given_up = True
            self._error = error
            self._event.set()

    def _unwrap(self) -> R:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "answered" if self._done else "abandoned" if self._given_up else "pending"
        return f"<Reply to mailbox {self._mailbox!r}: {state}>"
