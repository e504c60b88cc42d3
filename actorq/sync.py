"""actorq for blocking code: enqueue tasks and wait for their results without async.

For Django and Flask views, scripts, management commands and thread pools. The producer keeps
an asyncio loop in one background thread and is safe to share between threads; it speaks the
same wire format as `actorq.connect` and `actorq.aio`::

    import actorq.sync

    with actorq.sync.connect(app, "nats://127.0.0.1:4222") as producer:
        handle = producer.enqueue(add, 1, 2)              # arguments checked before publish
        assert handle.result(timeout=10) == 3             # blocks; actorq.ResultTimeout
        same = producer.handle(handle.id, add)            # any task, by id

In a pre-forking web server connect in each worker process, after the fork.
"""

from __future__ import annotations

from ._sync import Producer as Producer, TaskHandle as TaskHandle, connect as connect
from ._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
