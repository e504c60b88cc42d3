"""The nats-server message-schedule dialect, as a pure module.

A stream with ``allow_msg_schedules`` treats a message carrying a ``Nats-Schedule`` header as a
schedule: at its fire times the server publishes the message's body to ``Nats-Schedule-Target``
in the same stream. This module reads that header exactly as nats-server (2.12+, measured on
2.15.1) does, so the memory broker fires at the same instants and a client can refuse a bad
schedule *before* publishing it, with an error that names the expression and the problem:

- ``@at <RFC 3339>`` — once, at that time (a time in the past fires at once);
- ``@every <Go duration>`` — repeatedly, at least ``1s`` apart; the first fire is one interval
  after the publish time rounded to the second, and a schedule that fell behind (a server that
  was down) skips ahead instead of firing every missed tick;
- a six-field cron expression ``second minute hour day-of-month month day-of-week``: ``*`` or
  ``?``, numbers, ranges ``a-b``, steps ``/n`` (``a/n`` means ``a-max/n``), lists ``a,b``, and
  three-letter names (any case) for months and days of the week (0 or ``sun`` is Sunday, 7 is
  not allowed); no ``L``, ``W`` or ``#``. When both day fields are restricted a day matches
  either; when one is ``*`` both must match. An expression that matches no time within five
  years is refused;
- the aliases ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
  ``@hourly`` (exact, lower case).

Cron fire times are computed in UTC, or in the IANA zone of the ``Nats-Schedule-Time-Zone``
header, which only cron expressions accept. The cron rules are the server's own (a port of
robfig/cron's parser, checked against nats-server): croniter reads a sixth field as seconds
*last*, and cronsim, though seconds-first, accepts ``L``, ``W``, ``#`` and ``7`` for Sunday, so
either would let a client publish expressions the server refuses.

``Nats-TTL`` and ``Nats-Schedule-TTL`` values are read here too (`parse_ttl`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from typing import Literal

import attrs

ALIASES = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
MIN_INTERVAL = 1.0
"""The shortest ``@every`` interval the server accepts, in seconds."""
_YEARS_AHEAD = 5
_STAR = 1 << 63
_UTC = dt.UTC


class InvalidSchedule(ValueError):
    """A ``Nats-Schedule`` expression the server would refuse."""


class InvalidTimeZone(InvalidSchedule):
    """A ``Nats-Schedule-Time-Zone`` the server would refuse."""


# --- Go durations, RFC 3339 times, TTLs -----------------------------------------------------

_UNITS = dict(ns=1, us=10**3, ms=10**6, s=10**9, m=60 * 10**9, h=3600 * 10**9)
_UNITS.update({"µs": 10**3, "μs": 10**3})  # micro sign and Greek mu, as Go accepts both
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1h30m``, ``1.5s`` or ``250ms`` (``time.ParseDuration``).

    Raises:
        ValueError: not a Go duration (a bare number other than ``0`` needs a unit).
    """
    rest, sign = text, 1
    if rest[:1] in ("-", "+"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    nanos = 0
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # the pattern matches the empty string
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}")
        if unit not in _UNITS:
            hint = "missing unit" if not unit else f"unknown unit {unit!r}"
            raise ValueError(f"invalid duration {text!r}: {hint} (use ns, us, ms, s, m or h)")
        scale = _UNITS[unit]
        nanos += int(whole or "0") * scale
        if fraction:
            nanos += int(fraction) * scale // 10 ** len(fraction)
        rest = rest[match.end() :]
    if nanos > 2**63 - 1:
        raise ValueError(f"invalid duration {text!r}: out of range")
    return sign * nanos / 1e9


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})"
)


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time such as ``2030-01-01T09:30:00+02:00``.

    The zone (``Z`` or an offset) is required, fractional seconds are allowed; this is Go's
    ``time.Parse(time.RFC3339, ...)``.

    Raises:
        ValueError: not an RFC 3339 time.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid time {text!r}: expected RFC 3339 with a zone, e.g. 2030-01-01T09:30:00Z"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = 0
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 24 or minutes > 59:  # Go allows up to +24:00
            raise ValueError(f"invalid time {text!r}: zone offset out of range")
        offset = (hours * 60 + minutes) * 60 * (-1 if zone[0] == "-" else 1)
    try:
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=_UTC)
    except ValueError as exc:
        raise ValueError(f"invalid time {text!r}: {exc}") from None
    seconds = when.timestamp() - offset
    return seconds + (int(fraction[:9]) / 10 ** len(fraction[:9]) if fraction else 0.0)


