"""``actorq demo``: actorq's tour in a few seconds, on a NATS of its own.

The README's first command, so it must work on a fresh machine with nothing running: it starts
an embedded nats-server with a temporary store (not the local node: a demo leaves nothing
behind), a worker, and runs a handful of tasks that show what a task queue is for — a success,
a failure that a retry heals, a failure that ends in the dead-letter queue, a result awaited by
id from another client, a batch — and a small DAG with an optional step that fails, printing
what happened and a summary, exit status 0 when every step behaved.

Each step is one function in `SECTIONS` that returns a `Check`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import click
import trio
from rich.console import Console
from rich.markup import escape

from ._app import App
from ._client import Client, connect
from ._context import current_task
from ._embedded import start_server
from ._errors import EmbeddedServerError, TaskFailed
from ._retry import Backoff, RetryPolicy
from ._worker import Worker
from .dag import DAG

app = App("demo")


@app.task(name="demo.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(
    name="demo.charge",
    retry=RetryPolicy(max_attempts=3, backoff=Backoff.constant(0.2)),
)
async def charge(order: str) -> str:
    """Fails on its first attempt, as a flaky remote service does; the retry succeeds."""
    if current_task().attempt < 2:
        raise ConnectionError("the payment service hung up")
    return f"order {order} paid"


@app.task(
    name="demo.resize",
    retry=RetryPolicy(max_attempts=2, backoff=Backoff.constant(0.2)),
)
async def resize(path: str) -> str:
    """Always fails: after its attempts it is dead-lettered."""
    raise FileNotFoundError(f"no such image: {path}")


@app.task(name="demo.report")
async def report(month: str) -> str:
    await trio.sleep(0.2)
    return f"report for {month}: 42 orders"


@app.task(name="demo.square")
async def square(n: int) -> int:
    return n * n


@app.task(name="demo.profile")
async def profile(user: str) -> dict[str, str]:
    return {"user": user, "plan": "pro"}


@app.task(name="demo.recommend", retry=RetryPolicy.never())
async def recommend(user: str) -> list[str]:
    """Fails: an optional step of the DAG, whose dependent gets a default instead."""
    raise TimeoutError(f"no recommendations for {user} in time")


@app.task(name="demo.welcome")
async def welcome(profile: dict[str, str], picks: list[str]) -> str:
    extra = f", picks {', '.join(picks)}" if picks else ""
    return f"welcome {profile['user']} ({profile['plan']}{extra})"


@attrs.frozen
class Check:
    """What one step of the demo showed, and whether it behaved."""

    name: str
    ok: bool
    observed: str = ""
    """What the step saw, shown when it did not behave."""


class _WorkerLog(logging.Handler):
    """Collects the worker's one line per attempt (logger ``actorq.task``) by task id, so a
    step can show the attempts of its task in order, once the last one is logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: dict[str, list[str]] = defaultdict(list)
        self.settled: dict[str, trio.Event] = defaultdict(trio.Event)

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = vars(record)
        task_id, status = fields.get("task_id"), fields.get("status")
        if not task_id or not status:
            return
        message = record.getMessage()
        self.lines[task_id].append(message.replace(f"task {fields.get('task')} {task_id} ", ""))
        if status != "retried":
            self.settled[task_id].set()


@attrs.frozen
class Demo:
    """What a step needs: the console, the NATS URL, a connected client, the worker's log."""

    console: Console
    url: str
    client: Client
    log: _WorkerLog

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")

    async def show_attempts(self, task_id: str) -> None:
        """Print the worker's lines about a task, once its outcome is logged."""
        with trio.move_on_after(5):
            await self.log.settled[task_id].wait()
        for line in self.log.lines.pop(task_id, []):
            self.console.print(f"   [dim]│ worker: {escape(line)}[/]")


Section = Callable[[Demo], Awaitable[Check]]


async def succeed(demo: Demo) -> Check:
    demo.console.print("\n[bold]1. A task that succeeds[/]")
    handle = await demo.client.enqueue(add, 2, 3)
    record = await handle.outcome(timeout=10)
    value = await handle.result()
    await demo.show_attempts(handle.id)
    demo.say(f"add(2, 3) = [green]{value}[/] after {record.attempts} attempt")
    ok = value == 5 and record.attempts == 1
    return Check("success", ok, f"value {value!r} after {record.attempts} attempt(s)")


async def retry(demo: Demo) -> Check:
    demo.console.print("\n[bold]2. A task that fails once and is retried[/]")
    handle = await demo.client.enqueue(charge, "A-1001")
    record = await handle.outcome(timeout=10)
    value = await handle.result()
    await demo.show_attempts(handle.id)
    demo.say(f"charge('A-1001') = [green]{value!r}[/] after {record.attempts} attempts")
    ok = record.attempts == 2 and value == "order A-1001 paid"
    return Check("retry", ok, f"value {value!r} after {record.attempts} attempt(s)")


