"""Your own actors under an actorq supervisor, started from your own nursery.

Three actors, one supervisor:

- ``counter`` keeps a total, answers ``Get`` requests (request/reply with ``ask``), and on a
  graceful stop drains the messages already in its mailbox before it returns;
- ``reporter`` asks the counter for its total every 0.25 s;
- ``flaky`` adds to the counter every 0.1 s and crashes on every third beat; the supervisor
  restarts it.

The strategy is ``rest_for_one``: the later children depend on the counter, so if the counter
had to be restarted they would be restarted after it (and fetch its new reference); a crash of
``flaky``, the last child, restarts only ``flaky``. After about a second the program cancels
its nursery, and the supervisor drains the tree in reverse order: the counter answers what is
still queued before it stops.

Run it: ``python examples/supervised_actors.py``
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable

import attrs
import trio

from actorq.actors import (
    ActorRef,
    ChildSpec,
    Reply,
    Shutdown,
    Strategy,
    Supervisor,
    SupervisorPolicy,
    current_stop_signal,
    open_mailbox,
)

# --- the counter: a mailbox, two kinds of message, a graceful drain ------------------------


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Get:
    reply: Reply[int]


CounterMessage = Add | Get


@attrs.define(eq=False)
class Counter:
    total: int = 0

    async def run(
        self, *, task_status: trio.TaskStatus[ActorRef[CounterMessage]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with open_mailbox[CounterMessage](16, name="counter") as (ref, inbox):
            task_status.started(ref)
            with current_stop_signal().move_on():  # left when the supervisor asks us to stop
                async for message in inbox:
                    self.handle(message)
            # Graceful stop: refuse new messages, finish the ones already queued.
            inbox.seal()
            async for message in inbox:
                self.handle(message)
            print(f"counter: stopped gracefully with total {self.total}")

    def handle(self, message: CounterMessage) -> None:
        if isinstance(message, Add):
            self.total += message.amount
        else:
            message.reply.send(self.total)


# --- a flaky producer that the supervisor keeps alive ---------------------------------------

FindCounter = Callable[[], Awaitable[ActorRef[CounterMessage]]]


class Hiccup(Exception):
    pass


@attrs.define(eq=False)
class Flaky:
    find_counter: FindCounter
    runs: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        counter = await self.find_counter()
        self.runs += 1
        print(f"flaky: started (run {self.runs})")
        task_status.started()
        for _ in range(3):
            await trio.sleep(0.1)
            await counter.send(Add(1))
        print("flaky: crashing on purpose")
        raise Hiccup(f"run {self.runs} hiccuped")


async def reporter(
    find_counter: FindCounter, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    counter = await find_counter()
    task_status.started()
    while True:
        await trio.sleep(0.25)
        total = await counter.ask(Get, timeout=1.0)
        print(f"reporter: the total is {total}")


# --- the application ------------------------------------------------------------------------


def build_supervisor() -> Supervisor:
    async def find_counter() -> ActorRef[CounterMessage]:
        # A restarted child has a new mailbox: always ask the supervisor for the current one.
        ref = await supervisor.wait_child_running("counter")
        assert isinstance(ref, ActorRef)
        return ref

    supervisor = Supervisor(
        "example",
        [
            ChildSpec("counter", Counter().run, shutdown=Shutdown.after(1.0)),
            ChildSpec("reporter", reporter, args=(find_counter,), shutdown=Shutdown.brutal()),
            ChildSpec("flaky", Flaky(find_counter).run, shutdown=Shutdown.brutal()),
        ],
        policy=SupervisorPolicy(strategy=Strategy.REST_FOR_ONE, intensity=5, period=1.0),
    )
    return supervisor


async def main() -> None:
    supervisor = build_supervisor()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        print("main: supervisor started:", [c.id for c in supervisor.which_children()])
        await trio.sleep(1.0)
        children = supervisor.statistics().children
        print("main: after 1 s:", ", ".join(f"{c.id} restarted {c.restarts}x" for c in children))
        nursery.cancel_scope.cancel()  # cancelling the tree drains it, in reverse order
    print("main: done")


class WithoutTracebacks(logging.Formatter):
    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        return ""


if __name__ == "__main__":
    # Crashes and restarts are logged on "actorq.actors"; show them in one line each.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(WithoutTracebacks("log: %(message)s"))
    logging.getLogger("actorq.actors").addHandler(handler)
    trio.run(main)
