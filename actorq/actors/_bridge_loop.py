"""The asyncio side of the Bridge: nats-py on its own event loop, in its own thread.

nats-py is asyncio-only, so the Bridge runs it on an asyncio loop in one dedicated thread and
keeps every nats-py object on that side. This module is that side: it connects, runs the
coroutines trio asks for, and sends results, deliveries and connection changes back.

Both directions cross in batches. Trio appends work to a deque and wakes the loop with one
``call_soon_threadsafe`` per batch (a flag says whether a wake-up is already on its way); the
loop drains everything queued at once. The way back (`LoopSide.post`) is the mirror image,
provided by the trio side.

Only this module and the Bridge's trio side import ``nats`` (plus the JetStream broker's
loop-side modules, which run here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from .._errors import ActorqError, BrokerError, NotConnected

logger = logging.getLogger("actorq.bridge")

Post = Callable[..., None]
"""``post(fn, *args)``: run ``fn(*args)`` on the trio thread, soon, in order."""

_CONNECTION_ERRORS = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.FlushTimeoutError,
)

_CALLBACK_OPTIONS = frozenset(
    {
        "error_cb",
        "disconnected_cb",
        "closed_cb",
        "reconnected_cb",
        "discovered_server_cb",
        "lame_duck_mode_cb",
    }
)


class _FirstConnectFailed(Exception):
    """Raised from our error callback to stop nats-py retrying the very first connect."""


def check_options(options: dict[str, Any]) -> None:
    """Refuse nats-py options that would hand nats-py objects or threads to the caller."""
    given = _CALLBACK_OPTIONS & options.keys()
    if given:
        raise TypeError(
            f"the Bridge owns nats-py's callbacks ({', '.join(sorted(given))}); "
            "observe `connection` (an AsyncValue[ConnectionState]) instead"
        )
    tls = options.get("tls")
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        raise TypeError(f"tls must be an ssl.SSLContext, got {type(tls).__name__}")


def map_error(exc: BaseException, what: str) -> BaseException:
    """Turn a nats-py exception into actorq's hierarchy; actorq errors pass unchanged."""
    if isinstance(exc, ActorqError):
        return exc
    if isinstance(exc, _CONNECTION_ERRORS):
        return NotConnected(f"{what}: not connected to NATS ({type(exc).__name__})")
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
        return BrokerError(f"{what}: no answer from NATS in time")
    if isinstance(exc, nats.errors.NoRespondersError):
        return BrokerError(f"{what}: no responders (is JetStream enabled?)")
    if isinstance(exc, nats.errors.Error):
        return BrokerError(f"{what}: {exc}")
    return exc


class Call:
    """One request from trio: run ``fn(*args)`` on the loop, send back its outcome.

    ``resolve`` is the trio side's function that wakes the waiting task; ``abandoned`` and
    ``task`` belong to the trio side, ``aio_task`` to the loop side.
    """

    __slots__ = ("fn", "args", "resolve", "task", "abandoned", "aio_task", "what")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        resolve: Callable[[Call, BaseException | None, Any], None],
        task: object,
    ) -> None:
        self.fn = fn
        self.args = args
        self.resolve = resolve
        self.task = task
        self.abandoned = False
        self.aio_task: asyncio.Task[None] | None = None
        self.what = getattr(fn, "__name__", "call")


