"""Phantom-running steps: marked running, but with no task message left to run them.

It happens when a dispatcher dies between marking a step running and enqueueing it, when the
enqueue failed for good, or when someone purged the queue. Nothing would ever finish such a
step, so the scheduler's sweep looks for them.

A step's task message lives in the work-queue tasks stream until it is acked or termed, and a
worker records a step's outcome *before* it acks the message. So a step that is still running
while its message is not in the stream has lost it — unless the message is just moving (a
long retry republishes it as a schedule) or the read was stale. Hence the rule: a running step
whose last sign of life (its dispatch, a noted retry) is older than ``phantom_after`` is
looked up — by the stream sequence its dispatcher kept, else by scanning the messages of its
task's subject and the schedules for its ``Actorq-Dag``/``Actorq-Step`` headers — and it is a
phantom only if it is missing on two sweeps in a row, in the same generation. A phantom is
dispatched again in its next generation (a new message id, so the dedupe window does not
swallow it), or failed with kind ``lost`` once it was lost `MAX_LOST` times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._model import H_DAG, H_STEP, StepInfo, StepStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._state import DagStore

MAX_LOST = 3
"""Re-enqueues of a step whose task message disappeared before it fails with kind ``lost``."""


class PhantomWatch:
    """Remembers, across sweeps, which running steps were found without a message."""

    def __init__(self, store: DagStore, run_id: str, *, after: float, scan_limit: int) -> None:
        self.store = store
        self.run_id = run_id
        self.after = after
        self.scan_limit = scan_limit
        self.seqs: dict[tuple[str, int], int] = {}
        """``(step, generation) -> stream sequence`` of messages this process enqueued."""
        self._suspects: dict[str, int] = {}

    def dispatched(self, step: str, generation: int, seq: int | None) -> None:
        if seq is not None:
            self.seqs[(step, generation)] = seq

    async def phantoms(self, steps: Mapping[str, StepInfo], now: float) -> list[str]:
        """The steps missing their message on this sweep and the one before."""
        found: list[str] = []
        suspects: dict[str, int] = {}
        for step in steps.values():
            if step.status is not StepStatus.RUNNING:
                continue
            alive = max(step.dispatched_at or 0.0, step.retry_at or 0.0)
            if now - alive < self.after or await self.exists(step):
                continue
            if self._suspects.get(step.id) == step.generation:
                found.append(step.id)
            else:
                suspects[step.id] = step.generation
        self._suspects = suspects
        return found

    async def exists(self, step: StepInfo) -> bool:
        """Whether a task message of ``step`` is still in the tasks stream (a schedule too)."""
        broker, layout = self.store.broker, self.store.layout
        stream = layout.tasks_stream
        seq = self.seqs.get((step.id, step.generation))
        if seq is not None and await broker.get_message(stream, seq) is not None:
            return True
        budget = self.scan_limit
        for subject in (
            layout.task_subject(step.queue, step.task, step.priority),
            layout.schedule_subjects,
        ):
            position = 1
            while True:
                if budget <= 0:
                    return True  # too much to look through: assume it is there
                budget -= 1
                stored = await broker.get_next(stream, position, subject)
                if stored is None:
                    break
                if (
                    stored.headers.get(H_DAG) == self.run_id
                    and stored.headers.get(H_STEP) == step.id
                ):
                    return True
                position = stored.seq + 1
        return False
