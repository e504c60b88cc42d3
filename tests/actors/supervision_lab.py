"""A lab for supervision stories: probe actors that record their life in one shared log.

A probe is a small actor with a mailbox. It logs ``start``, then obeys its messages (crash,
return, answer), and on a graceful stop request logs ``draining``, takes ``drain`` seconds to
finish (``None``: ignores the request) and logs ``stopped``; if it is cancelled instead it logs
``cancelled``. Tests drive probes through their supervisor and assert on the log, with the
virtual time of each entry where timing is the behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs
import trio
import trio.testing

from actorq.actors import (
    ActorRef,
    ChildSpec,
    Reply,
    Restart,
    Shutdown,
    current_stop_signal,
    open_mailbox,
)

if TYPE_CHECKING:
    from collections.abc import Callable


class Crash(Exception):
    """The error probes crash with."""


@attrs.frozen
class Boom:
    error: Exception


@attrs.frozen
class Return:
    pass


@attrs.frozen
class WhoAreYou:
    reply: Reply[str]


ProbeMessage = Boom | Return | WhoAreYou


class Supervised(Protocol):
    """What the lab needs of a supervisor (both kinds qualify)."""

    async def wait_child_running(self, id: str) -> object: ...


@attrs.define(eq=False)
class Probe:
    id: str
    lab: Lab
    drain: float | None = 0.0
    fail_start: Callable[[], Exception | None] | None = None

    async def run(self, *, task_status: trio.TaskStatus[ActorRef[ProbeMessage]]) -> None:
        stop = current_stop_signal()
        self.lab.record("start", self.id)
        try:
            async with open_mailbox[ProbeMessage](8, name=self.id) as (ref, inbox):
                failure = self.fail_start() if self.fail_start is not None else None
                if failure is not None:
                    raise failure
                task_status.started(ref)
                with stop.move_on():
                    async for message in inbox:
                        if isinstance(message, Boom):
                            self.lab.record("crash", self.id)
                            raise message.error
                        if isinstance(message, Return):
                            self.lab.record("return", self.id)
                            return
                        message.reply.send(self.id)
                self.lab.record("draining", self.id)
                if self.drain is None:
                    await trio.sleep_forever()
                await trio.sleep(self.drain)
                self.lab.record("stopped", self.id)
        except trio.Cancelled:
            self.lab.record("cancelled", self.id)
            raise


@attrs.define(eq=False)
class Lab:
    timeline: list[tuple[float, str, str]] = attrs.field(factory=list)

    def record(self, event: str, id: str) -> None:
        self.timeline.append((trio.current_time(), event, id))

    @property
    def log(self) -> list[tuple[str, str]]:
        return [(event, id) for _, event, id in self.timeline]

    def events(self, event: str) -> list[str]:
        """Ids that logged ``event``, in order."""
        return [id for _, e, id in self.timeline if e == event]

    def at(self, event: str, id: str) -> float:
        """When ``id`` last logged ``event``."""
        return [t for t, e, i in self.timeline if e == event and i == id][-1]

    def clear(self) -> None:
        self.timeline.clear()

    def spec(
        self,
        id: str,
        *,
        drain: float | None = 0.0,
        fail_start: Callable[[], Exception | None] | None = None,
        restart: Restart = Restart.PERMANENT,
        shutdown: Shutdown | None = None,
    ) -> ChildSpec:
        probe = Probe(id, self, drain, fail_start)
        return ChildSpec(id, probe.run, restart=restart, shutdown=shutdown or Shutdown.after(5))

    async def ref(self, sup: Supervised, id: str) -> ActorRef[ProbeMessage]:
        ref = await sup.wait_child_running(id)
        assert isinstance(ref, ActorRef)
        return ref

    async def crash(self, sup: Supervised, id: str, error: Exception | None = None) -> None:
        """Make the running child ``id`` raise, and let the supervisor react."""
        await (await self.ref(sup, id)).send(Boom(error or Crash(id)))
        await trio.testing.wait_all_tasks_blocked()

    async def finish(self, sup: Supervised, id: str) -> None:
        """Make the running child ``id`` return normally, and let the supervisor react."""
        await (await self.ref(sup, id)).send(Return())
        await trio.testing.wait_all_tasks_blocked()
