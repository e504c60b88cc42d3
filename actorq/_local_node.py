"""The local node: one detached nats-server per project folder, recorded under ``.actorq/``.

When a user gives no URL, actorq should just work on a laptop: a producer script and
``actorq run`` started in the same folder must meet on one NATS, and queued work must
survive a restart of either. So the first of them starts a nats-server *detached* (its own
session; it outlives the process that started it), with its JetStream store in
``.actorq/store``, and records it in ``.actorq/server.json``; everyone after reuses the
recorded node while it answers. It keeps running until ``actorq server stop`` — a
development database, like ``redis-server`` on a laptop.

A lock file (``fcntl.flock`` on ``.actorq/server.lock``) serialises the check-and-start, so
two processes starting at once end up on one node. The recorded node is trusted only when a
TCP connect returns a NATS INFO line carrying the node's name, which is derived from the
folder's path (another project's node on a reused port is not mistaken for ours). POSIX only.

Everything here blocks; from trio, call it through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ._embedded_base import (
    LOOPBACK,
    LogScanner,
    ServerSpec,
    find_binary,
    probe_nats,
    start_failure,
)
from ._errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_DIRECTORY = ".actorq"
_RECORD = "server.json"
_LOCK = "server.lock"
_LOG = "server.log"
_STORE = "store"
_POLL = 0.02


@attrs.frozen
class LocalNode:
    """What ``.actorq/server.json`` records about the local node."""

    url: str
    host: str
    port: int
    pid: int
    name: str
    store_dir: Path = attrs.field(converter=Path)
    log_file: Path = attrs.field(converter=Path)
    started_at: float

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether this node accepts connections and is the one recorded (by its name)."""
        info = probe_nats(self.host, self.port, timeout)
        return info is not None and info.get("server_name") == self.name

    def to_json(self) -> str:
        data = attrs.asdict(self)
        data["store_dir"], data["log_file"] = str(self.store_dir), str(self.log_file)
        return json.dumps(data, indent=2) + "\n"


