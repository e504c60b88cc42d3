"""Permanent, transient and temporary children; and cancellation is never a crash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actorq.actors import (
    ChildSpec,
    ChildState,
    Restart,
    Shutdown,
    Supervisor,
    SupervisorGaveUp,
    SupervisorPolicy,
)

if TYPE_CHECKING:
    from supervision_lab import Lab


async def test_a_permanent_child_is_restarted_after_a_crash_and_after_returning(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sup = Supervisor("app", [lab.spec("p", restart=Restart.PERMANENT)])
    await nursery.start(sup.run)

    await lab.crash(sup, "p")
    await lab.finish(sup, "p")

    assert lab.log == [
        ("start", "p"),
        ("crash", "p"),
        ("start", "p"),
        ("return", "p"),
        ("start", "p"),
    ]
    assert sup.which_children()[0].restarts == 2


async def test_a_transient_child_is_restarted_only_after_a_crash(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sup = Supervisor("app", [lab.spec("t", restart=Restart.TRANSIENT), lab.spec("other")])
    await nursery.start(sup.run)

    await lab.crash(sup, "t")
    await lab.finish(sup, "t")

    assert lab.events("start") == ["t", "other", "t"]
    t = sup.which_children()[0]
    assert (t.state, t.restarts, t.value) == (ChildState.STOPPED, 1, None)


async def test_a_temporary_child_is_never_restarted_and_is_forgotten(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sup = Supervisor(
        "app",
        [
            lab.spec("crashes", restart=Restart.TEMPORARY),
            lab.spec("returns", restart=Restart.TEMPORARY),
            lab.spec("stays"),
        ],
    )
    await nursery.start(sup.run)

    await lab.crash(sup, "crashes")
    await lab.finish(sup, "returns")

    assert lab.events("start") == ["crashes", "returns", "stays"]
    assert [c.id for c in sup.which_children()] == ["stays"]
    assert sup.statistics().total_restarts == 0


async def test_a_child_cancelled_by_its_supervisor_is_not_restarted(
    nursery: trio.Nursery, lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor("app", [lab.spec("stubborn", drain=None, shutdown=Shutdown.after(2))])
    await nursery.start(sup.run)

    await sup.terminate_child("stubborn")

    assert lab.timeline == [
        (0, "start", "stubborn"),
        (0, "draining", "stubborn"),
        (2, "cancelled", "stubborn"),
    ]
    stats = sup.statistics()
    assert stats.children[0].state is ChildState.STOPPED
    assert (stats.total_restarts, stats.restarts_in_period) == (0, 0)


async def test_cancelling_the_tree_restarts_nothing(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    async def idler(*, task_status: trio.TaskStatus[None]) -> None:
        # Cancelled by its supervisor in the middle of its work: a stop, not a crash.
        task_status.started()
        await trio.sleep_forever()

    sup = Supervisor(
        "app",
        [
            lab.spec("a", drain=None, shutdown=Shutdown.after(1)),
            ChildSpec("b", idler, shutdown=Shutdown.brutal()),
        ],
    )
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert lab.timeline == [(0, "start", "a"), (5, "draining", "a"), (6, "cancelled", "a")]
    assert sup.statistics().total_restarts == 0
    assert trio.current_time() == 6


async def test_an_exception_group_from_the_childs_own_nursery_is_a_crash(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    async def team(*, task_status: trio.TaskStatus[None]) -> None:
        lab.record("start", "team")

        async def helper() -> None:
            await trio.sleep(1)
            raise ValueError("helper failed")

        async with trio.open_nursery() as helpers:
            helpers.start_soon(helper)
            task_status.started()

    sup = Supervisor("app", [ChildSpec("team", team)], policy=SupervisorPolicy(intensity=1))
    with pytest.RaisesGroup(SupervisorGaveUp) as group:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    # Crashed at t=1 (restarted) and at t=2 (one restart too many).
    assert lab.timeline == [(0, "start", "team"), (1, "start", "team")]
    assert trio.current_time() == 2
    cause = group.value.exceptions[0].__cause__
    assert isinstance(cause, ExceptionGroup)
    assert pytest.RaisesGroup(ValueError).matches(cause)
