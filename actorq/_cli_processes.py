"""``actorq run --processes N`` and ``--reload``: worker processes under a parent.

``--processes N`` is for CPU-bound work, where one trio loop is not enough: the parent starts
N ``actorq run`` processes (each a full worker, sharing the queues' consumers) and keeps them
running — a process that dies (``kill -9``, the OOM killer, a crash) is started again at once;
more than `MAX_RESTARTS` deaths within `RESTART_PERIOD` seconds means something is wrong for
good, and the parent stops the others and exits 1. A process that exits with status 2 (bad
input: its app cannot be loaded) is not restarted: the parent stops and exits 2.

The children run in their own sessions, so a Ctrl-C in the terminal reaches the parent only;
the parent forwards SIGINT/SIGTERM to every child (first signal: they drain; a second: they
stop at once). Each child's stdin is a pipe from the parent: if the parent dies without a word
(SIGKILL), the children read end-of-file and drain — no orphan keeps working.

``--reload`` leaves the watching to ``watchfiles`` (the ``actorq[reload]`` extra).
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ._cli_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, BadInput

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

logger = logging.getLogger("actorq.run")

MAX_RESTARTS = 10
RESTART_PERIOD = 60.0


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class ProcessSupervisor:
    """Keeps ``count`` worker processes running ``argv``; see the module docstring."""

    def __init__(self, argv: Sequence[str], count: int, shutdown_grace: float) -> None:
        self.argv = list(argv)
        self.count = count
        # Children drain within their grace; past it (and a margin) they are killed.
        self.stop_timeout = shutdown_grace + 15.0
        self.stopping = trio.Event()
        self.processes: dict[int, trio.Process] = {}
        self.final_codes: dict[int, int] = {}
        self.status: int | None = None
        self.forced_signal: int | None = None
        self._deaths: deque[float] = deque()

    async def run(self) -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._forward_signals, signals)
                    async with trio.open_nursery() as keepers:
                        for index in range(self.count):
                            keepers.start_soon(self._keep, index)
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await self._kill_remaining()
        if self.forced_signal is not None:
            return 128 + self.forced_signal
        if self.status is not None:
            return self.status
        clean = all(code == 0 for code in self.final_codes.values())
        logger.info("all worker processes stopped", extra={"event": "stopped"})
        return EXIT_OK if clean else EXIT_FAILURE

    async def _keep(self, index: int) -> None:
        while not self.stopping.is_set():
            process = await trio.lowlevel.open_process(
                self.argv, stdin=subprocess.PIPE, start_new_session=True
            )
            self.processes[index] = process
            if self.stopping.is_set():  # a signal came while it started: pass it on
                process.send_signal(signal.SIGTERM)
            logger.info(
                "worker process %d started (pid %d)",
                index,
                process.pid,
                extra={"event": "process_started", "index": index, "child_pid": process.pid},
            )
            try:
                code = await process.wait()
            finally:
                self.processes.pop(index, None)
            self.final_codes[index] = code
            if self.stopping.is_set():
                logger.info(
                    "worker process %d (pid %d) %s", index, process.pid, describe_exit(code)
                )
                return
            if code == EXIT_USAGE:
                logger.error(
                    "worker process %d (pid %d) refused to start (status 2): stopping",
                    index,
                    process.pid,
                )
                self._give_up(EXIT_USAGE)
                return
            now = trio.current_time()
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - RESTART_PERIOD:
                self._deaths.popleft()
            if len(self._deaths) > MAX_RESTARTS:
                logger.error(
                    "worker process %d (pid %d) %s: more than %d deaths in %gs, giving up",
                    index,
                    process.pid,
                    describe_exit(code),
                    MAX_RESTARTS,
                    RESTART_PERIOD,
                )
                self._give_up(EXIT_FAILURE)
                return
            logger.warning(
                "worker process %d (pid %d) %s; restarting it",
                index,
                process.pid,
                describe_exit(code),
                extra={
                    "event": "process_died",
                    "index": index,
                    "child_pid": process.pid,
                    "status": code,
                },
            )
            # Back off a little when deaths pile up, never on the first.
            await trio.sleep(min(0.2 * (len(self._deaths) - 1), 5.0))

    def _give_up(self, status: int) -> None:
        self.status = status
        self.stopping.set()
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for process in list(self.processes.values()):
            if process.returncode is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:
                    pass

    async def _forward_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stopping.is_set():
                logger.info(
                    "%s: draining %d worker processes (%s again stops them at once)",
                    name,
                    len(self.processes),
                    name,
                    extra={"event": "draining"},
                )
                self.stopping.set()
            else:
                logger.warning("%s again: stopping the worker processes now", name)
                self.forced_signal = signum
            self._signal_all(signum)

    async def _kill_remaining(self) -> None:
        """Whatever is still running when the parent leaves: SIGTERM, a grace, SIGKILL."""
        if not self.processes:
            return
        self._signal_all(signal.SIGTERM)
        with trio.move_on_after(self.stop_timeout):
            for process in list(self.processes.values()):
                await process.wait()
        for process in list(self.processes.values()):
            if process.returncode is None:
                process.kill()
                await process.wait()


async def supervise_processes(argv: Sequence[str], count: int, shutdown_grace: float) -> int:
    """Run ``count`` worker processes until a signal; the exit status for the parent."""
    return await ProcessSupervisor(argv, count, shutdown_grace).run()


def run_with_reload(argv: Sequence[str], folders: Sequence[Path], shutdown_grace: float) -> int:
    """Run one worker process, restarted whenever a ``.py`` file under ``folders`` changes."""
    try:
        import watchfiles
    except ImportError:
        raise BadInput(
            "--reload needs the watchfiles package: pip install 'actorq[reload]'"
        ) from None

    def changed(changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        logger.info(
            "changed: %s; restarting the worker",
            ", ".join(names),
            extra={"event": "reload", "files": names},
        )

    logger.info(
        "watching %s for changes to .py files",
        ", ".join(map(str, folders)),
        extra={"event": "watching"},
    )
    watchfiles.run_process(
        *folders,
        target=shlex.join(argv),
        target_type="command",
        callback=changed,
        watch_filter=watchfiles.PythonFilter(),
        sigint_timeout=int(shutdown_grace) + 5,
    )
    return EXIT_OK
