"""The schedule dialect: what nats-server accepts, when it fires, and how a refusal reads.

The parser is tested on its own, then schedules fire on the memory broker under
``autojump_clock``, at exact virtual times. The accepted and refused cases were measured
against nats-server 2.15.1 (publishing each expression to a stream with
``allow_msg_schedules``; 600 random cron expressions agreed), and the fire times follow its
scheduler: ``@every`` counts from the publish time rounded to the second, cron from the next
second (360 random cron schedules in six time zones gave the server's ``Nats-Schedule-Next``).
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from actorq import PublishFailed
from actorq.broker import (
    SCHEDULE,
    SCHEDULE_TARGET,
    SCHEDULE_TTL,
    TTL,
    ConsumerConfig,
    Delivery,
    Message,
    Retention,
    StreamConfig,
)
from actorq.broker._memory import MemoryBroker, open_memory_broker
from actorq.broker._schedule import (
    InvalidSchedule,
    InvalidTimeZone,
    format_rfc3339,
    parse_go_duration,
    parse_rfc3339,
    parse_schedule,
    parse_ttl,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

NOW = parse_rfc3339("2026-11-23T07:42:44.718Z")  # a Monday


def fires(
    text: str, count: int = 3, *, time_zone: str | None = None, now: float = NOW
) -> list[str]:
    """The first ``count`` fire times of a schedule published at ``now``, in UTC."""
    schedule = parse_schedule(text, time_zone, now=now)
    out, after = [], now
    for _ in range(count):
        fire = schedule.next_fire(after, after)
        assert fire is not None
        out.append(format_rfc3339(fire))
        after = fire
    return out


# --- accepted, and when they fire -------------------------------------------------------------


def test_every_counts_from_the_publish_time_rounded_to_the_second() -> None:
    assert fires("@every 1s") == [
        "2026-11-23T07:42:46Z",
        "2026-11-23T07:42:47Z",
        "2026-11-23T07:42:48Z",
    ]
    assert fires("@every 1h30m", 1) == ["2026-11-23T09:12:45Z"]


def test_at_fires_once_at_its_time() -> None:
    schedule = parse_schedule("@at 2030-01-01T00:00:00+02:00", now=NOW)
    assert not schedule.repeating
    assert schedule.next_fire(NOW, NOW) == parse_rfc3339("2029-12-31T22:00:00Z")
    fractional = parse_schedule("@at 2030-01-01T00:00:00.25Z", now=NOW)
    assert fractional.at == parse_rfc3339("2030-01-01T00:00:00Z") + 0.25


def test_an_at_time_in_the_past_is_due_at_once() -> None:
    schedule = parse_schedule("@at 2000-01-01T00:00:00Z", now=NOW)
    assert schedule.next_fire(NOW, NOW) < NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*/2 * * * * *", ["2026-11-23T07:42:46Z", "2026-11-23T07:42:48Z"]),
        ("5/15 * * * * *", ["2026-11-23T07:42:50Z", "2026-11-23T07:43:05Z"]),
        ("0 30 9 * * mon-fri", ["2026-11-23T09:30:00Z", "2026-11-24T09:30:00Z"]),
        ("0 0 0 1,15 * 5", ["2026-11-27T00:00:00Z", "2026-12-01T00:00:00Z"]),  # 1st, 15th or Fri
        ("0 0 0 ? * sun", ["2026-11-29T00:00:00Z", "2026-12-06T00:00:00Z"]),
        ("0 0 0 * jan-MAR *", ["2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"]),
        ("0 0 0 29 2 *", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        ("0 0 0 * * mon/2", ["2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z"]),  # mon-sat/2
        ("0,,30 0 12 * * *", ["2026-11-23T12:00:00Z", "2026-11-23T12:00:30Z"]),
        ("@hourly", ["2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z"]),
        ("@daily", ["2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"]),
        ("@midnight", ["2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"]),
        ("@weekly", ["2026-11-29T00:00:00Z", "2026-12-06T00:00:00Z"]),
        ("@monthly", ["2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        ("@yearly", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
        ("@annually", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ],
)
def test_cron_fire_times(text: str, expected: list[str]) -> None:
    assert fires(text, len(expected)) == expected


def test_cron_in_a_time_zone() -> None:
    schedule = parse_schedule("0 0 9 * * *", "America/New_York", now=NOW)
    fire = schedule.next_fire(NOW, NOW)
    assert fire is not None
    assert format_rfc3339(fire) == "2026-11-23T14:00:00Z"
    assert format_rfc3339(fire, schedule.tz) == "2026-11-23T09:00:00-05:00"
    # Across the spring change the wall time stays 09:00 and the UTC time moves.
    spring = parse_rfc3339("2027-03-13T12:00:00Z")
    assert fires("0 0 9 * * *", 2, time_zone="America/New_York", now=spring) == [
        "2027-03-13T14:00:00Z",
        "2027-03-14T13:00:00Z",
    ]


def test_a_repeating_schedule_that_fell_behind_skips_ahead() -> None:
    schedule = parse_schedule("@every 1m", now=NOW)
    much_later = NOW + 3600.2
    assert schedule.next_fire(NOW, much_later) == round(much_later) + 60
    cron = parse_schedule("0 * * * * *", now=NOW)
    assert format_rfc3339(cron.next_fire(NOW, much_later) or 0) == "2026-11-23T08:43:00Z"


def test_header_blanks_around_the_value_do_not_matter() -> None:
    assert fires(" @hourly ", 1) == ["2026-11-23T08:00:00Z"]
    assert parse_schedule("@every 1s ", now=NOW).every == 1.0


# --- refused, with the reason -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("@at nonsense", "expected RFC 3339 with a zone"),
        ("@at 2030-01-01T00:00:00", "expected RFC 3339 with a zone"),
        ("@at 2030-01-01 00:00:00Z", "expected RFC 3339 with a zone"),
        ("@at 2030-02-30T00:00:00Z", "day is out of range"),
        ("@every 500ms", "at least 1s"),
        ("@every -5s", "at least 1s"),
        ("@every 90", "missing unit"),
        ("@every  1s", "invalid duration"),
        ("@every 1y", "unknown unit 'y'"),
        ("* * * * *", "needs 6 fields .* got 5"),
        ("0 0 0 * * * *", "needs 6 fields .* got 7"),
        ("0 0 24 * * *", "hour field '24': 24 is above the maximum 23"),
        ("0 0 0 0 * *", "day-of-month field '0': 0 is below the minimum 1"),
        ("0 0 0 * * 7", "day-of-week field '7': 7 is above the maximum 6"),
        ("0 0 0 L * *", "day-of-month field 'L': 'L' is not a number"),
        ("0 0 0 * * 5#3", "day-of-week field '5#3'"),
        ("0 0 0 * foo *", "month field 'foo': 'foo' is not a number or a name"),
        ("*/0 * * * * *", "the step must be a positive number"),
        ("0 0 0 5-3 * *", "the range starts after it ends"),
        ("0 0 0 1-3-5 * *", "too many hyphens"),
        ("0 0 1,24 * * *", "hour field '24' of '1,24'"),
        ("0 0 0 31 2 *", "no time within 5 years matches it"),
        ("@HOURLY", "use '@at <RFC 3339 time>'"),
        ("@reboot", "use '@at <RFC 3339 time>'"),
    ],
)
def test_a_bad_schedule_names_the_expression_and_the_problem(text: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule, match=reason) as caught:
        parse_schedule(text, now=NOW)
    assert repr(text.strip()) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_time_zone_must_exist_and_suits_only_cron() -> None:
    with pytest.raises(InvalidTimeZone, match="'Mars/Olympus'"):
        parse_schedule("@daily", "Mars/Olympus", now=NOW)
    with pytest.raises(InvalidSchedule, match="applies only to cron"):
        parse_schedule("@every 1s", "Europe/Paris", now=NOW)
    with pytest.raises(InvalidSchedule, match="applies only to cron"):
        parse_schedule("@at 2030-01-01T00:00:00Z", "UTC", now=NOW)


# --- the parts --------------------------------------------------------------------------------


def test_go_durations() -> None:
    assert parse_go_duration("1h30m") == 5400.0
    assert parse_go_duration("1.5s") == 1.5
    assert parse_go_duration(".5s") == 0.5
    assert parse_go_duration("250ms") == 0.25
    assert parse_go_duration("1µs") == pytest.approx(1e-6)
    assert parse_go_duration("-2m") == -120.0
    assert parse_go_duration("0") == 0.0
    for bad in ("", "1", "s", "1d", "1.s.", "+"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_go_duration(bad)


def test_ttls_are_whole_seconds_or_never() -> None:
    assert parse_ttl("30") == 30.0
    assert parse_ttl("30s") == 30.0
    assert parse_ttl("1h") == 3600.0
    assert parse_ttl("1.9s") == 1.0  # truncated, like the server
    assert parse_ttl("never") is None
    assert parse_ttl("Never") is None
    for bad in ("0", "-1", "500ms", "0.5", "abc"):
        with pytest.raises(ValueError, match="invalid TTL"):
            parse_ttl(bad)


def test_rfc3339_formatting() -> None:
    assert format_rfc3339(parse_rfc3339("2026-01-02T03:04:05.9Z")) == "2026-01-02T03:04:05Z"
    assert parse_rfc3339("2026-01-02T03:04:05+01:00") == parse_rfc3339("2026-01-02T02:04:05Z")
    assert parse_rfc3339("2026-01-02T00:00:00+24:00") == parse_rfc3339("2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="zone offset out of range"):
        parse_rfc3339("2026-01-02T00:00:00+25:00")


# --- firing on the memory broker ------------------------------------------------------------


@pytest.fixture
async def broker(namespace: str) -> AsyncIterator[MemoryBroker]:
    async with open_memory_broker(namespace) as opened:
        yield opened


async def tasks(broker: MemoryBroker, **stream: Any) -> None:
    """A work-queue stream ``T``: tasks on ``t.task.>`` (consumer ``workers``), schedules on
    ``t.sched.>``."""
    subjects, queue = ("t.task.>", "t.sched.>"), Retention.WORK_QUEUE
    config = StreamConfig("T", subjects, retention=queue, allow_msg_schedules=True, **stream)
    await broker.ensure_stream(config)
    await broker.ensure_consumer("T", ConsumerConfig("workers", ("t.task.>",)))


async def schedule(
    broker: MemoryBroker, name: str, spec: str, body: bytes = b"", **more: str
) -> None:
    headers = {SCHEDULE: spec, SCHEDULE_TARGET: "t.task.fired", **more}
    await broker.publish(Message(f"t.sched.{name}", body, headers))


async def next_delivery(broker: MemoryBroker) -> Delivery:
    [delivery] = await broker.fetch("T", "workers", 1, expires=10 * 86400.0)
    return delivery


async def test_a_schedule_a_day_ahead_fires_at_its_time_in_milliseconds(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    at = round(broker.now()) + 86400
    real_start = time.monotonic()
    await schedule(broker, "one", f"@at {format_rfc3339(at)}", b"tomorrow", **{"X-Trace": "1"})
    delivery = await next_delivery(broker)
    assert broker.now() == pytest.approx(at, abs=1e-6)
    assert time.monotonic() - real_start < 1.0
    assert delivery.subject == "t.task.fired"
    assert delivery.data == b"tomorrow"
    assert delivery.timestamp == pytest.approx(at, abs=1e-6)
    assert dict(delivery.headers) == {
        "X-Trace": "1",
        "Nats-Scheduler": "t.sched.one",
        "Nats-Schedule-Next": "purge",
    }
    assert await broker.get_last("T", "t.sched.one") is None  # a one-shot schedule is removed


async def test_an_at_schedule_in_the_past_fires_at_once(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    start = trio.current_time()
    await schedule(broker, "late", f"@at {format_rfc3339(broker.now() - 3600)}", b"late")
    assert (await next_delivery(broker)).data == b"late"
    assert trio.current_time() == start


async def test_every_fires_repeatedly_on_whole_seconds(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    published = broker.now()
    await schedule(broker, "tick", "@every 1h", b"tick")
    first = round(published) + 3600  # the server counts from the publish time, rounded
    for n in range(3):
        delivery = await next_delivery(broker)
        assert broker.now() == pytest.approx(first + n * 3600, abs=1e-6)
        assert delivery.headers["Nats-Schedule-Next"] == format_rfc3339(first + (n + 1) * 3600)
        await broker.ack(delivery)
    assert (await broker.get_last("T", "t.sched.tick")) is not None  # the schedule stays


async def test_cron_fires_on_its_ticks(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    await schedule(broker, "cron", "0 */15 * * * *", b"quarter")
    times = []
    for _ in range(4):
        delivery = await next_delivery(broker)
        times.append(broker.now())
        await broker.ack(delivery)
    assert all(t == pytest.approx(round(t / 900) * 900, abs=1e-6) for t in times)
    assert [round(b - a) for a, b in zip(times, times[1:], strict=False)] == [900, 900, 900]


async def test_a_cron_schedule_in_a_time_zone(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    await schedule(
        broker, "tz", "0 0 9 * * *", b"nine", **{"Nats-Schedule-Time-Zone": "Asia/Kolkata"}
    )
    delivery = await next_delivery(broker)
    assert round(broker.now()) % 86400 == 3 * 3600 + 30 * 60  # 09:00 IST is 03:30 UTC
    assert delivery.headers["Nats-Schedule-Next"].endswith("T09:00:00+05:30")


async def test_plain_subscribers_do_not_see_what_a_schedule_publishes(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker)
    async with broker.subscribe("t.>") as messages, aclosing(aiter(messages)) as it:
        await schedule(broker, "one", f"@at {format_rfc3339(broker.now() + 10)}", b"x")
        assert (await anext(it)).subject == "t.sched.one"  # the publish itself
        await next_delivery(broker)  # fired, stored, delivered...
        await broker.publish_core(Message("t.other", b"marker"))
        assert (await anext(it)).subject == "t.other"  # ...but never seen by subscribers


async def test_a_schedule_ttl_and_source(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, allow_msg_ttl=True)
    await broker.publish(Message("t.sched.latest", b"sampled", {"K": "v"}))
    await schedule(
        broker,
        "s",
        "@every 1m",
        b"own",
        **{SCHEDULE_TTL: "5m", "Nats-Schedule-Source": "t.sched.latest"},
    )
    delivery = await next_delivery(broker)
    assert (delivery.data, delivery.headers["K"], delivery.headers[TTL]) == (b"sampled", "v", "5m")


async def test_a_schedule_message_with_a_ttl_stops_the_schedule(
    broker: MemoryBroker, autojump_clock: trio.testing.MockClock
) -> None:
    await tasks(broker, allow_msg_ttl=True)
    await schedule(broker, "short", "@every 10s", b"x", **{TTL: "25"})
    start, fired = trio.current_time(), []
    while got := await broker.fetch("T", "workers", 1, expires=120.0):
        fired.append(trio.current_time() - start)
        await broker.ack(got[0])
    # Fires on whole wall-clock seconds 10 and 20 s after the publish; the schedule message
    # expired 25 s after it, so there is no third.
    assert len(fired) == 2
    assert 9.5 <= fired[0] <= 10.5
    assert fired[1] - fired[0] == pytest.approx(10.0)
    assert broker.statistics().schedules == 0


async def test_a_bad_schedule_is_refused_with_the_reason(broker: MemoryBroker) -> None:
    await tasks(broker)
    with pytest.raises(PublishFailed, match=r"pattern is invalid.*'0 0 24 \* \* \*'.*hour"):
        await schedule(broker, "bad", "0 0 24 * * *")
    with pytest.raises(PublishFailed, match="target is invalid"):
        await broker.publish(Message("t.sched.x", b"", {SCHEDULE: "@hourly"}))
    with pytest.raises(PublishFailed, match="time zone is invalid"):
        await schedule(broker, "tz", "@daily", **{"Nats-Schedule-Time-Zone": "Mars/Olympus"})
    await broker.ensure_stream(StreamConfig("PLAIN", ("plain.>",)))
    with pytest.raises(PublishFailed, match="schedules is disabled"):
        await broker.publish(
            Message("plain.x", b"", {SCHEDULE: "@hourly", SCHEDULE_TARGET: "plain.y"})
        )
