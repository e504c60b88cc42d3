"""The stop signal a child reaches with `current_stop_signal()`, and its `move_on` block."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from actorq.actors import (
    ChildSpec,
    Shutdown,
    StopSignal,
    Supervisor,
    SupervisorGaveUp,
    SupervisorPolicy,
    current_stop_signal,
)


async def test_outside_a_supervisor_the_signal_never_fires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = current_stop_signal()
    assert not stop.is_set()
    assert stop.deadline == math.inf
    with trio.move_on_after(100):
        await stop.wait()
    with stop.move_on() as scope:
        await trio.sleep(1)
    assert not scope.cancelled_caught


async def test_move_on_ends_its_block_at_the_stop_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, float]] = []

    async def worker(*, task_status: trio.TaskStatus[StopSignal]) -> None:
        stop = current_stop_signal()
        task_status.started(stop)
        with stop.move_on() as scope:
            await trio.sleep_forever()
        seen.append(("left the block", trio.current_time()))
        assert scope.cancelled_caught
        # Entered after the request, the block is left at once.
        with stop.move_on():
            await trio.sleep_forever()
        seen.append(("left again", trio.current_time()))

    sup = Supervisor("app", [ChildSpec("w", worker, shutdown=Shutdown.after(3))])
    with trio.move_on_after(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert seen == [("left the block", 2), ("left again", 2)]
    assert trio.current_time() == 2


async def test_an_error_inside_move_on_is_not_wrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fails(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        with current_stop_signal().move_on():
            await trio.sleep(1)
            raise KeyError("plain")

    sup = Supervisor("app", [ChildSpec("f", fails)], policy=SupervisorPolicy(intensity=0))
    with pytest.RaisesGroup(SupervisorGaveUp) as group:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert type(group.value.exceptions[0].__cause__) is KeyError
