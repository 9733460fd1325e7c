"""When members are reminded of a group send they have not confirmed (services/outreach/
reminders.py): first after an hour, then every four hours, at most 3 in any 24 h, never in
quiet hours (the tenant's zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.outreach.model import outreach_settings
from services.outreach.reminders import Policy, next_reminder

# Tuesday 1 December 2026, 10:00 in Shanghai (02:00 UTC).
SENT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
DEFAULT = Policy.of(outreach_settings(None))
NIGHT = {"start": "21:00", "end": "08:00"}


@pytest.mark.parametrize(
    ("reminded", "quiet", "now", "due"),
    [
        ([], None, None, SENT + H),  # the first, an hour after the send
        ([SENT + H], None, None, SENT + 5 * H),  # then every 4 hours
        ([SENT + H, SENT + 5 * H], None, None, SENT + 9 * H),
        # Three in 24 h: the fourth waits until the first is 24 h old.
        ([SENT + H, SENT + 5 * H, SENT + 9 * H], None, None, SENT + 25 * H),
        # A refused or late one counts too: the window is any 24 h.
        ([SENT + 2 * H, SENT + 3 * H, SENT + 20 * H], None, None, SENT + 26 * H),
        # Due at 19:00 local: outside 21:00-08:00.
        ([SENT + H, SENT + 5 * H], NIGHT, None, SENT + 9 * H),
        # Due at 23:00 local (a 21:00-08:00 night): waits until 08:00.
        ([SENT + 9 * H], NIGHT, None, datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
        # Quiet 10:30-12:00 local: the first (11:00) waits until 12:00.
        ([], {"start": "10:30", "end": "12:00"}, None, SENT + 2 * H),
        # The clock moved past the due time (19:00) into the night (a worker down, a slow
        # tick): the quiet hours are those of the sending moment, so it waits until 08:00.
        ([SENT + H, SENT + 5 * H], NIGHT, SENT + 11 * H, datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
        # Overdue at a moment outside the quiet hours: due (sent at once).
        ([SENT + H, SENT + 5 * H], NIGHT, SENT + 10 * H, SENT + 9 * H),
        # Overdue from before the night, now past it: due at once, not the next night's end.
        ([SENT + 9 * H], NIGHT, SENT + 23 * H, SENT + 13 * H),
    ],
)
def test_next_reminder(reminded, quiet, now, due):
    assert next_reminder(SENT, reminded, DEFAULT, quiet=quiet, tz="Asia/Shanghai", now=now) == due


@pytest.mark.parametrize(
    ("settings", "reminded", "due"),
    [
        ({"enabled": False}, [], None),
        ({"per_day": 0}, [], None),
        ({"per_day": 1}, [SENT + H], SENT + 25 * H),
        ({"first_after_minutes": 30, "every_minutes": 60}, [SENT + H / 2], SENT + 3 * H / 2),
    ],
)
def test_tenant_settings_shape_the_schedule(settings, reminded, due):
    policy = Policy.of(outreach_settings({"outreach": {"reminders": settings}}))
    assert next_reminder(SENT, reminded, policy) == due


def test_the_platform_limit_caps_the_setting():
    with pytest.raises(Exception, match="per_day"):
        outreach_settings({"outreach": {"reminders": {"per_day": 4}}})