def read_local_node(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> LocalNode | None:
    """The node recorded under ``directory``, whether or not it still runs; None if none is
    recorded (or the record is unreadable)."""
    try:
        data = json.loads((Path(directory) / _RECORD).read_text())
        return LocalNode(**data)
    except (OSError, ValueError, TypeError):
        return None


def ensure_local_node(
    directory: str | os.PathLike[str] = DEFAULT_DIRECTORY,
    *,
    timeout: float = 20.0,
    binary: str | os.PathLike[str] | None = None,
) -> str:
    """The client URL of the local node under ``directory``, starting it if needed.

    Reuses the recorded node when it answers. Otherwise starts a detached nats-server with
    JetStream on a loopback port (the previous node's port when it is free, so URLs stay
    stable; else one the OS picks), its store in ``<directory>/store`` (kept across
    restarts, so queued work survives) and its log in ``<directory>/server.log``; records it
    in ``<directory>/server.json`` and returns its URL once it is ready. The node keeps
    running after this process exits, until `stop_local_node` (``actorq server stop``).

    Blocking; safe to call from several processes at once.

    Raises:
        EmbeddedServerError: the binary is missing, or the node did not start (the message
            carries its log tail), or the lock was not obtained within ``timeout``.
    """
    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        # The store and the log are machine-local state, never something to commit.
        ignore.write_text("*\n")
    with _locked(folder, timeout):
        record = read_local_node(folder)
        if record is not None and record.answers():
            return record.url
        if record is not None:
            # Recorded but silent: make sure no hung process still holds the store.
            _terminate(record, grace=5.0)
        preferred = record.port if record is not None else -1
        try:
            node = _spawn(folder, port=preferred, timeout=timeout, binary=binary)
        except EmbeddedServerError as exc:
            if exc.port is None or preferred == -1:
                raise
            node = _spawn(folder, port=-1, timeout=timeout, binary=binary)
        _write_record(folder, node)
        return node.url


def stop_local_node(
    directory: str | os.PathLike[str] = DEFAULT_DIRECTORY, *, grace: float = 5.0
) -> LocalNode | None:
    """Stop the local node recorded under ``directory`` (SIGTERM, ``grace`` seconds, SIGKILL)
    and forget it; its store stays. Returns the node that was recorded, or None.

    Blocking.
    """
    folder = Path(directory).resolve()
    if not (folder / _RECORD).exists():
        return None
    with _locked(folder, timeout=grace + 10.0):
        record = read_local_node(folder)
        if record is not None:
            _terminate(record, grace=grace)
        (folder / _RECORD).unlink(missing_ok=True)
        return record


def _node_name(folder: Path) -> str:
    return "actorq-local-" + hashlib.sha256(str(folder).encode()).hexdigest()[:10]


@contextlib.contextmanager
def _locked(folder: Path, timeout: float) -> Iterator[None]:
    import fcntl  # POSIX only; imported here so that importing actorq works everywhere

    with open(folder / _LOCK, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"another process has held {folder / _LOCK} for over {timeout:g}s "
                        "(starting or stopping the local node); try again"
                    ) from None
                time.sleep(_POLL)  # flock has no timeout of its own
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_record(folder: Path, node: LocalNode) -> None:
    temporary = folder / (_RECORD + ".tmp")
    temporary.write_text(node.to_json())
    os.replace(temporary, folder / _RECORD)  # readers never see half a record


def _spawn(
    folder: Path, *, port: int, timeout: float, binary: str | os.PathLike[str] | None
) -> LocalNode:
    name = _node_name(folder)
    log = folder / _LOG
    spec = ServerSpec(
        binary=find_binary(binary), store_dir=folder / _STORE, host=LOOPBACK, port=port, name=name
    )
    # The shell puts the server in the background and exits at once: the server then belongs
    # to no process of ours (no zombie, no "still running" warning when we exit) and, in its
    # own session, does not get the terminal's Ctrl-C.
    command = f"{shlex.join(spec.argv())} </dev/null >{shlex.quote(str(log))} 2>&1 & echo $!"
    try:
        launcher = subprocess.run(
            ["/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            start_new_session=True,
            check=True,
            timeout=10,
        )
        pid = int(launcher.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(f"cannot launch {spec.binary}: {exc}") from exc
    scanner = LogScanner()
    started = time.time()
    deadline = time.monotonic() + timeout
    offset, pending = 0, b""
    while True:
        alive = _pid_alive(pid)
        with contextlib.suppress(FileNotFoundError), open(log, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                scanner.feed(raw.decode("utf-8", errors="replace"))
        if scanner.settled or not alive:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL)  # the detached server writes to a file; there is nothing to wait on
    if scanner.ready and scanner.client_port is not None:
        return LocalNode(
            url=spec.url_for(scanner.client_port),
            host=spec.host,
            port=scanner.client_port,
            pid=pid,
            name=name,
            store_dir=spec.store_dir,
            log_file=log,
            started_at=started,
        )
    if pending:
        scanner.feed(pending.decode("utf-8", errors="replace"))
    hung = _pid_alive(pid) and scanner.fatal is None
    _kill_pid(pid, spec.store_dir, grace=5.0)
    raise start_failure(spec, scanner, timeout=timeout if hung else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie has exited; it only waits for its parent (init) to reap it.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_node_process(pid: int, store_dir: Path) -> bool:
    """Whether ``pid`` is a nats-server using ``store_dir`` (guards against a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs to ask: trust the record
    except OSError:
        return False
    return bool(argv) and b"nats-server" in argv[0] and str(store_dir).encode() in argv


def _kill_pid(pid: int, store_dir: Path, *, grace: float) -> None:
    if not (_pid_alive(pid) and _is_node_process(pid, store_dir)):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL)  # not our child: no wait() to block on
        if not _pid_alive(pid):
            return


def _terminate(record: LocalNode, *, grace: float) -> None:
    _kill_pid(record.pid, record.store_dir, grace=grace)