def format_rfc3339(seconds: float, tz: dt.tzinfo = _UTC) -> str:
    """Go's ``Format(time.RFC3339)`` of an instant in ``tz`` (whole seconds, ``Z`` for UTC)."""
    when = dt.datetime.fromtimestamp(math.floor(seconds), tz)
    text = when.strftime("%Y-%m-%dT%H:%M:%S%z")
    if text.endswith("+0000"):
        return text[:-5] + "Z"
    return f"{text[:-2]}:{text[-2:]}"


def parse_ttl(text: str) -> float | None:
    """A ``Nats-TTL`` value in seconds, or None for ``never``.

    Integer seconds (``30``) or a Go duration of at least one second (``30s``, ``1h``),
    truncated to whole seconds like the server does.

    Raises:
        ValueError: an invalid or sub-second TTL.
    """
    if text.lower() == "never":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        seconds = int(text)
    else:
        try:
            seconds = int(parse_go_duration(text))
        except ValueError:
            seconds = 0
    if seconds < 1:
        raise ValueError(
            f"invalid TTL {text!r}: use whole seconds (30), a duration of at least 1s (30s),"
            " or 'never'"
        )
    return float(seconds)


# --- time zones -----------------------------------------------------------------------------


def load_time_zone(name: str | None) -> dt.tzinfo:
    """The zone Go's ``time.LoadLocation`` gives for ``name`` (empty or ``UTC`` is UTC).

    Raises:
        InvalidTimeZone: an unknown zone.
    """
    if not name or name == "UTC":
        return _UTC
    if name == "Local":
        try:
            with open("/etc/localtime", "rb") as file:
                return zoneinfo.ZoneInfo.from_file(file, key="Local")
        except (OSError, ValueError):
            return _UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidTimeZone(
            f"invalid schedule time zone {name!r}: not an IANA time zone such as"
            " 'Europe/Paris' or 'America/New_York'"
        ) from None


# --- cron -----------------------------------------------------------------------------------


@attrs.frozen
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTHS = {
    m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())
}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)


def _number(text: str, field: _Field) -> int:
    if field.names and text.lower() in field.names:
        return field.names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        names = " or a name such as " + next(iter(field.names)) if field.names else ""
        raise ValueError(f"{text!r} is not a number{names}")
    return int(text)


