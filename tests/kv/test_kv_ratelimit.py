"""The rate limiter on the memory broker, on virtual time: exact slots, no window ever over the
limit, keys independent, shared across clients, and the rate strings."""

from __future__ import annotations

import random

import pytest
import trio

import actorq
from actorq.kv import Rate, parse_rate


def max_in_any_window(times: list[float], period: float) -> int:
    """The most timestamps in any half-open window [t, t + period) (a microsecond of tolerance:
    slots are wall-clock floats, near 1.7e9, converted to and from trio time)."""
    times = sorted(times)
    best = 0
    for index, start in enumerate(times):
        best = max(best, sum(1 for t in times[index:] if t < start + period - 1e-6))
    return best


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("100/s", 100, 1.0),
        ("20/m", 20, 60.0),
        ("5/h", 5, 3600.0),
        ("1000/d", 1000, 86400.0),
        ("10/5s", 10, 5.0),
        (" 3 / min ", 3, 60.0),
        ("2/hours", 2, 3600.0),
    ],
)
def test_rates_parse(text: str, limit: int, period: float) -> None:
    assert parse_rate(text) == Rate(limit, period)


@pytest.mark.parametrize("text", ["100", "100/x", "/s", "fast", "0/s", "-1/s", "1.5/s", "10/0s"])
def test_a_bad_rate_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid rate {text!r}"):
        parse_rate(text)


def test_rates_print_as_they_are_written() -> None:
    assert [str(parse_rate(t)) for t in ("100/s", "20/m", "5/h", "10/5s")] == [
        "100/s", "20/m", "5/h", "10/5s",
    ]  # fmt: skip


async def test_slots_come_in_bursts_one_period_apart(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    limiter = client.rate_limiter("api", "20/s", guard=0)
    times = []
    for _ in range(45):
        async with limiter.acquire():
            times.append(trio.current_time())
    assert times == [0.0] * 20 + [1.0] * 20 + [2.0] * 5


async def test_the_guard_widens_each_window(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    limiter = client.rate_limiter("api", "2/s")
    times = []
    for _ in range(5):
        async with limiter.acquire():
            times.append(round(trio.current_time(), 6))
    assert times == [0.0, 0.0, 1.05, 1.05, 2.1]


async def test_no_window_ever_exceeds_the_limit_under_concurrency(
    client: actorq.Client, app: actorq.App, memory_url: str, autojump_clock: trio.abc.Clock
) -> None:
    # Two clients (as two processes would be), 20 concurrent acquirers at random moments.
    times: list[float] = []
    rng = random.Random(7)
    async with actorq.connect(app, memory_url) as other:
        limiters = [
            client.rate_limiter("api", "10/s", guard=0),
            other.rate_limiter("api", "10/s", guard=0),
        ]
        async with trio.open_nursery() as nursery:
            for index in range(20):

                async def acquirer(limiter=limiters[index % 2]) -> None:  # type: ignore[no-untyped-def]
                    for _ in range(10):
                        await trio.sleep(rng.uniform(0, 0.7))
                        async with limiter.acquire():
                            times.append(trio.current_time())

                nursery.start_soon(acquirer)
    assert len(times) == 200
    assert max_in_any_window(times, 1.0) <= 10
    assert max(times) >= 19.0  # 200 at 10/s needs 19 s after the first burst


async def test_keys_are_limited_separately(
    client: actorq.Client, autojump_clock: trio.abc.Clock
) -> None:
    limiter = client.rate_limiter("per-user", "1/m", guard=0)
    await limiter.wait("alice")
    await limiter.wait("bob")
    assert trio.current_time() == 0.0
    assert await limiter.wait("alice") == pytest.approx(limiter.broker.now(), abs=1e-6)
    assert trio.current_time() == 60.0


async def test_an_idle_key_expires(client: actorq.Client, autojump_clock: trio.abc.Clock) -> None:
    limiter = client.rate_limiter("api", "5/s", guard=0)
    await limiter.wait()
    bucket = client.app.layout.rate_limits_bucket
    assert await client.broker.kv_get(bucket, "api") is not None
    await trio.sleep(3)
    assert await client.broker.kv_get(bucket, "api") is None


async def test_a_bad_limiter_is_refused(client: actorq.Client) -> None:
    with pytest.raises(ValueError, match="invalid rate 'lots'"):
        client.rate_limiter("api", "lots")
    with pytest.raises(ValueError, match="invalid rate limiter name"):
        client.rate_limiter("a b", "1/s")
    with pytest.raises(ValueError, match="guard"):
        client.rate_limiter("api", "1/s", guard=-1)
