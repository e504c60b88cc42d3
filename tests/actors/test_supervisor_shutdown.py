"""Shutdown: reverse order, grace periods, brutal kills, and draining on cancellation."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from supervision_lab import Crash, Lab

from actorq.actors import (
    ActorGone,
    ChildSpec,
    ChildState,
    Shutdown,
    StopSignal,
    Supervisor,
    current_stop_signal,
)


async def test_cancelling_the_nursery_drains_the_tree_in_reverse_order(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app", [lab.spec("a", drain=1), lab.spec("b", drain=1), lab.spec("c", drain=1)]
    )
    with trio.move_on_after(10) as outer:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    # The cancellation at t=10 becomes a graceful stop of each child in turn (shielded from
    # it), and then proceeds: the nursery is left at t=13.
    assert outer.cancelled_caught
    assert lab.timeline[3:] == [
        (10, "draining", "c"),
        (11, "stopped", "c"),
        (11, "draining", "b"),
        (12, "stopped", "b"),
        (12, "draining", "a"),
        (13, "stopped", "a"),
    ]
    assert trio.current_time() == 13
    assert all(c.state is ChildState.STOPPED for c in sup.which_children())


async def test_a_child_ignoring_the_stop_request_is_cancelled_when_its_grace_runs_out(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app",
        [
            lab.spec("polite", drain=2),
            lab.spec("deaf", drain=None, shutdown=Shutdown.after(5)),
        ],
    )
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert lab.timeline[2:] == [
        (1, "draining", "deaf"),
        (6, "cancelled", "deaf"),
        (6, "draining", "polite"),
        (8, "stopped", "polite"),
    ]


async def test_a_brutal_shutdown_cancels_at_once(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor("app", [lab.spec("a", drain=1), lab.spec("b", shutdown=Shutdown.brutal())])
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert lab.timeline[2:] == [(1, "cancelled", "b"), (1, "draining", "a"), (2, "stopped", "a")]


async def test_a_child_sees_its_stop_request_and_deadline(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, float, float]] = []

    async def watcher(*, task_status: trio.TaskStatus[StopSignal]) -> None:
        stop = current_stop_signal()
        assert not stop.is_set()
        assert stop.deadline == math.inf
        task_status.started(stop)
        await stop.wait()
        seen.append((trio.current_time(), stop.deadline, trio.current_effective_deadline()))

    sup = Supervisor("app", [ChildSpec("w", watcher, shutdown=Shutdown.after(4))])
    with trio.move_on_after(3):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert seen == [(3, 7, 7)]


async def test_a_nested_supervisor_drains_its_children_before_its_older_siblings(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    inner = Supervisor("inner", [lab.spec("x", drain=1), lab.spec("y", drain=1)])
    outer = Supervisor(
        "outer",
        [lab.spec("a", drain=1), ChildSpec("inner", inner.run, shutdown=Shutdown.infinity())],
    )
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(outer.run)

    assert lab.timeline == [
        (0, "start", "a"),
        (0, "start", "x"),
        (0, "start", "y"),
        (5, "draining", "y"),
        (6, "stopped", "y"),
        (6, "draining", "x"),
        (7, "stopped", "x"),
        (7, "draining", "a"),
        (8, "stopped", "a"),
    ]


async def test_a_nested_supervisor_out_of_grace_cancels_its_children_at_once(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    # The inner supervisor gets 2 s from its parent; its child would get 10 s from it. When
    # the parent's grace runs out the inner supervisor is cancelled, and it cancels what is
    # left instead of starting a second graceful round.
    inner = Supervisor("inner", [lab.spec("slow", drain=None, shutdown=Shutdown.after(10))])
    outer = Supervisor("outer", [ChildSpec("inner", inner.run, shutdown=Shutdown.after(2))])
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(outer.run)

    assert lab.timeline == [(0, "start", "slow"), (1, "draining", "slow"), (3, "cancelled", "slow")]


async def test_a_shutting_down_supervisor_restarts_nothing(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    async def crashes_when_asked_to_stop(*, task_status: trio.TaskStatus[None]) -> None:
        lab.record("start", "grumpy")
        task_status.started()
        await current_stop_signal().wait()
        raise Crash("I was busy")

    sup = Supervisor("app", [lab.spec("a"), ChildSpec("grumpy", crashes_when_asked_to_stop)])
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

    assert lab.events("start") == ["a", "grumpy"]
    assert sup.statistics().total_restarts == 0


async def test_terminate_and_restart_a_child(nursery: trio.Nursery, lab: Lab) -> None:
    sup = Supervisor("app", [lab.spec("a"), lab.spec("b")])
    await nursery.start(sup.run)
    old_b = await lab.ref(sup, "b")

    await sup.terminate_child("b")
    assert [(c.id, c.state) for c in sup.which_children()] == [
        ("a", ChildState.RUNNING),
        ("b", ChildState.STOPPED),
    ]
    new_b = await sup.restart_child("b")
    assert new_b is not old_b
    assert new_b is await sup.wait_child_running("b")
    # restart_child restarts a running child too, and neither call counts as a restart.
    assert await sup.restart_child("b") is not new_b
    assert lab.log == [
        ("start", "a"),
        ("start", "b"),
        ("draining", "b"),
        ("stopped", "b"),
        ("start", "b"),
        ("draining", "b"),
        ("stopped", "b"),
        ("start", "b"),
    ]
    assert sup.statistics().total_restarts == 0
    with pytest.raises(KeyError, match="no child 'zed'"):
        await sup.terminate_child("zed")


async def test_calls_to_a_stopped_supervisor_raise_actor_gone(lab: Lab) -> None:
    sup = Supervisor("app", [lab.spec("a")])
    with pytest.raises(ActorGone, match="'app' is not running"):
        await sup.restart_child("a")
