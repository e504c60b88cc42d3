"""DynamicSupervisor: children added at run time, restarted one for one, drained together."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from supervision_lab import Crash, Lab, WhoAreYou

from actorq.actors import (
    ActorGone,
    ActorRef,
    ChildState,
    DynamicSupervisor,
    Restart,
    Strategy,
    SupervisorPolicy,
)


async def test_start_child_returns_the_running_child_reference(
    nursery: trio.Nursery, lab: Lab
) -> None:
    slots = DynamicSupervisor("slots")
    await nursery.start(slots.run)
    assert slots.which_children() == ()

    ref = await slots.start_child(lab.spec("slot-1"))

    assert isinstance(ref, ActorRef)
    assert await ref.ask(WhoAreYou) == "slot-1"
    assert [(c.id, c.state) for c in slots.which_children()] == [("slot-1", ChildState.RUNNING)]


async def test_dynamic_children_are_restarted_one_for_one_and_forgotten_when_done(
    nursery: trio.Nursery, lab: Lab
) -> None:
    slots = DynamicSupervisor("slots")
    await nursery.start(slots.run)
    for id in ("p", "q"):
        await slots.start_child(lab.spec(id))
    await slots.start_child(lab.spec("run-1", restart=Restart.TRANSIENT))
    lab.clear()

    await lab.crash(slots, "p")
    await lab.finish(slots, "run-1")

    assert lab.log == [("crash", "p"), ("start", "p"), ("return", "run-1")]
    assert [(c.id, c.restarts) for c in slots.which_children()] == [("p", 1), ("q", 0)]

    await slots.terminate_child("q")
    assert [c.id for c in slots.which_children()] == ["p"]


async def test_a_child_failing_to_start_fails_only_the_call(
    nursery: trio.Nursery, lab: Lab
) -> None:
    slots = DynamicSupervisor("slots", policy=SupervisorPolicy(intensity=0))
    await nursery.start(slots.run)
    await slots.start_child(lab.spec("fine"))

    with pytest.raises(Crash, match="bad config"):
        await slots.start_child(lab.spec("broken", fail_start=lambda: Crash("bad config")))
    with pytest.raises(ValueError, match="already has a child 'fine'"):
        await slots.start_child(lab.spec("fine"))

    stats = slots.statistics()
    assert stats.running
    assert [c.id for c in stats.children] == ["fine"]


async def test_dynamic_children_drain_together(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    slots = DynamicSupervisor("slots")
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(slots.run)
            for n in range(1, 4):
                await slots.start_child(lab.spec(f"slot-{n}", drain=2))
            await trio.sleep_forever()

    # Three children with 2 s of draining each take 2 s in all, not 6.
    assert sorted(lab.timeline[3:]) == [
        (1, "draining", "slot-1"),
        (1, "draining", "slot-2"),
        (1, "draining", "slot-3"),
        (3, "stopped", "slot-1"),
        (3, "stopped", "slot-2"),
        (3, "stopped", "slot-3"),
    ]
    assert trio.current_time() == 3
    with pytest.raises(ActorGone):
        await slots.start_child(lab.spec("late"))


def test_a_dynamic_supervisor_is_one_for_one() -> None:
    with pytest.raises(ValueError, match="one_for_one"):
        DynamicSupervisor("x", policy=SupervisorPolicy(strategy=Strategy.ONE_FOR_ALL))
