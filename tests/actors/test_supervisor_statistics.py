"""Supervisor statistics: a frozen picture of the children and the restart window."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from actorq.actors import (
    ChildInfo,
    ChildState,
    Restart,
    Strategy,
    Supervisor,
    SupervisorPolicy,
    SupervisorStatistics,
)

if TYPE_CHECKING:
    from supervision_lab import Lab


async def test_statistics_count_restarts_in_the_sliding_window(
    nursery: trio.Nursery, lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    sup = Supervisor(
        "app",
        [lab.spec("a"), lab.spec("b", restart=Restart.TRANSIENT)],
        policy=SupervisorPolicy(strategy=Strategy.ONE_FOR_ONE, intensity=5, period=10),
    )
    await nursery.start(sup.run)
    a_ref = await lab.ref(sup, "a")

    await lab.crash(sup, "b")
    await trio.sleep(4)
    await lab.crash(sup, "b")
    await lab.finish(sup, "b")

    stats = sup.statistics()
    assert stats == SupervisorStatistics(
        name="app",
        strategy=Strategy.ONE_FOR_ONE,
        intensity=5,
        period=10,
        children=(
            ChildInfo("a", ChildState.RUNNING, Restart.PERMANENT, a_ref, 0),
            ChildInfo("b", ChildState.STOPPED, Restart.TRANSIENT, None, 2),
        ),
        restarts_in_period=2,
        total_restarts=2,
        running=True,
        stopping=False,
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.total_restarts = 0  # type: ignore[misc]

    await trio.sleep(6)  # the first restart (t=0) leaves the window at t=10
    assert sup.statistics().restarts_in_period == 1
    await trio.sleep(4)
    assert sup.statistics().restarts_in_period == 0
