"""When a scheduled campaign is due, and when quiet hours let a send go out (pure).

Schedules are read in the tenant's time zone (a weekly "Tuesday 10:00" is 10:00 in Shanghai,
whatever the server's zone): croniter for cron, dateutil for RFC 5545 RRULEs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from itertools import islice, pairwise, takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.relativedelta import relativedelta
from dateutil.rrule import YEARLY, rrule, rrulestr


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


# Where an RRULE without a start counts from (its DTSTART): the phase of INTERVAL and the default
# hour, minute and weekday come from it, so it stays the same; the expansion moves it forward.
EPOCH = datetime(2000, 1, 1)
REFERENCE = datetime(2026, 1, 1)  # where shortest_gap starts a schedule without a start
# Occurrences one evaluation may look at (and the largest COUNT an RRULE may have): the latest
# slot is looked for backwards from now, a few periods at a time, so even a 5-minute schedule
# looks at a handful; this stops a rule stored before the checks.
MAX_EXAMINED = 20_000
# How far back the latest missed slot is looked for: a slot older than this is never sent late.
LOOKBACK = timedelta(days=400)
# How many missed slots latest_due counts (for the log): beyond, it says "at least this many".
MISSED_COUNTED = 100
_PERIOD = {  # rrule FREQ (YEARLY=0 ... SECONDLY=6) -> the length of one period, if fixed
    2: timedelta(weeks=1),
    3: timedelta(days=1),
    4: timedelta(hours=1),
    5: timedelta(minutes=1),
    6: timedelta(seconds=1),
}


# The RRULE parts a schedule may use. dateutil walks a rule that can never match to the year
# 9999 (FREQ=DAILY;BYSETPOS=3: seconds; FREQ=HOURLY;BYSETPOS=3: minutes), so the parts that
# can make a rule impossible are refused: BYSETPOS, BYYEARDAY, BYWEEKNO, and month days that
# some months lack. With these, every rule that parses fires within a few years.
RRULE_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYHOUR", "BYMINUTE",
               "BYSECOND", "BYMONTH", "BYMONTHDAY")  # fmt: skip


def rrule_error(text: str) -> str | None:
    """Why ``text`` is not an RRULE a schedule may hold (None: it is)."""
    body = text.strip()
    body = body[6:] if body.upper().startswith("RRULE:") else body
    if "\n" in body or "\r" in body:
        return (
            "give one RRULE line, e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=10 (no DTSTART, RDATE, EXDATE)"
        )
    for part in filter(None, body.split(";")):
        name, _, value = part.partition("=")
        name = name.strip().upper()
        if name not in RRULE_PARTS:
            return f"RRULE part {name!r} is not supported; use {', '.join(RRULE_PARTS)}"
        if name == "COUNT" and value.strip().isdigit() and int(value) > MAX_EXAMINED:
            return f"COUNT may be at most {MAX_EXAMINED}; give an UNTIL for a longer series"
        if name == "BYMONTHDAY" and not all(
            v.strip().lstrip("+-").isdigit() and 1 <= abs(int(v)) <= 28 for v in value.split(",")
        ):
            return "BYMONTHDAY takes days every month has: 1 to 28, or -1 to -28 from the end"
    try:
        rrulestr(body, dtstart=REFERENCE)
    except (ValueError, TypeError, OverflowError) as exc:
        return f"not an RRULE: {exc}"
    return None


class ScheduleError(ValueError):
    """A schedule that cannot be evaluated within the bounds (stored before they were checked)."""


def _rule(text: str, anchor: datetime, near: datetime, back: int = 1):
    """The RRULE ``text`` counted from ``anchor`` (naive local), without its COUNT (see
    _count_last), its DTSTART moved forward by whole periods to ``back`` periods before
    ``near``: the same occurrences from there on, without expanding the years between (the
    44 s evaluation of issue 14)."""
    rule = rrulestr(text, dtstart=anchor)
    if not isinstance(rule, rrule):
        return rule
    if rule._count is not None:
        rule = rule.replace(count=None)
    start = rule._dtstart
    period = _PERIOD.get(rule._freq)
    if period is not None:
        step = period * rule._interval
        periods = (near - start) // step - back
        return rule.replace(dtstart=start + step * periods) if periods > 0 else rule
    # Months and years have no fixed length: whole months, from a day every month has (a
    # DTSTART on the 31st would become the 30th and change the rule's default day).
    months = rule._interval * (12 if rule._freq == YEARLY else 1)
    periods = ((near.year - start.year) * 12 + near.month - start.month) // months - back
    if periods <= 0 or start.day > 28:
        return rule
    return rule.replace(dtstart=start + relativedelta(months=months * periods))


@lru_cache(maxsize=1024)
def _count_last(text: str, anchor: datetime) -> datetime | None:
    """The last occurrence of an RRULE with a COUNT (at most MAX_EXAMINED, see rrule_error),
    counted once per process: its slots are those of the rule without COUNT up to this one,
    so a COUNT rule is expanded near ``after``/now like any other."""
    rule = rrulestr(text, dtstart=anchor)
    if not isinstance(rule, rrule) or rule._count is None:
        return None
    times = list(islice(rule, MAX_EXAMINED + 1))
    if len(times) > MAX_EXAMINED:
        raise ScheduleError(f"more than {MAX_EXAMINED} occurrences to look at")
    return times[-1] if times else datetime.min


def _checked_rrule(schedule: dict[str, Any], local_zone: ZoneInfo):
    """(RRULE text, its anchor as naive local time, its COUNT's last slot or None)."""
    error = rrule_error(schedule["rrule"])
    if error:  # stored before the parts were checked: never expanded
        raise ScheduleError(error)
    start = schedule.get("start")
    anchor = start.astimezone(local_zone).replace(tzinfo=None) if start else EPOCH
    return schedule["rrule"], anchor, _count_last(schedule["rrule"], anchor)


def _occurrences(schedule: dict[str, Any], tz: str, after: datetime) -> Iterator[datetime]:
    """The times of ``schedule`` strictly after ``after`` (UTC), in order, within its start
    and end; at most MAX_EXAMINED are looked at (ScheduleError beyond)."""
    local_zone = zone(schedule.get("timezone") or tz)
    start, end = schedule.get("start"), schedule.get("end")
    if start and start > after:
        after = start - timedelta(microseconds=1)
    local_after = after.astimezone(local_zone)
    if schedule.get("cron"):
        cron = croniter(schedule["cron"], local_after)
        found: Iterator = (cron.get_next(datetime) for _ in range(MAX_EXAMINED))
    else:
        text, anchor, last = _checked_rrule(schedule, local_zone)
        rule = _rule(text, anchor, local_after.replace(tzinfo=None))
        times = islice(rule, MAX_EXAMINED)
        if last is not None:
            times = takewhile(lambda t: t <= last, times)
        found = (t.replace(tzinfo=local_zone) for t in times)
    examined = 0
    for local in found:
        examined += 1
        at = local.astimezone(UTC)
        if at <= after:
            continue
        if end and at > end:
            return
        yield at
    if examined >= MAX_EXAMINED:
        raise ScheduleError(f"more than {MAX_EXAMINED} occurrences to look at")


def _backwards(schedule: dict[str, Any], local_zone: ZoneInfo, upper: datetime,
               lower: datetime) -> Iterator[datetime]:  # fmt: skip
    """The local times of ``schedule`` at or before ``upper`` (UTC), latest first, down to
    about ``lower``: croniter's get_prev for cron; an RRULE is expanded a window at a time
    (1, 2, 4... periods before the last one looked at), each window MAX_EXAMINED at most."""
    local_upper = upper.astimezone(local_zone)
    if schedule.get("cron"):
        cron = croniter(schedule["cron"], local_upper + timedelta(seconds=1))
        while True:
            yield cron.get_prev(datetime)
    text, anchor, last = _checked_rrule(schedule, local_zone)
    hi = local_upper.replace(tzinfo=None)
    if last is not None:
        hi = min(hi, last)
    floor = lower.astimezone(local_zone).replace(tzinfo=None)
    back = 1
    while hi >= anchor:
        rule = _rule(text, anchor, hi, back)
        window = list(takewhile(lambda t, hi=hi: t <= hi, islice(rule, MAX_EXAMINED + 1)))
        if len(window) > MAX_EXAMINED:
            raise ScheduleError(f"more than {MAX_EXAMINED} occurrences to look at")
        yield from (t.replace(tzinfo=local_zone) for t in reversed(window))
        if rule._dtstart <= max(floor, anchor):
            return  # looked back far enough, or at the rule's own start
        hi, back = rule._dtstart - timedelta(microseconds=1), back * 2


def next_due(schedule: dict[str, Any], tz: str, after: datetime) -> datetime | None:
    """The first time of ``schedule`` strictly after ``after`` (UTC), or None once it ended."""
    return next(_occurrences(schedule, tz, after), None)


def latest_due(schedule: dict[str, Any], tz: str, after: datetime, now: datetime):
    """The last time of ``schedule`` in (after, now], and how many fell in that span.

    A worker that was down for a while sends the latest missed occurrence once, not every one
    it missed (a burst of a week's content at once is worse than a skipped slot). The latest
    slot is found going backwards from now (never by walking forwards from ``after``, which
    for a campaign paused for months meant more slots than MAX_EXAMINED); slots older than
    LOOKBACK are never sent; ``missed`` counts up to MISSED_COUNTED of the span's slots."""
    local_zone = zone(schedule.get("timezone") or tz)
    start, end = schedule.get("start"), schedule.get("end")
    lower = max(after, now - LOOKBACK)  # exclusive
    if start:
        lower = max(lower, start - timedelta(microseconds=1))
    upper = min(now, end) if end else now  # inclusive
    latest, missed = None, 0
    if upper <= lower:
        return latest, missed
    for local in islice(_backwards(schedule, local_zone, upper, lower), MISSED_COUNTED + 1):
        at = local.astimezone(UTC)
        if at > upper:  # a cron with seconds: get_prev from the next whole second
            continue
        if at <= lower:
            break
        latest, missed = latest or at, missed + 1
        if missed == MISSED_COUNTED:
            break
    return latest, missed


def frequency_error(schedule: dict[str, Any], minimum: timedelta) -> str | None:
    """Why ``schedule`` may not be saved by a tenant whose minimum interval is ``minimum``."""
    try:
        gap = shortest_gap(schedule)
    except ValueError as exc:  # croniter: a date no month has, e.g. "0 0 30 2 *"
        return f"the schedule never fires: {exc}"
    if gap is not None and gap < minimum:
        return (
            f"the schedule fires {_minutes(gap)} apart; this tenant's minimum interval is "
            f"{_minutes(minimum)} (min_schedule_interval_minutes in /settings/outreach)"
        )
    return None


def stored_frequency_error(schedule: dict[str, Any], minimum: timedelta) -> str | None:
    """frequency_error of a stored schedule (JSON), remembered per process: the scheduler
    checks every active campaign on every tick."""
    return _frequency_error(json.dumps(schedule, sort_keys=True, default=str), minimum)


@lru_cache(maxsize=4096)
def _frequency_error(schedule: str, minimum: timedelta) -> str | None:
    return frequency_error(parsed_schedule(json.loads(schedule)), minimum)


def _minutes(span: timedelta) -> str:
    n = span.total_seconds() / 60
    return f"{n:g} minute" + ("" if n == 1 else "s")


def shortest_gap(schedule: dict[str, Any], n: int = 200) -> timedelta | None:
    """The shortest time between two of the first ``n`` occurrences of the schedule's pattern
    (from its start, else a fixed day), None if it has fewer than two: how often it fires at
    its densest. Wall-clock local time: a DST change does not make an hourly rule faster."""
    reference = schedule["start"].replace(tzinfo=None) if schedule.get("start") else REFERENCE
    if schedule.get("cron"):
        cron = croniter(schedule["cron"], reference)
        times = [cron.get_next(datetime) for _ in range(n)]
    else:
        if rrule_error(schedule["rrule"]):
            return None
        times = list(islice(rrulestr(schedule["rrule"], dtstart=reference), n))
    gaps = [b - a for a, b in pairwise(times)]
    return min(gaps) if gaps else None


def parsed_schedule(schedule: dict) -> dict:
    """A stored schedule (JSON) with its start/end as datetimes."""
    out = dict(schedule)
    for key in ("start", "end"):
        if isinstance(out.get(key), str):
            out[key] = datetime.fromisoformat(out[key])
    return out


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(quiet: dict[str, str] | None, tz: str, at: datetime) -> datetime | None:
    """If ``at`` falls in the quiet hours (local ``start``-``end``, possibly over midnight),
    the time they end; else None."""
    if not quiet:
        return None
    local_zone = zone(tz)
    local = at.astimezone(local_zone)
    start, end = _clock(quiet["start"]), _clock(quiet["end"])
    if start == end:
        return None
    now = local.time()
    if start < end:
        inside = start <= now < end
        end_day = local.date()
    else:  # e.g. 21:00-08:00
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=local_zone).astimezone(UTC)