class LoopSide:
    """Owns the asyncio loop and the nats-py client; everything here runs on the loop thread
    except `submit`, which trio calls."""

    def __init__(self, url: str, options: dict[str, Any], post: Post) -> None:
        self.servers = [part.strip() for part in url.split(",") if part.strip()]
        self.url = redact(url)
        """The URL as messages and logs show it (without passwords)."""
        self.options = options
        self.post = post
        self.nc = Client()
        # Created here, run by the thread: trio can reach it from the first moment on.
        self.loop = asyncio.new_event_loop()
        self._stop_requested = False
        self._inbox: deque[Any] = deque()
        self._wake_scheduled = False
        self._stop: asyncio.Future[None] | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._first_connect = True
        self._connect_errors: list[BaseException] = []
        self._closing = False
        self.on_state: Callable[[str], None] = lambda state: None
        """Trio-side state setter, called through `post` (``connected``, ``reconnecting``,
        ``closed``)."""
        self.reconnect_listeners: list[Callable[[], None]] = []
        """Loop-side hooks run after every reconnect (pull subscriptions re-issue there)."""

    # --- thread entry -----------------------------------------------------------------

    def run(
        self, on_started: Callable[[BaseException | None], None], on_exit: Callable[[], None]
    ) -> None:
        """The thread's body: connect, serve until stopped, close. ``on_started`` is posted
        once, with the connect error or None; ``on_exit`` is posted last, when the loop is
        closed and the thread is about to end."""
        try:
            with asyncio.Runner(loop_factory=lambda: self.loop) as runner:
                runner.run(self._main(on_started))
        except BaseException:  # pragma: no cover - last resort, the loop itself broke
            logger.exception("bridge loop crashed")
            self.post(self.on_state, "closed")
        finally:
            self.post(on_exit)

    async def _main(self, on_started: Callable[[BaseException | None], None]) -> None:
        self._stop = self.loop.create_future()
        self._main_task = asyncio.current_task()
        try:
            if self._stop_requested:
                raise asyncio.CancelledError
            await self._connect()
        except BaseException as exc:  # noqa: BLE001 - reported to trio, which raises it
            await self._close_quietly()
            self.post(on_started, exc)
            return
        self._first_connect = False
        self.post(on_started, None)
        try:
            await self._stop
        finally:
            self._closing = True
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            await self._close_quietly()

    async def _connect(self) -> None:
        try:
            await self.nc.connect(
                servers=self.servers,
                error_cb=self._error_cb,
                disconnected_cb=self._disconnected_cb,
                reconnected_cb=self._reconnected_cb,
                closed_cb=self._closed_cb,
                **self.options,
            )
        except _FirstConnectFailed:
            raise NotConnected(self._connect_failure_message()) from None
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._connect_errors.append(exc)
            raise NotConnected(self._connect_failure_message()) from None

    def _connect_failure_message(self) -> str:
        last = self._connect_errors[-1] if self._connect_errors else None
        reason = _describe(last) if last is not None else "unknown error"
        return f"cannot connect to NATS at {self.url}: {reason}"

    async def _close_quietly(self) -> None:
        try:
            await asyncio.wait_for(self.nc.close(), timeout=5)
        except Exception:  # noqa: BLE001 - closing after failure; nothing left to report to
            logger.debug("closing the NATS connection failed", exc_info=True)

    # --- nats-py callbacks (must be coroutine functions) ------------------------------

    async def _error_cb(self, exc: Exception) -> None:
        if self._first_connect:
            self._connect_errors.append(exc)
            # Try every server once, like other NATS clients' first connect, then give up
            # instead of retrying for minutes behind the caller's back.
            if len(self._connect_errors) >= len(self.servers):
                raise _FirstConnectFailed
            return
        if self.nc.is_reconnecting:
            # Every failed attempt lands here; the state change itself is logged once.
            logger.debug("reconnecting to NATS at %s: %s", self.url, _describe(exc))
        else:
            logger.warning("NATS connection error (%s): %s", self.url, _describe(exc))

    async def _disconnected_cb(self) -> None:
        if not self._first_connect and not self._closing and not self.nc.is_closed:
            logger.warning("lost the connection to NATS at %s; reconnecting", self.url)
            self.post(self.on_state, "reconnecting")

    async def _reconnected_cb(self) -> None:
        logger.info("reconnected to NATS at %s", self.url)
        for listener in list(self.reconnect_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - one listener must not starve the others
                logger.exception("reconnect listener failed")
        self.post(self.on_state, "connected")

    async def _closed_cb(self) -> None:
        if not self._first_connect:
            self.post(self.on_state, "closed")

    # --- work from trio ---------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Trio thread: queue a `Call`, a ``("cancel", call)`` or a ``("cast", fn, args)``."""
        self._inbox.append(item)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed between the check and the call
                raise NotConnected(f"the Bridge to {self.url} is closed") from None

    def task_count(self) -> int:
        """Calls running on the loop (read from trio for statistics: a snapshot)."""
        return len(self._tasks)

    def queued(self) -> int:
        return len(self._inbox)

    def stop(self) -> None:
        """Trio thread: ask the loop to close the connection and end."""
        try:
            self.loop.call_soon_threadsafe(self._set_stop)
        except RuntimeError:  # already closed
            pass

    def _set_stop(self) -> None:
        self._stop_requested = True
        if self._first_connect and self._main_task is not None:
            # Stopped while still connecting: abandon the attempt.
            self._main_task.cancel()
        elif self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def _drain(self) -> None:
        # Clear the flag before draining: anything queued after this point either gets
        # drained below or schedules another wake-up.
        self._wake_scheduled = False
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            if type(item) is Call:
                if self._closing:
                    self.post(item.resolve, item, NotConnected("the Bridge is closing"), None)
                    continue
                task = asyncio.ensure_future(self._run_call(item))
                item.aio_task = task
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif item[0] == "cast":
                try:
                    item[1](*item[2])
                except Exception:  # noqa: BLE001 - fire-and-forget: nobody to raise to
                    logger.exception("bridge cast %r failed", item[1])
            else:  # ("cancel", call)
                task = item[1].aio_task
                if task is not None:
                    task.cancel()

    async def _run_call(self, call: Call) -> None:
        try:
            result = await call.fn(*call.args)
        except asyncio.CancelledError:
            if self._closing:
                self.post(call.resolve, call, NotConnected("the Bridge is closing"), None)
            # Otherwise trio abandoned the call and is no longer waiting.
            return
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            self.post(call.resolve, call, map_error(exc, call.what), None)
            return
        self.post(call.resolve, call, None, result)


def redact(url: str) -> str:
    """``url`` with the password (or token) of every server replaced by ``***``."""
    return _CREDENTIALS.sub(_hide, url)


_CREDENTIALS = re.compile(r"(://)([^@/,]*)@")


def _hide(match: re.Match[str]) -> str:
    user, sep, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}{sep}***@" if sep else f"{match.group(1)}***@"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, nats.errors.AuthorizationError):
        return "authorization violation (check user/password, token or credentials)"
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return "timed out"
    text = str(exc).strip()
    if isinstance(exc, nats.errors.Error) and "authorization" in text.lower():
        return f"authorization violation ({text.removeprefix('nats: ')})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
