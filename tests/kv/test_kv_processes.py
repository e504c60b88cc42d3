"""Acceptance across real processes against the session's nats-server (see ``kv_process.py``).

- 20 concurrent writers in 2 processes, 50 ``update`` increments each: exactly 1,000.
- A lock holder process keeps its lock past 3 TTLs; ``kill -9`` of it: another holder gets the
  lock within about one TTL.
- 3 leader candidate processes: exactly one leader; ``kill -9`` of it: exactly one new leader
  within about one TTL; a leader frozen (SIGSTOP) until deposed cannot write fenced state when
  it wakes up.
- 2 processes share a 20/s rate limit for 200 acquisitions: at least ~9 s, and no window of one
  second ever holds more than 20 (measured from the processes' own timestamps).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import trio

import actorq
from actorq.kv import LockHeld

pytestmark = [pytest.mark.faults, pytest.mark.integration]

SCRIPT = Path(__file__).with_name("kv_process.py")


@attrs.frozen
class Count:
    n: int = 0


@attrs.frozen
class State:
    pid: int
    token: int


class Proc:
    """A child process whose stdout lines are collected as they arrive."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = trio.Event()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode() for line in complete)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_line(self, prefix: str) -> str:
        """The first line starting with ``prefix`` (waiting for it)."""
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            if self.process.returncode is not None:
                pytest.fail(f"process exited ({self.process.returncode}): {self.lines}")
            await self._changed.wait()

    def has(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.lines)

    async def send(self, text: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(text.encode())

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)


async def spawn(nursery: trio.Nursery, *args: str) -> Proc:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(SCRIPT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    proc = Proc(process)
    nursery.start_soon(proc.read)
    return proc


async def stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        proc.signal(signal.SIGCONT)
        proc.signal(signal.SIGKILL)
    for proc in procs:
        await proc.process.wait()


async def test_two_processes_of_update_increments_lose_nothing(
    nats_url: str, namespace: str
) -> None:
    async with trio.open_nursery() as nursery:
        procs = [await spawn(nursery, "update", nats_url, namespace, "10", "50") for _ in range(2)]
        try:
            with trio.fail_after(30):
                for proc in procs:
                    await proc.wait_line("ready")
                for proc in procs:
                    await proc.send("go\n")
                for proc in procs:
                    await proc.wait_line("done")
        finally:
            await stop_all(procs)
    async with actorq.connect(actorq.App(namespace), nats_url) as client:
        entry = await client.kv("counts", Count).get("k")
    assert entry is not None
    assert entry.value == Count(1000)


async def test_a_killed_lock_holder_is_replaced_within_its_ttl(
    nats_url: str, namespace: str
) -> None:
    ttl = 1.0
    async with (
        actorq.connect(actorq.App(namespace), nats_url) as client,
        trio.open_nursery() as nursery,
    ):
        holder = await spawn(nursery, "lock", nats_url, namespace, str(ttl))
        try:
            with trio.fail_after(15):
                token = int((await holder.wait_line("ready")).split()[1])
                start = time.monotonic()
                while time.monotonic() - start < 3.2 * ttl:  # renewed past 3 TTLs
                    with pytest.raises(LockHeld, match=f":{holder.pid}"):
                        async with client.lock("job", ttl=ttl, timeout=0):
                            pytest.fail("two holders at once")
                    await trio.sleep(0.4)
                holder.signal(signal.SIGKILL)
                killed = time.monotonic()
                async with client.lock("job", ttl=ttl) as lease:
                    waited = time.monotonic() - killed
        finally:
            await stop_all([holder])
    assert lease.token > token
    assert waited < ttl + 1.5, f"took the lock {waited:.2f} s after the kill"


async def test_leader_candidates_fail_over_and_a_deposed_leader_is_fenced_out(
    nats_url: str, namespace: str
) -> None:
    ttl = 1.0
    async with trio.open_nursery() as nursery:
        procs = [await spawn(nursery, "leader", nats_url, namespace, str(ttl)) for _ in range(3)]
        try:
            with trio.fail_after(20):
                ready = [await proc.wait_line("ready") for proc in procs]
                leaders = [p for p, line in zip(procs, ready, strict=True) if "leader" in line]
                assert len(leaders) == 1, ready
                [first] = leaders
                await first.wait_line("wrote")

                # kill -9 of the leader: exactly one of the others takes over within ~TTL.
                first.signal(signal.SIGKILL)
                killed = time.monotonic()
                rest = [p for p in procs if p is not first]
                async with trio.open_nursery() as race:
                    for proc in rest:
                        race.start_soon(_cancel_when, race, proc, "leader ")
                took = time.monotonic() - killed
                assert took < ttl + 1.5, f"a new leader {took:.2f} s after the kill"
                [second] = [p for p in rest if p.has("leader ")]
                [third] = [p for p in rest if p is not second]
                assert not third.has("leader ")
                second_token = int((await second.wait_line("leader ")).split()[1])
                await second.wait_line("wrote")

                # Freeze the leader until it is deposed; woken up, its fenced write is refused.
                second.signal(signal.SIGSTOP)
                third_token = int((await third.wait_line("leader ")).split()[1])
                await third.wait_line(f"wrote {third_token}")
                second.signal(signal.SIGCONT)
                await second.wait_line(f"fenced-out {second_token}")
                await second.wait_line("follower")
                assert third_token > second_token
                assert not third.has("fenced-out")
        finally:
            await stop_all(procs)
    async with actorq.connect(actorq.App(namespace), nats_url) as client:
        entry = await client.kv("state", State).get("state")
    assert entry is not None
    assert (entry.value.pid, entry.fence) == (third.pid, third_token)


async def _cancel_when(nursery: trio.Nursery, proc: Proc, prefix: str) -> None:
    await proc.wait_line(prefix)
    nursery.cancel_scope.cancel()


async def test_two_processes_share_a_rate_limit(nats_url: str, namespace: str) -> None:
    async with trio.open_nursery() as nursery:
        procs = [
            await spawn(nursery, "ratelimit", nats_url, namespace, "20/s", "10", "10")
            for _ in range(2)
        ]
        try:
            with trio.fail_after(30):
                for proc in procs:
                    await proc.wait_line("ready")
                for proc in procs:
                    await proc.send("go\n")
                for proc in procs:
                    await proc.wait_line("done")
        finally:
            await stop_all(procs)
    times = sorted(float(line.split()[1]) for p in procs for line in p.lines if line[:2] == "t ")
    assert len(times) == 200
    assert times[-1] - times[0] >= 9.0, f"200 acquisitions in {times[-1] - times[0]:.2f} s"
    counts = [sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)]
    worst = max(counts)
    offsets = [round(t - times[0], 3) for t in times]
    assert worst <= 20, f"{worst} in the second from {offsets[counts.index(worst)]}: {offsets}"
