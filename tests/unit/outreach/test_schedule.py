"""Issue 14, finding 1: a schedule is expanded from near its last slot, never from 2000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil.rrule import rrulestr

from services.outreach import schedule as sched
from services.outreach.schedule import EPOCH, latest_due, next_due, rrule_error, shortest_gap

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    "rule",
    ["FREQ=WEEKLY;INTERVAL=2", "FREQ=DAILY;INTERVAL=3", "FREQ=HOURLY;INTERVAL=5", "FREQ=WEEKLY",
     "FREQ=MONTHLY;INTERVAL=5", "FREQ=YEARLY;INTERVAL=3", "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=10"],
)  # fmt: skip
def test_the_same_slots_as_expanding_from_the_epoch(rule):
    """Moving DTSTART forward by whole periods keeps INTERVAL's phase and the default time."""
    full = rrulestr(rule, dtstart=EPOCH)
    for hours in range(0, 3000, 271):
        after = NOW + timedelta(hours=hours)
        expected = full.after(after.astimezone(SHANGHAI).replace(tzinfo=None))
        assert next_due({"rrule": rule}, "Asia/Shanghai", after) == expected.replace(
            tzinfo=SHANGHAI
        ).astimezone(UTC)


def test_a_fast_rule_stored_before_the_check_looks_at_few_occurrences(monkeypatch):
    """FREQ=SECONDLY took ~45 min from 2000; now it starts one period before ``after``."""
    looked: list[int] = []
    real = sched._rule

    def counting(text, anchor, near, back=1):
        rule = real(text, anchor, near, back)
        looked.append(sum(1 for t in rule.between(rule._dtstart, near, inc=True)))
        return rule

    monkeypatch.setattr(sched, "_rule", counting)
    assert next_due({"rrule": "FREQ=SECONDLY"}, "UTC", NOW) == NOW + timedelta(seconds=1)
    assert looked
    assert max(looked) <= 3
    # Years behind, the latest slot is found going back from now, not by walking from 2000.
    looked.clear()
    due, missed = latest_due({"rrule": "FREQ=HOURLY"}, "UTC", datetime(2000, 1, 1, tzinfo=UTC), NOW)
    assert due == NOW
    assert missed == sched.MISSED_COUNTED
    assert sum(looked) < 4 * sched.MISSED_COUNTED


@pytest.mark.parametrize(
    "schedule",
    [{"cron": "*/5 * * * *"}, {"rrule": "FREQ=MINUTELY;INTERVAL=5"},
     {"rrule": "FREQ=DAILY;BYHOUR=9,10;BYMINUTE=0,5,10,15,20,25,30,35,40,45,50,55"},
     {"rrule": "FREQ=MINUTELY;INTERVAL=5;COUNT=20000", "start": NOW - timedelta(days=60)}],
)  # fmt: skip
def test_a_5_minute_schedule_paused_for_months_still_finds_its_latest_slot(schedule):
    """Review of issue 14: LOOKBACK (400 days) of 5-minute slots is more than MAX_EXAMINED, so a
    campaign resumed after 70+ days raised ScheduleError on every tick and never fired again."""
    for days in (71, 400, 5000):
        due, missed = latest_due(schedule, "UTC", NOW - timedelta(days=days), NOW)
        assert due is not None
        assert due <= NOW
        assert NOW - due < timedelta(hours=23)
        assert missed == sched.MISSED_COUNTED
    assert latest_due({"cron": "*/5 * * * *"}, "UTC", NOW - timedelta(days=71), NOW)[0] == NOW


