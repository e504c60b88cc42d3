"""Leader election on the memory broker, on virtual time: one leader among candidates, a new
one at once after a clean stop and within the TTL after a crash, fencing of a deposed leader,
edge events, and running under a supervisor."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing
import trio_util

from actorq.actors import ChildSpec, Supervisor
from actorq.broker._memory import open_memory_broker
from actorq.kv import FencedOut, LeaderElector

if TYPE_CHECKING:
    import actorq


@attrs.frozen
class State:
    written_by: str


async def run_in(
    elector: LeaderElector,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[LeaderElector] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await elector.run(task_status=task_status)


async def start_candidates(
    client: actorq.Client, nursery: trio.Nursery, n: int = 3, ttl: float = 3
) -> list[tuple[LeaderElector, trio.CancelScope]]:
    started = []
    for index in range(n):
        elector = client.leader("scheduler", ttl=ttl, holder=f"c{index}")
        scope = trio.CancelScope()
        await nursery.start(run_in, elector, scope)
        started.append((elector, scope))
    return started


def leaders(candidates: list[tuple[LeaderElector, trio.CancelScope]]) -> list[str]:
    return [e.role + ":" + str(i) for i, (e, _) in enumerate(candidates) if e.is_leader.value]


def crash(elector: LeaderElector, scope: trio.CancelScope) -> None:
    """Stop a candidate the way a killed process stops: no release, the lease just expires."""

    async def no_release(held: object) -> None:
        return

    elector._release = no_release  # type: ignore[method-assign]
    scope.cancel()


async def test_exactly_one_of_three_candidates_leads_and_keeps_leading(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        candidates = await start_candidates(client, nursery)
        assert leaders(candidates) == ["scheduler:0"]
        first = candidates[0][0]
        assert first.token is not None
        assert first.fence.token == first.token
        await trio.sleep(30)  # ten TTLs: renewals keep it
        assert leaders(candidates) == ["scheduler:0"]
        assert candidates[0][0].token == first.token
        nursery.cancel_scope.cancel()


async def test_a_leader_that_stops_cleanly_is_replaced_at_once(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        candidates = await start_candidates(client, nursery)
        old_token = candidates[0][0].token
        await trio.sleep(5)
        candidates[0][1].cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 5.0
        [now] = leaders(candidates)
        assert now != "scheduler:0"
        new = candidates[int(now.split(":")[1])][0]
        assert new.token is not None
        assert old_token is not None
        assert new.token > old_token
        nursery.cancel_scope.cancel()


async def test_a_crashed_leader_is_replaced_within_its_ttl(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        candidates = await start_candidates(client, nursery, ttl=3)
        await trio.sleep(10.5)  # renewed last at 10.0
        crash(*candidates[0])
        crashed_at = trio.current_time()
        others = [e for e, _ in candidates[1:]]
        with trio.fail_after(3):
            await trio_util.wait_any(*(partial(e.is_leader.wait_value, True) for e in others))
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() - crashed_at <= 3.0
        assert trio.current_time() == 13.0  # the crashed leader's TTL after its last renewal
        assert len(leaders(candidates)) == 1
        nursery.cancel_scope.cancel()


async def test_a_deposed_leaders_fenced_write_is_refused(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    store = client.kv("scheduler_state", State)
    async with trio.open_nursery() as nursery:
        (old, old_scope), (new, _) = await start_candidates(client, nursery, n=2)
        stale_fence = old.fence  # work in flight on behalf of the old leadership
        await store.put("dag-1", State("old"), fence=stale_fence)
        crash(old, old_scope)
        await new.is_leader.wait_value(True)
        await store.put("dag-1", State("new"), fence=new.fence)
        with pytest.raises(FencedOut):
            await store.put("dag-1", State("old again"), fence=stale_fence)
        with pytest.raises(FencedOut, match="not the leader"):
            _ = old.fence
        entry = await store.get("dag-1")
        assert entry is not None
        assert (entry.value, entry.fence) == (State("new"), new.token)
        nursery.cancel_scope.cancel()


async def test_changes_report_every_gain_and_loss(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        candidates = await start_candidates(client, nursery, n=2)
        second = candidates[1][0]
        async with second.changes() as changes:
            candidates[0][1].cancel()  # hand over
            gained = await changes.receive()
            candidates[1][1].cancel()
            lost = await changes.receive()
    assert (gained.leader, gained.reason) == (True, "elected")
    assert (lost.leader, lost.reason) == (False, "stopped")
    assert gained.lease is not None
    assert gained.lease == lost.lease


async def test_a_supervised_elector_stops_on_its_stop_signal_and_hands_over(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    first = client.leader("scheduler", ttl=3)
    second = client.leader("scheduler", ttl=3)
    supervisor = Supervisor("coordination", [ChildSpec("first", first.run)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await nursery.start(second.run)
        assert (first.is_leader.value, second.is_leader.value) == (True, False)
        await trio.sleep(4)
        await supervisor.terminate_child("first")
        await second.is_leader.wait_value(True)
        assert trio.current_time() == 4.0
        assert not first.is_leader.value
        nursery.cancel_scope.cancel()


async def test_a_lost_lease_is_noticed_and_the_role_campaigned_for_again(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    elector = client.leader("scheduler", ttl=3)
    async with trio.open_nursery() as nursery, elector.changes() as changes:
        await nursery.start(elector.run)
        first = elector.token
        assert (await changes.receive()).leader
        await client.broker.kv_delete(client.app.layout.leaders_bucket, "scheduler")
        lost = await changes.receive()
        regained = await changes.receive()
        assert lost.leader is False
        assert "lost" in lost.reason
        assert regained.leader is True
        assert first is not None
        assert elector.token is not None
        assert elector.token > first
        nursery.cancel_scope.cancel()


async def test_an_elector_rides_out_lost_connections(
    client: actorq.Client, memory_url: str, autojump_clock: trio.abc.Clock
) -> None:
    elector = client.leader("scheduler", ttl=3)
    async with (
        open_memory_broker(memory_url.removeprefix("memory://")) as broker,
        trio.open_nursery() as nursery,
        elector.changes() as changes,
    ):
        broker.disconnect()
        await nursery.start(elector.run)  # ready as a follower while the server is away
        assert not elector.is_leader.value
        await trio.sleep(1)
        broker.reconnect()
        gained = await changes.receive()
        assert gained.leader
        gained_at = trio.current_time()
        assert 1.0 <= gained_at < 1.5
        broker.disconnect()  # it cannot renew: it steps down before the lease could expire
        lost = await changes.receive()
        assert not lost.leader
        assert "could not be renewed" in lost.reason
        assert trio.current_time() == pytest.approx(gained_at + 3 - 0.3)
        broker.reconnect()
        again = await changes.receive()
        assert again.leader
        nursery.cancel_scope.cancel()
