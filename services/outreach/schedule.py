"""When a scheduled campaign is due, and when quiet hours let a send go out (pure).

Schedules are read in the tenant's time zone (a weekly "Tuesday 10:00" is 10:00 in Shanghai,
whatever the server's zone): croniter for cron, dateutil for RFC 5545 RRULEs.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.rrule import rrulestr


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def next_due(schedule: dict[str, Any], tz: str, after: datetime) -> datetime | None:
    """The first time of ``schedule`` strictly after ``after`` (UTC), or None once it ended."""
    local_zone = zone(schedule.get("timezone") or tz)
    start = schedule.get("start")
    if start and start > after:
        after = start - timedelta(microseconds=1)
    local_after = after.astimezone(local_zone)
    if schedule.get("cron"):
        found = croniter(schedule["cron"], local_after).get_next(datetime)
    else:
        # An RRULE counts from its DTSTART: the schedule's start, else the epoch of the rule.
        anchor = (start or datetime(2000, 1, 1, tzinfo=UTC)).astimezone(local_zone)
        rule = rrulestr(schedule["rrule"], dtstart=anchor.replace(tzinfo=None))
        naive = rule.after(local_after.replace(tzinfo=None), inc=False)
        found = naive.replace(tzinfo=local_zone) if naive else None
    if found is None:
        return None
    found = found.astimezone(UTC)
    end = schedule.get("end")
    if end and found > end:
        return None
    return found


def latest_due(schedule: dict[str, Any], tz: str, after: datetime, now: datetime):
    """The last time of ``schedule`` in (after, now], and how many fell in that span.

    A worker that was down for a while sends the latest missed occurrence once, not every one
    it missed (a burst of a week's content at once is worse than a skipped slot)."""
    latest, missed = None, 0
    cursor = after
    while True:
        due = next_due(schedule, tz, cursor)
        if due is None or due > now:
            return latest, missed
        latest, missed, cursor = due, missed + 1, due
        if missed >= 10000:  # a schedule every minute, years behind: stop counting
            return latest, missed


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
