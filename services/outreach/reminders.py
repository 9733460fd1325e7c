"""When to remind the members who have not confirmed a group send (pure; docs/platform.md "Group
sends are staff tasks").

WeCom allows at most 3 reminders per message in 24 h (``remind_groupmsg_send``). The first comes
``first_after`` the send, the next ``every`` after the previous one, never more than ``per_day``
in any 24 h, and never in the quiet hours (the campaign's, else the tenant's, in its time zone):
a reminder due in them waits until they end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.outreach.schedule import quiet_until

DAY = timedelta(hours=24)
PLATFORM_PER_DAY = 3  # remind_groupmsg_send: at most 3 per message in 24 h


@dataclass(frozen=True)
class Policy:
    first_after: timedelta
    every: timedelta
    per_day: int

    @classmethod
    def of(cls, settings: dict) -> Policy:
        """From the tenant's outreach settings (``reminders``, services/outreach/model.py)."""
        r = settings["reminders"]
        per_day = min(r["per_day"], PLATFORM_PER_DAY) if r["enabled"] else 0
        return cls(timedelta(minutes=r["first_after_minutes"]),
                   timedelta(minutes=r["every_minutes"]), per_day)  # fmt: skip


def next_reminder(
    sent_at: datetime,
    reminded: Sequence[datetime],
    policy: Policy,
    *,
    quiet: dict[str, str] | None = None,
    tz: str = "Asia/Shanghai",
    now: datetime | None = None,
) -> datetime | None:
    """When the next reminder of a message sent at ``sent_at`` is due, given the reminders
    already sent (or refused); None when reminders are off. One overdue at ``now`` goes out
    now, so the quiet hours are those of that moment (as a run's, services/outreach/runs.py)."""
    if policy.per_day <= 0:
        return None
    done = sorted(reminded)
    due = sent_at + policy.first_after if not done else done[-1] + policy.every
    if len(done) >= policy.per_day:
        # The window: the per_day-th latest reminder must be 24 h old.
        due = max(due, done[-policy.per_day] + DAY)
    at = max(due, now) if now is not None else due
    resume = quiet_until(quiet, tz, at)
    return resume if resume is not None else due
