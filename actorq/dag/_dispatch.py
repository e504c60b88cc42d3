"""Dispatching steps: mark them running (compare-and-set), then enqueue their task messages.

The order matters. The running mark comes first, on the revision the dispatcher read: a pause
(which holds pending steps), a cancel, or another dispatcher that got there first changes that
revision, so the mark fails and nothing is enqueued — a paused or cancelled step never starts.
A dispatcher that dies between the mark and the enqueue leaves a step running with no task
message: the scheduler's phantom check finds it and enqueues it again (see ``_phantom.py``).

A step's task message is an ordinary task message (the step's queue, task subject and option
headers) with ``Actorq-Dag``, ``Actorq-Step`` and ``Actorq-Generation`` headers, a task id
derived from the three, ``Actorq-Result: none`` (the outcome goes to the run's state, not to
the results stream) and ``Nats-Msg-Id: <run>:<step>:<generation>``: a duplicate publish of
one dispatch is stored once, and a re-enqueue after recovery (the next generation) is not
swallowed by the dedupe window.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio

from .._names import keyed_task_id
from .._wire import H_DEADLINE, H_ENQUEUED, H_ID, H_RESULT, H_TASK
from ..broker import MSG_ID, Message, PubAck
from ._model import H_DAG, H_GENERATION, H_STEP, StepSpec, StepState, StepStatus
from ._state import gather

if TYPE_CHECKING:
    from .._names import Layout
    from ._state import DagStore

logger = logging.getLogger("actorq.dag")

PUBLISH_RETRIES = 3
PUBLISH_RETRY_DELAY = 0.5


@attrs.frozen
class Dispatch:
    """A step to dispatch: what it runs, the key of its state, that state and the revision it
    was read at (0: not written yet), and its payload."""

    spec: StepSpec
    key: str
    state: StepState
    revision: int
    payload: bytes


@attrs.frozen
class Dispatched:
    """A step marked running (and, when ``seq`` is set, its task message stored)."""

    key: str
    state: StepState
    revision: int
    seq: int | None


def message_id(run_id: str, step_id: str, generation: int) -> str:
    return f"{run_id}:{step_id}:{generation}"


def step_message(
    layout: Layout, run_id: str, step: StepSpec, generation: int, payload: bytes, now: float
) -> Message:
    """The task message of dispatch number ``generation`` of ``step``."""
    msg_id = message_id(run_id, step.id, generation)
    headers = dict(step.headers)
    headers.update(
        {
            H_TASK: step.task,
            H_ID: keyed_task_id(layout.namespace, step.task, msg_id),
            H_ENQUEUED: repr(now),
            H_RESULT: "none",
            H_DAG: run_id,
            H_STEP: step.id,
            H_GENERATION: str(generation),
            MSG_ID: msg_id,
        }
    )
    if step.deadline_after is not None:
        headers[H_DEADLINE] = repr(now + step.deadline_after)
    return Message(layout.task_subject(step.queue, step.task, step.priority), payload, headers)


def running(state: StepState, now: float, *, lost: bool = False) -> StepState:
    """A step's state once dispatched again: running, in its next generation."""
    # Built field by field rather than with attrs.evolve (one per dispatched step).
    return StepState(
        id=state.id,
        status=StepStatus.RUNNING,
        generation=state.generation + 1,
        held=state.held,
        held_at=state.held_at,
        released_before=state.released_before,
        released_after=state.released_after,
        dispatched_at=now,
        finished_at=state.finished_at,
        error=state.error,
        lost=state.lost + (1 if lost else 0),
    )


SLICE = 64
"""Steps marked and enqueued together: a wide fan-out starts running while the rest of it is
still being dispatched."""
SLICES_IN_FLIGHT = 8
"""Slices dispatched at once (their writes share the broker's window of acks)."""


async def dispatch(
    store: DagStore, run_id: str, batch: list[Dispatch], *, now: float, lost: bool = False
) -> list[Dispatched | Exception]:
    """Mark each step of ``batch`` running and enqueue the ones marked; one outcome each (a
    lost race is its `WrongRevision`)."""
    if len(batch) <= SLICE:
        return await _dispatch(store, run_id, batch, now, lost)
    slices = [batch[start : start + SLICE] for start in range(0, len(batch), SLICE)]
    done = await gather(
        [partial(_dispatch, store, run_id, part, now, lost) for part in slices],
        limit=SLICES_IN_FLIGHT,
    )
    outcomes: list[Dispatched | Exception] = []
    for part, result in zip(slices, done, strict=True):
        outcomes += [result] * len(part) if isinstance(result, Exception) else result
    return outcomes


async def _dispatch(
    store: DagStore, run_id: str, batch: list[Dispatch], now: float, lost: bool
) -> list[Dispatched | Exception]:
    marks = [running(item.state, now, lost=lost) for item in batch]
    writes = await store.write_many(
        [(item.key, mark, item.revision) for item, mark in zip(batch, marks, strict=True)]
    )
    outcomes: list[Dispatched | Exception] = []
    messages: list[Message] = []
    for item, mark, write in zip(batch, marks, writes, strict=True):
        if isinstance(write, Exception):
            outcomes.append(write)
            continue
        outcomes.append(Dispatched(item.key, mark, write, None))
        messages.append(
            step_message(store.layout, run_id, item.spec, mark.generation, item.payload, now)
        )
    seqs = await _publish(store, messages)
    published = iter(seqs)
    return [
        attrs.evolve(o, seq=next(published)) if isinstance(o, Dispatched) else o for o in outcomes
    ]


async def _publish(store: DagStore, messages: list[Message]) -> list[int | None]:
    """Publish, retrying refusals a few times (the same message ids: stored once); None for a
    message never stored (the phantom check recovers its step)."""
    seqs: list[int | None] = [None] * len(messages)
    todo = list(range(len(messages)))
    for attempt in range(PUBLISH_RETRIES):
        if not todo:
            break
        if attempt:
            await trio.sleep(PUBLISH_RETRY_DELAY * attempt)
        try:
            acks = await store.broker.publish_many([messages[i] for i in todo])
        except Exception as exc:  # noqa: BLE001 - the connection: retried, then left to recovery
            logger.warning("enqueueing %d DAG step(s) failed: %s", len(todo), exc)
            continue
        failed = []
        for index, ack in zip(todo, acks, strict=True):
            if isinstance(ack, PubAck):
                seqs[index] = ack.seq
            else:
                failed.append(index)
                logger.warning(
                    "enqueueing DAG step %s failed: %s", messages[index].headers[MSG_ID], ack
                )
        todo = failed
    return seqs