def _range_bits(expr: str, field: _Field) -> int:
    """One comma-separated part: ``*``, ``?``, ``n``, ``a-b``, each optionally ``/step``."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = field.low, field.high, _STAR
    else:
        start = _number(low_and_high[0], field)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _number(low_and_high[1], field)
        else:
            raise ValueError("too many hyphens")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _number(range_and_step[1], _Field("step", 0, 0))
        if len(low_and_high) == 1:
            end = field.high  # "n/step" means "n-max/step"
        if step > 1:
            extra = 0
    else:
        raise ValueError("too many slashes")
    if start < field.low:
        raise ValueError(f"{start} is below the minimum {field.low}")
    if end > field.high:
        raise ValueError(f"{end} is above the maximum {field.high}")
    if start > end:
        raise ValueError("the range starts after it ends")
    if step <= 0:
        raise ValueError("the step must be a positive number")
    bits = 0
    for value in range(start, end + 1, step):
        bits |= 1 << value
    return bits | extra


@attrs.frozen
class CronSpec:
    """A parsed six-field cron expression: one bit set per field (bit 63: the field was ``*``)."""

    second: int
    minute: int
    hour: int
    dom: int
    month: int
    dow: int

    @classmethod
    def parse(cls, expression: str) -> CronSpec:
        """Raises ValueError naming the field and the problem."""
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(
                f"a cron expression needs 6 fields (second minute hour day-of-month month"
                f" day-of-week), got {len(fields)}"
            )
        bits = []
        for text, field in zip(fields, _FIELDS, strict=True):
            value = 0
            for part in (p for p in text.split(",") if p):
                try:
                    value |= _range_bits(part, field)
                except ValueError as exc:
                    where = repr(text) if part == text else f"{part!r} of {text!r}"
                    raise ValueError(f"{field.name} field {where}: {exc}") from None
            bits.append(value)
        return cls(*bits)

    def _day_matches(self, when: dt.datetime) -> bool:
        dom = bool(1 << when.day & self.dom)
        dow = bool(1 << (when.isoweekday() % 7) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom and dow
        return dom or dow

    def next_after(self, seconds: float, tz: dt.tzinfo) -> float | None:
        """The first fire time strictly after ``seconds`` rounded to the second, or None if
        none within five years (the server's ``parseCron``)."""
        when = dt.datetime.fromtimestamp(math.floor(seconds + 0.5) + 1, tz)
        year_limit = when.year + _YEARS_AHEAD
        truncated = False

        def later(value: dt.datetime, delta: dt.timedelta) -> dt.datetime:
            # Absolute time arithmetic, like Go's Time.Add (wall arithmetic is AddDate).
            return (value.astimezone(_UTC) + delta).astimezone(tz)

        while True:  # each pass is the "WRAP" label of the server's algorithm
            if when.year > year_limit:
                return None
            wrapped = False
            while not (1 << when.month & self.month):
                if not truncated:
                    truncated = True
                    when = dt.datetime(when.year, when.month, 1, tzinfo=tz)
                year, month = divmod(when.year * 12 + when.month, 12)
                when = dt.datetime(year, month + 1, 1, tzinfo=tz)
                if when.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(when):
                if not truncated:
                    truncated = True
                    when = dt.datetime(when.year, when.month, when.day, tzinfo=tz)
                when = dt.datetime.combine(when.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
                if when.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            for unit, bits, delta in (
                ("hour", self.hour, dt.timedelta(hours=1)),
                ("minute", self.minute, dt.timedelta(minutes=1)),
                ("second", self.second, dt.timedelta(seconds=1)),
            ):
                while not (1 << getattr(when, unit) & bits):
                    if not truncated:
                        truncated = True
                        if unit == "hour":
                            when = when.replace(minute=0, second=0, microsecond=0)
                        elif unit == "minute":
                            when = when.replace(second=0, microsecond=0)
                        else:
                            when = when.replace(microsecond=0)
                    when = later(when, delta)
                    if getattr(when, unit) == 0:
                        wrapped = True
                        break
                if wrapped:
                    break
            if not wrapped:
                return when.timestamp()


# --- schedules ------------------------------------------------------------------------------


@attrs.frozen
class Schedule:
    """A parsed ``Nats-Schedule`` (with its optional time zone)."""

    text: str
    kind: Literal["at", "every", "cron"]
    at: float | None = None
    """``@at``: the fire time, seconds since the epoch."""
    every: float | None = None
    """``@every``: the interval in seconds."""
    cron: CronSpec | None = None
    time_zone: str | None = None

    @property
    def repeating(self) -> bool:
        """False for ``@at`` (fires once, then the schedule message is removed)."""
        return self.kind != "at"

    @property
    def tz(self) -> dt.tzinfo:
        return load_time_zone(self.time_zone)

    def next_fire(self, after: float, now: float) -> float | None:
        """When the schedule fires next, counting from ``after`` (the publish time, or the
        previous fire time), at ``now``; None if it never fires again.

        Like the server, a repeating schedule that fell behind ``now`` skips ahead and fires
        once rather than once for every missed tick.
        """
        if self.at is not None:
            return self.at
        if self.every is not None:
            every = math.floor(after + 0.5) + self.every
            return every if every >= now else math.floor(now + 0.5) + self.every
        assert self.cron is not None
        tz = self.tz
        fire = self.cron.next_after(after, tz)
        if fire is not None and fire < now:
            fire = self.cron.next_after(math.floor(now + 0.5), tz)
        return fire


def parse_schedule(text: str, time_zone: str | None = None, *, now: float) -> Schedule:
    """Parse a ``Nats-Schedule`` value (and ``Nats-Schedule-Time-Zone``) as the server does.

    ``now`` (seconds since the epoch) is when the schedule is published: a cron expression
    must have a fire time within five years of it.

    Raises:
        InvalidTimeZone: ``time_zone`` is not a known zone.
        InvalidSchedule: the expression is not valid; the message names it and the problem.
    """
    text = text.strip()  # a header value, whose surrounding blanks NATS drops
    time_zone = (time_zone or "").strip() or None
    if time_zone is not None:
        load_time_zone(time_zone)

    def refuse(problem: str) -> InvalidSchedule:
        return InvalidSchedule(f"invalid schedule {text!r}: {problem}")

    if text.startswith("@at ") or text.startswith("@every "):
        kind: Literal["at", "every"] = "at" if text.startswith("@at ") else "every"
        if time_zone is not None:
            raise refuse(f"a time zone ({time_zone!r}) applies only to cron expressions")
        value = text[len(kind) + 2 :]
        try:
            if kind == "at":
                return Schedule(text, "at", at=parse_rfc3339(value))
            interval = parse_go_duration(value)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        if interval < MIN_INTERVAL:
            raise refuse(f"the interval must be at least 1s, got {value!r}")
        return Schedule(text, "every", every=interval)
    expression = ALIASES.get(text, text)
    if expression.startswith("@"):
        raise refuse(
            "use '@at <RFC 3339 time>', '@every <duration>', a six-field cron expression or"
            f" one of {', '.join(ALIASES)}"
        )
    try:
        spec = CronSpec.parse(expression)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    if spec.next_after(now, load_time_zone(time_zone)) is None:
        raise refuse(f"no time within {_YEARS_AHEAD} years matches it")
    return Schedule(text, "cron", cron=spec, time_zone=time_zone)
