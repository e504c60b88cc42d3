"""Retries and the dead-letter queue: what happens when tasks fail, and how to recover.

Five tasks fail in five ways — a flaky call that succeeds on its third attempt, a handler that
asks for its own retry delay, an error that must never be retried, a timeout, and a poison
task that exhausts its attempts — and the last one is inspected in the dead-letter queue,
fixed, and requeued.

Runs on the in-process memory broker (``memory://``), so no server is needed; the same code
runs on NATS with a ``nats://`` URL. The delays are short so the example takes about a
second; real policies wait longer (see docs/tasks.md)::

    python examples/retries_and_dlq.py
"""

from __future__ import annotations

import logging
import sys

import trio

import actorq
from actorq.testing import running_worker

app = actorq.App("retries")

# Three attempts in all, 0.1 s then 0.2 s apart (exponential, capped at 1 s).
QUICK = actorq.RetryPolicy(
    max_attempts=3,
    backoff=actorq.Backoff.exponential(0.1, cap=1.0),
    non_retryable=(PermissionError,),
)

calls: dict[str, int] = {}
fixed = trio.Event()


def attempt() -> int:
    """Count this attempt of the running task, and say which one it is."""
    task = actorq.current_task()
    calls[task.name] = calls.get(task.name, 0) + 1
    return task.attempt


@app.task(name="retries.flaky", retry=QUICK)
async def flaky_lookup(user: str) -> str:
    """Fails twice (a flaky dependency), then succeeds on the third attempt."""
    if attempt() < 3:
        raise ConnectionError("the user service timed out")
    return f"profile of {user}"


@app.task(name="retries.rate_limited", retry=QUICK)
async def call_partner(order: int) -> str:
    """The partner API said "come back in 0.3 s": the handler sets its own delay."""
    if attempt() == 1:
        raise actorq.Retry(delay=0.3, reason="partner rate limit")
    return f"order {order} sent"


@app.task(name="retries.forbidden", retry=QUICK)
async def delete_account(user: str) -> None:
    """Retrying cannot help: PermissionError is listed in ``non_retryable``."""
    attempt()
    raise PermissionError(f"{user} may not be deleted")


@app.task(name="retries.slow", retry=QUICK, timeout=0.2)
async def slow_report() -> None:
    """Always runs past its 0.2 s timeout: three attempts, each cancelled."""
    attempt()
    await trio.sleep(10)


@app.task(name="retries.poison", retry=QUICK)
async def parse(document: str) -> int:
    """Fails on a bad document until the bug is fixed (``fixed`` is set)."""
    attempt()
    if not fixed.is_set():
        raise ValueError(f"cannot parse {document!r}")
    return len(document)


def show(label: str, text: object) -> None:
    print(f"{label + ':':<14} {text}")


async def main() -> None:
    async with actorq.connect(app, "memory://retries") as client, running_worker(client):
        profile = await client.call(flaky_lookup, "ada")
        show("flaky", f"{profile!r} after {calls['retries.flaky']} attempts")
        sent = await client.call(call_partner, 7)
        show("rate limited", f"{sent!r} after {calls['retries.rate_limited']} attempts")

        for label, task, args in (
            ("forbidden", delete_account, ("bob",)),
            ("slow", slow_report, ()),
            ("poison", parse, ("{oops",)),
        ):
            handle = await client.enqueue(task, *args)
            try:
                await handle.result(timeout=10)
            except actorq.TaskFailed as failure:
                show(label, f"[{failure.kind}] {failure.message} ({failure.attempts} attempts)")

        # What failed for good is in the dead-letter queue, with everything needed to act.
        letters = await client.dlq.list()
        show("dead letters", [f"{letter.task} ({letter.error.kind})" for letter in letters])
        poison = next(letter for letter in letters if letter.task == "retries.poison")
        show("inspect", f"{poison.original_payload()!r}, {poison.attempts} attempts")

        # Fix the cause, then requeue: fresh attempts, the same task id.
        fixed.set()
        handle = await client.dlq.requeue(poison.seq)
        assert handle is not None
        assert handle.id == poison.task_id
        show("requeued", f"parse -> {await handle.result(timeout=10)}")
        show("dead letters", [letter.task for letter in await client.dlq.list()])

    assert calls == {
        "retries.flaky": 3,
        "retries.rate_limited": 2,
        "retries.forbidden": 1,
        "retries.slow": 3,
        "retries.poison": 4,
    }, calls


if __name__ == "__main__":
    # The worker logs every retry and failure on the "actorq.task" logger.
    logging.basicConfig(format="  log: %(message)s", level=logging.WARNING, stream=sys.stdout)
    trio.run(main)
