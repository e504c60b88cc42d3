"""The Outbox: a client's enqueues while NATS is unreachable, and their batched publishing.

Requests wait in the Outbox's bounded mailbox; the actor takes everything queued, publishes it
as one batch (one window of PubAcks) and answers each request with its acks. That is what
happens while NATS is unreachable: the actor waits for the connection, requests pile up in the
mailbox, and its overflow policy (the user's choice) decides what a full buffer does. While
NATS is reachable and nothing waits in the mailbox, an enqueue publishes directly
(`publish_directly`), sparing the hop through the actor. Task ids double as ``Nats-Msg-Id``,
so a batch re-sent after a connection loss cannot be stored twice.
"""

from __future__ import annotations

import logging
from contextlib import aclosing

import attrs
import trio

from .._errors import NotConnected, PublishFailed
from ..broker import Broker, ConnectionState, Message, PubAck
from ._mailbox import ActorRef, Inbox, Overflow, Reply, open_mailbox

logger = logging.getLogger("actorq.outbox")

MAX_BATCH = 4096
"""Most messages published as one batch."""


@attrs.frozen(eq=False)
class Publish:
    """Publish these messages; the reply is one `PubAck` or `PublishFailed` per message."""

    messages: list[Message]
    reply: Reply[list[PubAck | PublishFailed]]


class Outbox:
    """Publishes a client's task messages in batches, and buffers them while disconnected.

    Args:
        broker: Where to publish.
        capacity: Requests that may wait (each ``enqueue`` is one, ``enqueue_many`` one too).
        overflow: What a full buffer does (see `Overflow`).
    """

    def __init__(self, broker: Broker, *, capacity: int, overflow: Overflow) -> None:
        self.broker = broker
        self.capacity = capacity
        self.overflow = overflow
        self._receiving: trio.CancelScope | None = None
        """The scope of a receive in progress (cancelled when the connection drops)."""

    async def run(
        self, *, task_status: trio.TaskStatus[ActorRef[Publish]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        mailbox: open_mailbox[Publish] = open_mailbox(
            self.capacity, overflow=self.overflow, name="outbox"
        )
        async with mailbox as (ref, inbox), trio.open_nursery() as nursery:
            # One long-lived watcher interrupts a receive when the connection drops (rather
            # than a watcher task per request).
            nursery.start_soon(self._interrupt_on_disconnect)
            task_status.started(ref)
            await self._serve(inbox)
            nursery.cancel_scope.cancel()

    async def _interrupt_on_disconnect(self) -> None:
        async with aclosing(self.broker.connection.transitions()) as transitions:
            async for state, _ in transitions:
                if state is not ConnectionState.CONNECTED and self._receiving is not None:
                    self._receiving.cancel()

    async def _serve(self, inbox: Inbox[Publish]) -> None:
        connection = self.broker.connection
        while True:
            # Take nothing out of the mailbox while disconnected: the waiting requests are the
            # buffer, and its overflow policy must see all of them.
            if connection.value is not ConnectionState.CONNECTED:
                await connection.wait_value(ConnectionState.CONNECTED)
            first: Publish | None = None
            self._receiving = scope = trio.CancelScope()
            try:
                with scope:
                    if connection.value is ConnectionState.CONNECTED:  # still, after the wait
                        first = await inbox.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            finally:
                self._receiving = None
            if first is None:
                continue  # the connection dropped: leave the requests in the mailbox
            batch = [first]
            count = len(first.messages)
            while count < MAX_BATCH:
                try:
                    request = inbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(request)
                count += len(request.messages)
            await self._publish(batch)

    async def _publish(self, batch: list[Publish]) -> None:
        live = [request for request in batch if not request.reply.abandoned]
        messages = [message for request in live for message in request.messages]
        if not messages:
            return
        while True:
            if self.broker.connection.value is not ConnectionState.CONNECTED:
                await self.broker.connection.wait_value(ConnectionState.CONNECTED)
            try:
                results = await self._publish_messages(messages)
                break
            except NotConnected:
                logger.warning(
                    "connection lost while publishing %d message(s); will resend", len(messages)
                )
            except Exception as error:
                for request in live:
                    request.reply.fail(error)
                return
        start = 0
        for request in live:
            end = start + len(request.messages)
            request.reply.send(results[start:end])
            start = end

    async def _publish_messages(self, messages: list[Message]) -> list[PubAck | PublishFailed]:
        return await _publish(self.broker, messages)


async def _publish(broker: Broker, messages: list[Message]) -> list[PubAck | PublishFailed]:
    if len(messages) > 1:
        return await broker.publish_many(messages)
    # One message (a lone ``enqueue``): the broker's single publish is its fastest path.
    try:
        return [await broker.publish(messages[0])]
    except NotConnected:
        raise
    except PublishFailed as error:
        return [error]


async def publish_directly(
    broker: Broker, outbox: ActorRef[Publish], messages: list[Message]
) -> list[PubAck | PublishFailed] | None:
    """Publish at once, from the caller's task, while connected and with nothing waiting in
    the Outbox; None when the request must go through the Outbox instead.

    The Outbox is the buffer for when NATS is unreachable; while it is reachable, a hop
    through the actor costs an enqueue two task switches and batches nothing the broker's own
    publish lane and window would not. A connection lost meanwhile also returns None: the
    Outbox then waits for the connection and sends the messages again (their ids dedupe).
    """
    if broker.connection.value is not ConnectionState.CONNECTED or outbox.statistics().queued:
        return None
    try:
        return await _publish(broker, messages)
    except NotConnected:
        return None