def _brute_latest(schedule, after, now):
    """The oracle: every slot from the rule's start (or 2000), forwards."""
    local = SHANGHAI
    if schedule.get("cron"):
        cron = croniter(schedule["cron"], (now - sched.LOOKBACK).astimezone(local))
        times = iter(lambda: cron.get_next(datetime), None)
    else:
        start = schedule.get("start")
        anchor = start.astimezone(local).replace(tzinfo=None) if start else EPOCH
        times = (t.replace(tzinfo=local) for t in rrulestr(schedule["rrule"], dtstart=anchor))
    latest, lower = None, max(after, now - sched.LOOKBACK)
    for t in times:
        at = t.astimezone(UTC)
        if at > now or (schedule.get("end") and at > schedule["end"]):
            break
        if at > lower and (not schedule.get("start") or at >= schedule["start"]):
            latest = at
    return latest


@pytest.mark.parametrize(
    "schedule",
    [{"rrule": "FREQ=MONTHLY;BYMONTH=1;BYMONTHDAY=15;BYHOUR=9"},  # a slot long before now
     {"rrule": "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,FR;BYHOUR=10"},
     {"rrule": "FREQ=YEARLY;BYMONTH=3,9;BYMONTHDAY=1"},
     {"rrule": "FREQ=DAILY;COUNT=40", "start": NOW - timedelta(days=90)},
     {"rrule": "FREQ=HOURLY;INTERVAL=7", "start": NOW - timedelta(days=9),
      "end": NOW - timedelta(days=2)},
     {"cron": "0 9 15 1 *"}, {"cron": "30 10 * * TUE"}],
)  # fmt: skip
def test_going_backwards_finds_the_same_slot_as_walking_forwards(schedule):
    for after_days, now_hours in ((400, 0), (30, 5), (200, 3000), (1, 777), (3, 4321)):
        now = NOW + timedelta(hours=now_hours)
        after = now - timedelta(days=after_days)
        due, _ = latest_due(schedule, "Asia/Shanghai", after, now)
        assert due == _brute_latest(schedule, after, now), (after_days, now_hours)


def test_a_count_beyond_the_bound_is_refused():
    assert "COUNT may be at most" in rrule_error("FREQ=HOURLY;COUNT=20001")
    assert rrule_error("FREQ=HOURLY;COUNT=20000") is None


def test_a_rule_beyond_the_bound_is_an_error_not_a_stall():
    with pytest.raises(sched.ScheduleError):  # a part refused at save time, stored before
        next_due({"rrule": "FREQ=HOURLY;BYSETPOS=3"}, "UTC", NOW)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ({"rrule": "FREQ=MINUTELY"}, timedelta(minutes=1)),
        ({"rrule": "FREQ=HOURLY"}, timedelta(hours=1)),
        ({"rrule": "FREQ=DAILY;BYHOUR=9,10;BYMINUTE=0,30"}, timedelta(minutes=30)),
        ({"cron": "0 10 * * TUE"}, timedelta(days=7)),
        ({"cron": "*/5 * * * *"}, timedelta(minutes=5)),
        ({"rrule": "FREQ=DAILY;COUNT=1"}, None),
    ],
)
def test_shortest_gap(schedule, gap):
    assert shortest_gap(schedule) == gap


@pytest.mark.parametrize(
    ("rule", "ok"),
    [
        ("FREQ=WEEKLY;BYDAY=TU;BYHOUR=10;BYMINUTE=0;BYSECOND=0", True),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=9", True),
        ("FREQ=HOURLY;BYSETPOS=3", False),  # dateutil walks it for minutes, matching nothing
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", False),
        ("FREQ=YEARLY;BYWEEKNO=1", False),
        ("DTSTART:20200101T000000\nRRULE:FREQ=DAILY", False),
        ("FREQ=FORTNIGHTLY", False),
    ],
)
def test_rrule_parts(rule, ok):
    assert (rrule_error(rule) is None) is ok


def test_a_cron_that_never_fires_is_an_error_to_show_not_an_exception():
    assert sched.frequency_error({"cron": "0 0 30 2 *"}, timedelta(hours=1)).startswith(
        "the schedule never fires"
    )
    assert sched.frequency_error({"cron": "0 10 * * TUE"}, timedelta(hours=1)) is None
