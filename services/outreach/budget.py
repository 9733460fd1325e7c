"""The platform's budget of group-sent messages per customer and customer group (docs/platform.md
"The platform's budget of group sends"): the corp's mode, its periods and limits, and the sends
that consumed it.

WeCom lets each customer and each customer group receive a limited number of group-sent
messages from one corp, counting the corp's and its members' own sends alike: as many per
calendar month as the month has days (``month``, the default), or, as the corp configured it,
7 per week (``week``) or 1 per day (``day``). Periods are the tenant's calendar (its time zone):
the month, the ISO week (Monday to Sunday), the day.

``platform_sends`` (migration 0022) keeps one row per (tenant, recipient, msgid): Siyu's own
wecom_single/wecom_group deliveries once handed over (``record_own``), and sends seen in
``get_groupmsg_list_v2`` once the member actually sent them (services/outreach/budget_sync.py).
A message polled again finds its row and counts once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from services.outreach.schedule import zone
from shared.privacy import identity_hash

MONTH, WEEK, DAY = "month", "week", "day"
MODES = (MONTH, WEEK, DAY)
DEFAULT_MODE = MONTH
CHANNELS = ("wecom_single", "wecom_group")  # the sends the budget counts and limits
REASON = "platform_budget"
KEPT = timedelta(days=40)  # rows older than any period that can still count them


def period(mode: str, at: datetime, tz: str) -> tuple[datetime, datetime]:
    """The period of ``mode`` holding ``at`` in the zone ``tz``: [start, end), zone-aware."""
    local = at.astimezone(zone(tz))
    day = local.date()
    if mode == DAY:
        first, last = day, day + timedelta(days=1)
    elif mode == WEEK:
        first = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        last = first + timedelta(days=7)
    elif mode == MONTH:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget mode {mode!r}")
    return _midnight(first, tz), _midnight(last, tz)


def _midnight(d: date, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone(tz))


def limit(mode: str, at: datetime, tz: str) -> int:
    """How many group-sent messages one recipient may receive in the period holding ``at``."""
    if mode == DAY:
        return 1
    if mode == WEEK:
        return 7
    local = at.astimezone(zone(tz))
    return calendar.monthrange(local.year, local.month)[1]


def mode_of(quotas: dict[str, Any]) -> str:
    return quotas.get("wecom_budget") or DEFAULT_MODE


def legacy_mode(per_day: int | None) -> str:
    """The mode of a tenant's old ``quotas.wecom_customer_per_day``: at most one a day is the
    ``day`` mode (what such a tenant got before); more a day only ``month`` allows."""
    if per_day is None:
        return DEFAULT_MODE
    return DAY if per_day <= 1 else MONTH


# --- the sends that consumed it -----------------------------------------------------------------


def tenant_zone(conn, tenant_id: str) -> str:
    row = conn.execute("SELECT timezone FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return (row and row["timezone"]) or "Asia/Shanghai"


def record_own(conn, delivery_ids: list[int], at: datetime) -> None:
    """Siyu's own sent WeCom group-sends (by delivery), one row per recipient and msgid."""
    conn.execute(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) "
        "SELECT tenant_id, address, msgid, %s, 'siyu' FROM deliveries "
        "WHERE delivery_id = ANY(%s) AND channel = ANY(%s) AND address IS NOT NULL "
        "AND msgid IS NOT NULL ON CONFLICT DO NOTHING",
        (at, delivery_ids, list(CHANNELS)),
    )


def record_seen(conn, tenant_id: str, rows: Iterable[tuple[str, str, datetime, str]]) -> int:
    """(recipient, msgid, sent_at, origin) rows seen on the platform; returns the new ones."""
    rows = list(rows)
    if not rows:
        return 0
    recipients, msgids, times, origins = (list(c) for c in zip(*rows, strict=True))
    return conn.execute(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) "
        "SELECT %s, r, m, t, o FROM unnest(%s::text[], %s::text[], %s::timestamptz[], "
        "%s::text[]) AS u(r, m, t, o) ON CONFLICT DO NOTHING",
        (tenant_id, recipients, msgids, times, origins),
    ).rowcount


def used(conn, tenant_id: str, recipient: str, start: datetime, end: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM platform_sends WHERE tenant_id = %s AND recipient = %s "
        "AND sent_at >= %s AND sent_at < %s",
        (tenant_id, recipient, start, end),
    ).fetchone()
    return row["n"]


def prune(conn, tenant_id: str, now: datetime) -> int:
    """Rows no period can reach any more (the longest, a month, is at most 31 days)."""
    return conn.execute(
        "DELETE FROM platform_sends WHERE tenant_id = %s AND sent_at < %s",
        (tenant_id, now - KEPT),
    ).rowcount


def forget(conn, tenant_id: str, hashes: set[str]) -> None:
    """An erased person's rows (found by keyed hash of the external_userid: the erasure names
    no identity, docs/privacy.md). Siyu may then count the platform's budget short for someone
    added again; the platform itself still refuses past the limit (send result 3)."""
    if not hashes:
        return
    rows = conn.execute(
        "SELECT DISTINCT recipient FROM platform_sends WHERE tenant_id = %s", (tenant_id,)
    ).fetchall()
    gone = [
        r["recipient"]
        for r in rows
        if identity_hash(tenant_id, "external_userid", r["recipient"]) in hashes
    ]
    if gone:
        conn.execute(
            "DELETE FROM platform_sends WHERE tenant_id = %s AND recipient = ANY(%s)",
            (tenant_id, gone),
        )


def forget_sends(conn, tenant_id: str, msgid: str, recipients: list[str]) -> int:
    """Siyu's own rows of a message that never reached these recipients (its task cancelled,
    services/outreach/group_tasks.py): they leave the count. Returns rows deleted."""
    recipients = [r for r in recipients if r]
    if not recipients:
        return 0
    return conn.execute(
        "DELETE FROM platform_sends WHERE tenant_id = %s AND msgid = %s AND origin = 'siyu' "
        "AND recipient = ANY(%s)",
        (tenant_id, msgid, recipients),
    ).rowcount
