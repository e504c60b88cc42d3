"""Starting a supervisor: in order, synchronously, and all-or-nothing."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from supervision_lab import Crash, Lab, WhoAreYou

from actorq.actors import ActorRef, ChildState, Supervisor


async def test_children_start_in_order_and_start_returns_when_all_are_ready(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sup = Supervisor("app", [lab.spec("a"), lab.spec("b"), lab.spec("c")])
    started = await nursery.start(sup.run)

    assert started is sup
    assert lab.log == [("start", "a"), ("start", "b"), ("start", "c")]
    children = sup.which_children()
    assert [(c.id, c.state) for c in children] == [
        ("a", ChildState.RUNNING),
        ("b", ChildState.RUNNING),
        ("c", ChildState.RUNNING),
    ]
    # What a child passes to started() is how the others reach it.
    b = children[1].value
    assert isinstance(b, ActorRef)
    assert await b.ask(WhoAreYou) == "b"


async def test_a_child_failing_before_started_fails_the_supervisor_start(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app",
        [
            lab.spec("a", drain=1),
            lab.spec("b", drain=1),
            lab.spec("c", fail_start=lambda: Crash("no database")),
            lab.spec("d"),
        ],
    )
    async with trio.open_nursery() as nursery:
        with pytest.raises(Crash, match="no database") as failure:
            await nursery.start(sup.run)

    # The children already started were stopped gracefully, in reverse order; d never started.
    assert lab.log == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("draining", "b"),
        ("stopped", "b"),
        ("draining", "a"),
        ("stopped", "a"),
    ]
    assert trio.current_time() == 2
    assert "while starting child 'c' of supervisor 'app'" in failure.value.__notes__
    assert all(c.state is ChildState.STOPPED for c in sup.which_children())


async def test_a_child_returning_before_started_is_a_failed_start(lab: Lab) -> None:
    async def gives_up_early(*, task_status: trio.TaskStatus[None]) -> None:
        return

    from actorq.actors import ChildSpec

    sup = Supervisor("app", [lab.spec("a"), ChildSpec("early", gives_up_early)])
    async with trio.open_nursery() as nursery:
        with pytest.raises(RuntimeError, match="without calling task_status.started"):
            await nursery.start(sup.run)
    assert lab.log == [("start", "a"), ("draining", "a"), ("stopped", "a")]


async def test_cancelling_the_start_stops_what_had_started(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_ready(*, task_status: trio.TaskStatus[None]) -> None:
        lab.record("start", "slow")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            lab.record("cancelled", "slow")
            raise

    from actorq.actors import ChildSpec

    sup = Supervisor("app", [lab.spec("a", drain=1), ChildSpec("slow", never_ready)])
    async with trio.open_nursery() as nursery:
        with trio.move_on_after(3):
            await nursery.start(sup.run)

    assert lab.timeline == [
        (0, "start", "a"),
        (0, "start", "slow"),
        (3, "cancelled", "slow"),
        (3, "draining", "a"),
        (4, "stopped", "a"),
    ]
    assert not sup.statistics().running


async def test_duplicate_child_ids_are_refused(lab: Lab) -> None:
    with pytest.raises(ValueError, match=r"duplicate child ids \['a'\]"):
        Supervisor("app", [lab.spec("a"), lab.spec("a")])


async def test_a_supervisor_runs_once_at_a_time(nursery: trio.Nursery, lab: Lab) -> None:
    sup = Supervisor("app", [lab.spec("a")])
    await nursery.start(sup.run)
    with pytest.raises(RuntimeError, match="already running"):
        await nursery.start(sup.run)
