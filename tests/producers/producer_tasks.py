"""The app the producer tests enqueue to, and a worker for it in a background thread.

Task names are explicit: the worker thread and the producers share this module, but a
default name would change if the module were imported under another name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

import actorq
from actorq import Dispatch, Middleware

if TYPE_CHECKING:
    from actorq._middleware import DispatchNext


@attrs.frozen
class Point:
    x: int
    y: int


class Stamp(Middleware):
    """Dispatch middleware: every enqueue carries a header the handler can read back."""

    async def dispatch(self, dispatch: Dispatch, call_next: DispatchNext) -> None:
        dispatch.headers["X-Stamp"] = "stamped"
        await call_next(dispatch)


app = actorq.App("producers", middleware=[Stamp()])


@app.task(name="add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="double")
def double(x: int) -> int:
    return 2 * x


@app.task(name="point")
async def point(x: int, y: int) -> Point:
    return Point(x, y)


@app.task(name="sleep")
async def sleep(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


@app.task(
    name="fail", retry=actorq.RetryPolicy(max_attempts=2, backoff=actorq.Backoff.constant(0.01))
)
async def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="stamp")
async def stamp() -> str:
    return actorq.current_task().headers.get("X-Stamp", "")
