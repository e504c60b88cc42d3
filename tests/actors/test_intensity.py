"""Restart intensity: more than N restarts within T seconds and the supervisor fails upward."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from supervision_lab import Crash, Lab

from actorq.actors import (
    ChildSpec,
    Restart,
    Shutdown,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    SupervisorPolicy,
)


def crashing_every(seconds: float, lab: Lab, id: str = "flaky") -> ChildSpec:
    async def flaky(*, task_status: trio.TaskStatus[None]) -> None:
        lab.record("start", id)
        task_status.started()
        await trio.sleep(seconds)
        raise Crash(f"{id} at t={trio.current_time():g}")

    return ChildSpec(id, flaky)


async def test_too_many_restarts_make_the_supervisor_give_up_at_the_exact_time(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app",
        [lab.spec("before", drain=1), crashing_every(1, lab), lab.spec("after", drain=1)],
        policy=SupervisorPolicy(intensity=3, period=5),
    )
    with pytest.RaisesGroup(
        pytest.RaisesExc(SupervisorGaveUp, match="more than 3 restarts")
    ) as group:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    # Crashes at t=1, 2 and 3 are restarted; the fourth, at t=4, is one too many: the
    # supervisor stops its other children in reverse order (1 s each) and fails upward.
    assert [t for t, event, id in lab.timeline if id == "flaky"] == [0, 1, 2, 3]
    assert lab.timeline[-4:] == [
        (4, "draining", "after"),
        (5, "stopped", "after"),
        (5, "draining", "before"),
        (6, "stopped", "before"),
    ]
    assert trio.current_time() == 6
    gave_up = group.value.exceptions[0]
    assert isinstance(gave_up.__cause__, Crash)
    assert str(gave_up.__cause__) == "flaky at t=4"


async def test_restarts_spread_wider_than_the_period_are_forgiven(
    nursery: trio.Nursery, lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app", [crashing_every(3, lab)], policy=SupervisorPolicy(intensity=1, period=3)
    )
    await nursery.start(sup.run)

    await trio.sleep(30.5)

    stats = sup.statistics()
    assert stats.total_restarts == 10
    assert stats.restarts_in_period == 1
    assert stats.running


async def test_intensity_zero_gives_up_on_the_first_crash(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor("app", [crashing_every(2, lab)], policy=SupervisorPolicy(intensity=0))
    with pytest.RaisesGroup(SupervisorGaveUp):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert trio.current_time() == 2


async def test_failed_restarts_count_against_the_intensity(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    # After its first run the child can never start again: each failed start is one more
    # restart, so the supervisor gives up at once instead of looping.
    runs = iter([None])
    sup = Supervisor(
        "app",
        [lab.spec("fragile", fail_start=lambda: next(runs, Crash("cannot start")))],
        policy=SupervisorPolicy(intensity=2, period=5),
    )
    with pytest.RaisesGroup(SupervisorGaveUp) as group:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await lab.crash(sup, "fragile")
            await trio.sleep_forever()

    assert lab.events("start") == ["fragile"] * 3  # the first run and two failed restarts
    assert str(group.value.exceptions[0].__cause__) == "cannot start"
    assert trio.current_time() == 0


async def test_a_child_supervisor_giving_up_is_a_crash_its_parent_handles(
    nursery: trio.Nursery, lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    inner = Supervisor(
        "inner", [crashing_every(1, lab)], policy=SupervisorPolicy(intensity=1, period=10)
    )
    outer = Supervisor(
        "outer",
        [lab.spec("sibling"), ChildSpec("inner", inner.run, shutdown=Shutdown.infinity())],
        policy=SupervisorPolicy(strategy=Strategy.ONE_FOR_ONE, intensity=5, period=10),
    )
    await nursery.start(outer.run)

    await trio.sleep(2.5)

    # inner: crash at t=1 restarted, crash at t=2 gives up; outer restarts inner at t=2.
    assert [t for t, event, id in lab.timeline if id == "flaky"] == [0, 1, 2]
    stats = outer.statistics()
    assert [(c.id, c.restarts) for c in stats.children] == [("sibling", 0), ("inner", 1)]
    assert stats.children[1].value is inner


async def test_a_transient_child_returning_normally_is_not_a_restart(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sup = Supervisor(
        "app", [lab.spec("t", restart=Restart.TRANSIENT)], policy=SupervisorPolicy(intensity=0)
    )
    await nursery.start(sup.run)
    await lab.finish(sup, "t")
    assert sup.statistics().running
