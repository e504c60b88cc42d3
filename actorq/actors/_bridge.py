"""The Bridge actor: trio's one door to NATS.

nats-py only runs on asyncio, so the Bridge owns an asyncio loop in one dedicated thread with
the nats-py connection on it (`actorq.actors._bridge_loop`); trio code never touches a nats-py
object. Trio asks for work with `Bridge.call` (run a coroutine function on the loop and wait
for its result) or `Bridge.cast` (run a plain function on the loop, fire and forget); the loop
sends results, deliveries and connection changes back with ``post``.

Both directions cross the thread boundary in batches, because a thread hop costs far more
than the work of one message: trio queues requests in a deque and wakes the loop with one
``call_soon_threadsafe`` per batch; the loop queues callbacks for trio and wakes it with one
``TrioToken.run_sync_soon`` per batch. While one side is busy, the other side's work piles up
and crosses together.

Cancellation crosses too: a trio caller waiting in `call` is parked with
``wait_task_rescheduled``; cancelling it returns at once and cancels the asyncio task running
its request, so a long operation on the loop ends with its caller.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import outcome
import trio
from trio_util import AsyncValue

from .._errors import NotConnected
from ..broker._protocol import ConnectionState
from ._bridge_loop import Call, LoopSide, check_options, redact

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

T = TypeVar("T")

logger = logging.getLogger("actorq.bridge")

_STATES = {
    "connected": ConnectionState.CONNECTED,
    "reconnecting": ConnectionState.RECONNECTING,
    "closed": ConnectionState.CLOSED,
}

_JOIN_TIMEOUT = 15.0
"""Seconds to wait for the loop thread to close the connection and end."""


@attrs.frozen
class BridgeStatistics:
    """What `Bridge.statistics` reports."""

    state: ConnectionState
    calls_waiting: int
    """Trio tasks waiting in `Bridge.call`."""
    loop_tasks: int
    """Asyncio tasks running calls on the loop (a cancelled caller's task ends soon after)."""
    queued_to_loop: int
    """Requests queued for the loop and not yet picked up."""
    queued_to_trio: int
    """Callbacks queued for trio and not yet run."""


class Answer:
    """The one answer a trio task waits for in `Bridge.answer`, or that a callback receives
    (`Bridge.notice`); loop-side code sends it."""

    __slots__ = ("abandoned", "task", "callback", "_post", "_resolve")

    def __init__(
        self,
        task: trio.lowlevel.Task | None,
        post: Callable[..., None],
        resolve: Callable[[Answer, BaseException | None, Any], None],
        callback: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.task = task
        self.callback = callback
        self.abandoned = False
        self._post = post
        self._resolve = resolve

    def send(self, value: Any) -> None:
        """Loop thread: wake the waiting trio task with ``value``."""
        self._post(self._resolve, self, None, value)

    def fail(self, error: BaseException) -> None:
        """Loop thread: raise ``error`` in the waiting trio task."""
        self._post(self._resolve, self, error, None)


class Bridge:
    """Owns the NATS connection: nats-py on an asyncio loop in one thread.

    Start it with ``await nursery.start(bridge.run)`` (it reports started once connected) or
    use `open_bridge`. ``nats_options`` go to nats-py's ``connect`` unchanged: ``user``,
    ``password``, ``token``, ``user_credentials``, ``nkeys_seed``, ``tls``,
    ``tls_hostname``, ``name``, ``allow_reconnect``, ``max_reconnect_attempts``,
    ``reconnect_time_wait``, ``connect_timeout``, ``ping_interval``, ... The connection
    callbacks are the Bridge's own; watch `connection` instead.

    The first connect tries every server of the URL once and then fails with `NotConnected`
    naming the URL; once connected, nats-py's reconnect settings apply.
    """

    def __init__(self, url: str, **nats_options: Any) -> None:
        check_options(nats_options)
        self._url = url
        self.url = redact(url)
        """The URL, without passwords (as messages and logs show it)."""
        self._options = nats_options
        self.connection: AsyncValue[ConnectionState] = AsyncValue(ConnectionState.CONNECTING)
        """Observable connection state: connecting, connected, reconnecting, closed."""
        self._side: LoopSide | None = None
        self._outbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._outbox_scheduled = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._waiting: set[Call | Answer] = set()
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Bridge] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, report started, and serve until cancelled; then close the connection and
        end the thread.

        Raises:
            NotConnected: the first connect failed (the message names the URL and why), or
                the connection closed for good (reconnect attempts exhausted).
        """
        async with self._running():
            task_status.started(self)
            await self.connection.wait_value(ConnectionState.CLOSED)
            raise NotConnected(f"the connection to NATS at {self.url} closed")

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Bridge]:
        if self._side is not None and not self._closed:
            raise RuntimeError(f"the Bridge to {self.url} is already running")
        # A supervisor may run the same Bridge again after it ended: start from scratch.
        self._closed = False
        self._outbox.clear()
        self._outbox_scheduled = False
        self._waiting.clear()
        self.connection.value = ConnectionState.CONNECTING
        self._token = trio.lowlevel.current_trio_token()
        side = LoopSide(self._url, self._options, self._post)
        side.on_state = self._set_state
        self._side = side
        started: trio.Event = trio.Event()
        failure: list[BaseException | None] = []

        def on_started(exc: BaseException | None) -> None:
            failure.append(exc)
            started.set()

        exited = trio.Event()
        thread = threading.Thread(
            target=side.run,
            args=(on_started, exited.set),
            name=f"actorq-bridge {self.url}",
            daemon=True,
        )
        thread.start()
        try:
            # Cancelled while connecting: the shutdown below stops the connect attempt.
            await started.wait()
            if failure[0] is not None:
                raise failure[0]
            self.connection.value = ConnectionState.CONNECTED
            yield self
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown(thread, exited)

    async def _shutdown(self, thread: threading.Thread, exited: trio.Event) -> None:
        self._closed = True
        side = self._side
        assert side is not None
        side.stop()
        with trio.move_on_after(_JOIN_TIMEOUT):
            await exited.wait()
        if exited.is_set():
            # The thread posted its last word and only has to return: joining is instant.
            thread.join(1.0)
        else:  # pragma: no cover - the loop is stuck; leave the daemon thread behind
            logger.error("the Bridge thread for %s did not end in time", self.url)
        # Callbacks the loop queued just before it ended still run, in order.
        self._drain_outbox()
        error = NotConnected(f"the Bridge to {self.url} is closed")
        for call in list(self._waiting):
            self._resolve(call, error, None)
        self.connection.value = ConnectionState.CLOSED

    # --- trio -> asyncio ----------------------------------------------------------------

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the loop thread and return its result.

        ``fn`` runs on the asyncio loop and may use nats-py; its result must be a plain value
        (no nats-py object). Cancelling the caller returns at once and cancels the asyncio
        task. Errors raised on the loop are re-raised here, nats-py's own mapped to actorq's.
        """
        side = self._live_side()
        await trio.lowlevel.checkpoint_if_cancelled()
        call = Call(fn, args, self._resolve, trio.lowlevel.current_task())
        side.submit(call)
        self._waiting.add(call)

        def abort(_: Any) -> trio.lowlevel.Abort:
            call.abandoned = True
            self._waiting.discard(call)
            try:
                side.submit(("cancel", call))
            except NotConnected:
                pass
            return trio.lowlevel.Abort.SUCCEEDED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    async def answer(self, submit: Callable[..., None], *args: Any) -> Any:
        """Wait for an `Answer` that loop-side code sends; no asyncio task is involved.

        ``submit(answer, *args)`` runs here, on the trio thread, and hands ``answer`` to the
        loop (typically by queueing it on a lane drained by one cast per batch); the loop
        calls ``answer.send(value)`` or ``answer.fail(error)`` once. Cancelling the caller
        returns at once (a later answer is dropped); stopping the Bridge fails the wait with
        `NotConnected`, like `call`.
        """
        self._live_side()
        await trio.lowlevel.checkpoint_if_cancelled()
        answer = Answer(trio.lowlevel.current_task(), self._post, self._resolve)
        submit(answer, *args)
        self._waiting.add(answer)

        def abort(_: Any) -> trio.lowlevel.Abort:
            answer.abandoned = True
            self._waiting.discard(answer)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def notice(self, callback: Callable[[BaseException | None], None]) -> Answer:
        """An `Answer` that nobody awaits: loop-side code's ``send`` or ``fail`` calls
        ``callback(None)`` or ``callback(error)`` on the trio thread instead.

        The callback runs exactly once: if the Bridge stops first, with `NotConnected`. It
        runs in trio's system context, between tasks, so it must be quick and not block; an
        exception it raises is logged.
        """
        self._live_side()
        answer = Answer(None, self._post, self._resolve, callback)
        self._waiting.add(answer)
        return answer

    def cast(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` (a plain function) on the loop thread soon; do not wait.

        Casts and calls reach the loop in the order they were made.
        """
        self._live_side().submit(("cast", fn, args))

    def statistics(self) -> BridgeStatistics:
        """A snapshot of the Bridge's queues (for tests, monitoring and benchmarks)."""
        side = self._side
        return BridgeStatistics(
            state=self.connection.value,
            calls_waiting=len(self._waiting),
            loop_tasks=side.task_count() if side is not None else 0,
            queued_to_loop=side.queued() if side is not None else 0,
            queued_to_trio=len(self._outbox),
        )

    @property
    def loop_side(self) -> LoopSide:
        """The asyncio side, for loop-side code set up through `call` (never touch it from
        trio beyond handing it to the loop)."""
        return self._live_side()

    def _live_side(self) -> LoopSide:
        side = self._side
        if side is None or self._closed:
            raise NotConnected(f"the Bridge to {self.url} is not running")
        return side

    # --- asyncio -> trio ----------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Loop thread: queue ``fn(*args)`` for the trio thread; one wake-up per batch."""
        self._outbox.append((fn, args))
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            assert self._token is not None
            try:
                self._token.run_sync_soon(self._drain_outbox)
            except trio.RunFinishedError:
                pass

    def _drain_outbox(self) -> None:
        # Runs on the trio thread in trio's system context: it must never raise.
        self._outbox_scheduled = False
        outbox = self._outbox
        while outbox:
            fn, args = outbox.popleft()
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001
                logger.exception("bridge callback %r failed", fn)

    def _resolve(self, call: Call | Answer, error: BaseException | None, value: Any) -> None:
        if call.abandoned:
            return
        call.abandoned = True
        self._waiting.discard(call)
        if call.task is None:  # a notice
            assert type(call) is Answer and call.callback is not None
            try:
                call.callback(error)
            except BaseException:  # noqa: BLE001 - runs between trio tasks: never raise there
                logger.exception("bridge notice %r failed", call.callback)
            return
        result = outcome.Error(error) if error is not None else outcome.Value(value)
        trio.lowlevel.reschedule(call.task, result)  # type: ignore[arg-type]

    def _set_state(self, name: str) -> None:
        if self.connection.value is ConnectionState.CLOSED:
            return
        self.connection.value = _STATES[name]


@asynccontextmanager
async def open_bridge(url: str, **nats_options: Any) -> AsyncIterator[Bridge]:
    """Run a `Bridge` for the duration of the block (no nursery of the caller's needed).

    Raises:
        NotConnected: the first connect failed; the message names the URL.
    """
    bridge = Bridge(url, **nats_options)
    async with bridge._running():
        yield bridge
