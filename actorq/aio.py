"""actorq for asyncio: enqueue tasks and await their results from asyncio code.

For FastAPI, Starlette, aiohttp and any other asyncio program that *produces* work for actorq
workers. It runs nats-py on your own event loop (no trio, no thread) and speaks the same wire
format as `actorq.connect`, so workers cannot tell the difference::

    import actorq.aio

    async with actorq.aio.connect(app, "nats://127.0.0.1:4222") as producer:
        handle = await producer.enqueue(add, 1, 2)        # arguments checked before publish
        assert await handle.result(timeout=10) == 3        # actorq.ResultTimeout, TaskFailed
        same = producer.handle(handle.id, add)             # any task, by id

Workers run under trio (`actorq.Worker`, ``actorq run``). Blocking code (Django, Flask,
scripts) has `actorq.sync`.
"""

from __future__ import annotations

from ._aio import PUBLISH_WINDOW as PUBLISH_WINDOW, Producer as Producer, connect as connect
from ._aio_results import TaskHandle as TaskHandle
from ._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