async def dead_letter(demo: Demo) -> Check:
    demo.console.print("\n[bold]3. A task that keeps failing goes to the dead-letter queue[/]")
    handle = await demo.client.enqueue(resize, "cat.png")
    try:
        await handle.result(timeout=10)
    except TaskFailed as failure:
        await demo.show_attempts(handle.id)
        demo.say(f"[red]TaskFailed[/] after {failure.attempts} attempts: {escape(failure.message)}")
    else:
        return Check("dead letter", False, "the task succeeded")
    letters = await demo.client.dlq.list()
    for letter in letters:
        demo.say(
            f"dead letter #{letter.seq}: {letter.task}, {letter.attempts} attempts, "
            f"{escape(letter.error.message)}"
        )
    demo.say("[dim]inspect or requeue it with `actorq dlq list|show|requeue`[/]")
    seen = [(letter.task, letter.task_id) for letter in letters]
    ok = seen == [("demo.resize", handle.id)]
    return Check("dead letter", ok, f"dead letters {seen}, task {handle.id}")


async def await_by_id(demo: Demo) -> Check:
    demo.console.print("\n[bold]4. A result awaited by id from another client[/]")
    handle = await demo.client.enqueue(report, "2026-01")
    demo.say(f"enqueued report('2026-01') as task {handle.id}")
    # A second connection stands for another process that knows nothing but the id.
    async with connect(app, demo.url) as other:
        value = await other.handle(handle.id, report).result(timeout=10)
    await demo.show_attempts(handle.id)
    demo.say(f"another client awaited it by id: [green]{value!r}[/]")
    return Check("await by id", value == "report for 2026-01: 42 orders", f"value {value!r}")


async def batch(demo: Demo) -> Check:
    demo.console.print("\n[bold]5. A batch: 200 tasks with one enqueue_many[/]")
    started = time.perf_counter()
    handles = await demo.client.enqueue_many(square.bind(n) for n in range(200))
    values = [await handle.result(timeout=10) for handle in handles]
    elapsed = time.perf_counter() - started
    demo.say(f"200 results in {elapsed:.2f}s; sum of squares 0..199 = [green]{sum(values)}[/]")
    ok = sum(values) == sum(n * n for n in range(200))
    return Check("batch", ok, f"sum {sum(values)}")


async def workflow(demo: Demo) -> Check:
    demo.console.print("\n[bold]6. A DAG: two steps feed a third; the optional one fails[/]")
    dag = DAG()
    user = dag.step(profile, "ada")
    picks = dag.step(recommend.options(optional=True), "ada")
    final = dag.step(welcome.options(step_id="welcome"), user, picks.or_default([]))
    run = await demo.client.submit(dag)
    value = await run.result(final, timeout=10)
    status = await run.wait(timeout=10)
    for step in (await run.steps()).values():
        error = f": {escape(step.error.message)}" if step.error else ""
        demo.say(f"step {step.id}: {step.status}{error}")
    demo.say(f"run {run.id} {status}: [green]{value!r}[/]")
    demo.say("[dim]inspect it with `actorq dag show RUN`[/]")
    ok = status == "done" and value == "welcome ada (pro)"
    return Check("DAG", ok, f"run {status}, value {value!r}")


SECTIONS: list[Section] = [succeed, retry, dead_letter, await_by_id, batch, workflow]


async def run_demo(console: Console) -> int:
    console.print("[bold]actorq demo[/]: a task queue on an embedded NATS, in a few seconds")
    checks: list[Check] = []
    task_log = logging.getLogger("actorq.task")
    handler = _WorkerLog()
    previous_level = task_log.level
    task_log.addHandler(handler)
    task_log.setLevel(logging.INFO)
    try:
        async with start_server() as server:
            console.print(
                f"\n[green]✓[/] NATS    embedded nats-server at {server.url} (temporary store)"
            )
            async with connect(app, server.url) as client, trio.open_nursery() as nursery:
                worker = Worker(client, concurrency=4, ack_wait=5.0, shutdown_grace=5.0)
                await nursery.start(worker.run)
                console.print(f"[green]✓[/] worker  {worker.concurrency} slots on queue 'default'")
                demo = Demo(console, server.url, client, handler)
                for section in SECTIONS:
                    checks.append(await section(demo))
                nursery.cancel_scope.cancel()
    finally:
        task_log.removeHandler(handler)
        task_log.setLevel(previous_level)
    console.print()
    summary = "  ".join(
        f"[green]✓ {check.name}[/]" if check.ok else f"[red]✗ {check.name}[/]" for check in checks
    )
    console.print(f"[bold]Summary[/]  {summary}")
    if not all(check.ok for check in checks):
        console.print("[red]Some steps did not behave as expected:[/]")
        for check in checks:
            if not check.ok:
                console.print(f"  {check.name}: {escape(check.observed)}")
        return 1
    console.print(
        "All steps behaved; the demo's NATS is stopped and its store removed.\n"
        "Next: run a worker with `actorq run examples.quickstart:app` "
        "(see docs/cli.md)."
    )
    return 0


@click.command("demo", short_help="A tour in a few seconds, on a NATS of its own.")
def demo() -> None:
    """Run a tour: an embedded NATS, a worker, tasks that succeed, retry and fail.

    Leaves nothing behind; exit status 0 when every step behaved.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        status = trio.run(run_demo, console)
    except EmbeddedServerError as error:
        raise click.ClickException(str(error)) from None
    raise SystemExit(status)
