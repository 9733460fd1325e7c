"""Issue 14, finding 1: a schedule is expanded from near its last slot, never from 2000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
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

    def counting(text, anchor, near):
        rule = real(text, anchor, near)
        looked.append(sum(1 for t in rule.between(rule._dtstart, near, inc=True)))
        return rule

    monkeypatch.setattr(sched, "_rule", counting)
    assert next_due({"rrule": "FREQ=SECONDLY"}, "UTC", NOW) == NOW + timedelta(seconds=1)
    assert looked and max(looked) <= 3
    # Years behind, the latest slot is found within the look-back, not by walking from 2000.
    due, missed = latest_due({"rrule": "FREQ=HOURLY"}, "UTC", datetime(2000, 1, 1, tzinfo=UTC), NOW)
    assert due == NOW and missed == sched.LOOKBACK // timedelta(hours=1)


def test_a_rule_beyond_the_bound_is_an_error_not_a_stall():
    with pytest.raises(sched.ScheduleError):
        latest_due({"cron": "* * * * *"}, "UTC", NOW - timedelta(days=30), NOW)
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
