"""Delayed tasks and periodic tasks, both fired by the NATS server itself.

``python examples/delayed_and_cron.py`` starts an embedded NATS server and a worker, enqueues
a task for later (``delay=``) and one for a given time (``at=``), and registers a periodic task
(``@every 1s``) and a cron one (every second second): no beat process, however many workers.
It stops after a few ticks and prints what ran when.
"""

from __future__ import annotations

import datetime as dt
import time

import trio

import actorq

app = actorq.App("scheduling")
started = time.monotonic()
ran: list[str] = []
enough = trio.Event()


def log(text: str) -> None:
    line = f"{time.monotonic() - started:5.1f}s  {text}"
    ran.append(line)
    print(line, flush=True)


@app.task(name="reminders.send")
async def send_reminder(user: str) -> str:
    log(f"reminder for {user}")
    return f"reminded {user}"


@app.task(name="stats.heartbeat")
async def heartbeat(source: str) -> None:
    log(f"heartbeat ({source})")
    if sum("heartbeat" in line for line in ran) >= 4:
        enough.set()


app.periodic("@every 1s", heartbeat, "every")
app.periodic("*/2 * * * * *", heartbeat, "cron")  # six fields: the seconds come first


async def main() -> None:
    async with actorq.start_server() as server, actorq.connect(app, server.url) as client:
        async with trio.open_nursery() as nursery:
            await nursery.start(actorq.Worker(client).run)
            for periodic in await client.periodic_schedules():
                log(f"installed {periodic.task} on {periodic.schedule!r}")
            later = await client.enqueue(send_reminder.options(delay=1.5), "ada")
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
            timed = await client.enqueue(send_reminder.options(at=soon), "grace")
            log("enqueued two reminders: in 1.5 s, and at a time 2 s from now")
            print(await later.result(timeout=10), "/", await timed.result(timeout=10))
            with trio.fail_after(10):
                await enough.wait()
            for periodic in await client.periodic_schedules():
                await client.remove_periodic(periodic.id)
            nursery.cancel_scope.cancel()
    assert any("reminder for ada" in line for line in ran)


if __name__ == "__main__":
    trio.run(main)
