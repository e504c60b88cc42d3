"""The dead-letter queue, seen from a client: list, inspect, requeue and purge entries."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs

from . import _codec
from ._errors import NotFound
from ._handle import TaskHandle
from ._wire import H_ATTEMPT, DeadLetter
from .broker import MSG_ID, Message, StoredMessage

if TYPE_CHECKING:
    from ._client import Client


class DeadLetterQueue:
    """A client's view of its app's dead-letter stream (``client.dlq``)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._layout = client.app.layout

    async def list(
        self, *, queue: str | None = None, task: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """The oldest ``limit`` entries, optionally of one queue and/or task."""
        layout = self._layout
        if task is not None:
            subject = layout.dlq_subject(queue or "*", task)
        elif queue is not None:
            subject = layout.dlq_queue_subjects(queue)
        else:
            subject = layout.dlq_subjects
        entries: list[DeadLetter] = []
        seq = 1
        broker = self._client.broker
        while len(entries) < limit:
            stored = await broker.get_next(layout.dlq_stream, seq, subject)
            if stored is None:
                break
            entries.append(self._decode(stored))
            seq = stored.seq + 1
        return entries

    async def get(self, seq: int) -> DeadLetter:
        """One entry by its sequence. Raises `NotFound`."""
        stored = await self._client.broker.get_message(self._layout.dlq_stream, seq)
        if stored is None:
            raise NotFound(f"no dead letter {seq} in app {self._client.app.namespace!r}")
        return self._decode(stored)

    async def requeue(self, seq: int) -> TaskHandle[Any] | None:
        """Publish the entry's task again, with fresh attempts and a new message id, and remove
        the entry. The task keeps its id; its stored failed result is cleared, so the returned
        handle waits for the new outcome (None for a malformed message that had no task id).

        Raises:
            NotFound: no entry with this sequence.
        """
        letter = await self.get(seq)
        broker = self._client.broker
        headers = {k: v for k, v in letter.headers.items() if k not in (H_ATTEMPT, MSG_ID)}
        headers[MSG_ID] = f"requeue:{letter.task_id or uuid.uuid4().hex}:{uuid.uuid4().hex}"
        handle = None
        if letter.task_id:
            await broker.purge_stream(
                self._layout.results_stream, self._layout.result_subject(letter.task_id)
            )
            # Registered before publishing, so even a fast new outcome reaches it.
            handle = self._client._handle(letter.task_id, letter.task, again=True)
        await broker.publish(Message(letter.subject, letter.original_payload(), headers))
        await broker.delete_message(self._layout.dlq_stream, seq)
        return handle

    async def purge(self, *, queue: str | None = None) -> int:
        """Remove every entry (of one queue); returns how many were removed."""
        subject = None if queue is None else self._layout.dlq_queue_subjects(queue)
        return await self._client.broker.purge_stream(self._layout.dlq_stream, subject)

    def _decode(self, stored: StoredMessage) -> DeadLetter:
        letter: DeadLetter = _codec.converter.structure(_codec.loads(stored.data), DeadLetter)
        return attrs.evolve(letter, seq=stored.seq)
