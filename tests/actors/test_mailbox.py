"""Mailboxes: overflow policies, closing, sealing and statistics."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from actorq.actors import ActorGone, MailboxFull, MailboxStatistics, Overflow, open_mailbox


def drain(inbox_receive_nowait: object) -> list[int]:
    received = []
    while True:
        try:
            received.append(inbox_receive_nowait())  # type: ignore[operator]
        except trio.WouldBlock:
            return received


async def test_block_waits_for_room_and_nowait_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mailbox[int](2) as (ref, inbox), trio.open_nursery() as nursery:
        await ref.send(1)
        await ref.send(2)
        with pytest.raises(MailboxFull):
            ref.send_nowait(3)

        delivered = trio.Event()

        async def third() -> None:
            await ref.send(3)
            delivered.set()

        nursery.start_soon(third)
        await trio.testing.wait_all_tasks_blocked()
        assert not delivered.is_set()
        assert ref.statistics().senders_waiting == 1

        assert await inbox.receive() == 1
        await delivered.wait()
        assert drain(inbox.receive_nowait) == [2, 3]
        assert ref.statistics().rejected == 1


async def test_drop_newest_keeps_the_queue_and_discards_the_newcomer() -> None:
    async with open_mailbox[int](2, Overflow.DROP_NEWEST) as (ref, inbox):
        accepted = [await ref.send(n) for n in range(1, 6)]
        assert accepted == [True, True, False, False, False]
        assert drain(inbox.receive_nowait) == [1, 2]
        assert ref.statistics().dropped == 3


async def test_drop_oldest_makes_room_for_the_newcomer() -> None:
    async with open_mailbox[int](2, Overflow.DROP_OLDEST) as (ref, inbox):
        for n in range(1, 6):
            assert await ref.send(n)
        ref.send_nowait(6)
        assert drain(inbox.receive_nowait) == [5, 6]
        stats = ref.statistics()
        assert (stats.sent, stats.dropped, stats.received) == (6, 4, 2)


async def test_reject_raises_mailbox_full() -> None:
    async with open_mailbox[int](1, Overflow.REJECT, name="orders") as (ref, inbox):
        await ref.send(1)
        with pytest.raises(MailboxFull, match="'orders' is full"):
            await ref.send(2)
        assert drain(inbox.receive_nowait) == [1]
        assert ref.statistics().rejected == 1


async def test_a_closed_mailbox_wakes_blocked_senders_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        async with open_mailbox[int](0, name="worker") as (ref, _inbox):
            outcome: list[BaseException] = []

            async def blocked_sender() -> None:
                try:
                    await ref.send(1)
                except ActorGone as exc:
                    outcome.append(exc)

            nursery.start_soon(blocked_sender)
            await trio.testing.wait_all_tasks_blocked()
        # Leaving the mailbox's block is the actor stopping.
        await trio.testing.wait_all_tasks_blocked()
        assert len(outcome) == 1
        with pytest.raises(ActorGone, match="'worker' has stopped"):
            await ref.send(2)
        with pytest.raises(ActorGone):
            ref.send_nowait(3)
        assert ref.statistics().closed


async def test_seal_refuses_new_messages_but_lets_the_actor_drain() -> None:
    async with open_mailbox[int](4) as (ref, inbox):
        for n in (1, 2, 3):
            await ref.send(n)
        inbox.seal()
        with pytest.raises(ActorGone):
            await ref.send(4)
        assert ref.statistics().closed
        assert [n async for n in inbox] == [1, 2, 3]


async def test_statistics_is_a_frozen_snapshot() -> None:
    async with open_mailbox[str](3, Overflow.DROP_NEWEST, name="log") as (ref, inbox):
        for word in ("a", "b", "c", "d"):
            await ref.send(word)
        assert await inbox.receive() == "a"
        stats = inbox.statistics()
        assert stats == MailboxStatistics(
            name="log",
            capacity=3,
            overflow=Overflow.DROP_NEWEST,
            queued=2,
            sent=3,
            received=1,
            dropped=1,
            rejected=0,
            senders_waiting=0,
            receivers_waiting=0,
            closed=False,
        )
        with pytest.raises(AttributeError):
            stats.queued = 0  # type: ignore[misc]


async def test_an_unbounded_mailbox_never_blocks() -> None:
    async with open_mailbox[int](math.inf) as (ref, inbox):
        for n in range(1000):
            ref.send_nowait(n)
        assert inbox.statistics().queued == 1000


@pytest.mark.parametrize(
    ("capacity", "overflow"),
    [(-1, Overflow.BLOCK), (1.5, Overflow.BLOCK), (0, Overflow.DROP_OLDEST)],
)
def test_nonsense_capacities_are_refused(capacity: float, overflow: Overflow) -> None:
    with pytest.raises(ValueError, match="capacity"):
        open_mailbox[int](capacity, overflow)
