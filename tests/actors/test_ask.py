"""Request/reply with `ActorRef.ask`: a value, an exception, a timeout, a gone actor."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from actorq.actors import (
    ActorGone,
    ActorRef,
    AskTimeout,
    MailboxFull,
    Overflow,
    Reply,
    open_mailbox,
)


@attrs.frozen
class Divide:
    a: int
    b: int
    reply: Reply[float]


@attrs.frozen
class Ignore:
    reply: Reply[float]


CalculatorMessage = Divide | Ignore


async def calculator(
    *, task_status: trio.TaskStatus[ActorRef[CalculatorMessage]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answers divisions; swallows `Ignore` requests without answering."""
    async with open_mailbox[CalculatorMessage](8, name="calculator") as (ref, inbox):
        task_status.started(ref)
        async for message in inbox:
            if isinstance(message, Divide):
                try:
                    message.reply.send(message.a / message.b)
                except ZeroDivisionError as exc:
                    message.reply.fail(exc)


async def test_ask_returns_the_reply(nursery: trio.Nursery) -> None:
    calc = await nursery.start(calculator)
    assert await calc.ask(lambda reply: Divide(6, 3, reply)) == 2.0


async def test_ask_raises_the_exception_the_actor_replied_with(nursery: trio.Nursery) -> None:
    calc = await nursery.start(calculator)
    with pytest.raises(ZeroDivisionError):
        await calc.ask(lambda reply: Divide(1, 0, reply))
    # The actor is still there.
    assert await calc.ask(lambda reply: Divide(1, 4, reply)) == 0.25


async def test_ask_times_out_at_exactly_its_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    calc = await nursery.start(calculator)
    with pytest.raises(AskTimeout, match="'calculator' within 2.5 s"):
        await calc.ask(Ignore, timeout=2.5)
    assert trio.current_time() == 2.5


async def test_ask_to_a_stopped_actor_raises_actor_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        calc = await nursery.start(calculator)
        nursery.cancel_scope.cancel()
    with pytest.raises(ActorGone):
        await calc.ask(lambda reply: Divide(1, 1, reply))


async def test_an_actor_stopping_with_the_request_unanswered_fails_the_asker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        calc = await nursery.start(calculator)

        async def stop_later() -> None:
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_later)
        with pytest.raises(ActorGone), trio.CancelScope(shield=True):
            await calc.ask(Ignore)
        assert trio.current_time() == 1


async def test_ask_whose_request_is_dropped_fails_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcomes: dict[str, type[BaseException]] = {}

    async with trio.open_nursery() as nursery:
        async with open_mailbox[Ignore](1, Overflow.DROP_OLDEST) as (ref, _inbox):

            async def asker(name: str) -> None:
                try:
                    await ref.ask(Ignore)
                except (MailboxFull, ActorGone) as exc:
                    outcomes[name] = type(exc)

            nursery.start_soon(asker, "first")
            await trio.testing.wait_all_tasks_blocked()
            # The second request pushes the first one out of the full mailbox...
            nursery.start_soon(asker, "second")
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == {"first": MailboxFull}
        # ...and the second fails when the actor stops without answering.
    assert outcomes == {"first": MailboxFull, "second": ActorGone}

    async with open_mailbox[Ignore](0, Overflow.DROP_NEWEST) as (ref, _inbox):
        with pytest.raises(MailboxFull, match="dropped"):
            await ref.ask(Ignore)


async def test_a_reply_is_answered_once(nursery: trio.Nursery) -> None:
    async with open_mailbox[Ignore](1) as (ref, inbox):
        captured: list[Reply[float]] = []

        async def actor() -> None:
            message = await inbox.receive()
            message.reply.send(1.0)
            captured.append(message.reply)

        nursery.start_soon(actor)
        assert await ref.ask(Ignore) == 1.0
        assert captured[0].done
        with pytest.raises(RuntimeError, match="already answered"):
            captured[0].send(2.0)
