"""The platform's budget of group-sent messages per customer and customer group (docs/platform.md
"The platform's budget of group sends"): the corp's mode, its periods and limits, and the sends
that consumed it.

WeCom lets each customer and each customer group receive a limited number of group-sent
messages from one corp, counting the corp's and its members' own sends alike: as many per
calendar month as the month has days (``month``, the default), or, as the corp configured it,
7 per week (``week``) or 1 per day (``day``). Periods are WeCom's: China time (Asia/Shanghai,
whatever the tenant's own zone), the month, the ISO week (Monday to Sunday), the day.

``platform_sends`` (migration 0022) keeps one row per (tenant, recipient, msgid): Siyu's own
wecom_single/wecom_group deliveries once handed over (``record_own``), and sends seen in
``get_groupmsg_list_v2`` once the member actually sent them (services/outreach/budget_sync.py).
A message polled again finds its row and counts once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.outreach.schedule import zone
from shared.privacy import identity_hash

MONTH, WEEK, DAY = "month", "week", "day"
MODES = (MONTH, WEEK, DAY)
DEFAULT_MODE = MONTH
CHANNELS = ("wecom_single", "wecom_group")  # the sends the budget counts and limits
REASON = "platform_budget"
ZONE = "Asia/Shanghai"  # WeCom counts its periods in China time, not the tenant's zone
KEPT = timedelta(days=40)  # rows older than any period that can still count them


def period(mode: str, at: datetime, tz: str = ZONE) -> tuple[datetime, datetime]:
    """The period of ``mode`` holding ``at`` in the zone ``tz`` (WeCom's: ZONE): [start, end),
    zone-aware."""
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


def limit(mode: str, at: datetime, tz: str = ZONE) -> int:
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
    """The mode of a tenant's old ``quotas.wecom_customer_per_day``, whatever its value (saved
    or never saved): the default ``month``, WeCom's default rule. The old count said nothing
    about the corp's rule; operators set the mode their corp configured (deploy/README.md
    "Upgrading to the platform's budget (outreach migration 0022)")."""
    return DEFAULT_MODE


# --- the sends that consumed it -----------------------------------------------------------------

# Planning a run of a budgeted channel holds this per-tenant lock (transaction-scoped) so two
# runs planned at once (two replicas) cannot both pass the budget check: the second waits and
# then counts the first's pending deliveries (services/outreach/audience.py BUDGET_USED). Its
# class key (the two-int form) differs from every other advisory lock of Siyu's (the scheduler's
# is one bigint), and it is the plan transaction's first lock, so no lock order can invert.
PLAN_LOCK_CLASS = 0x5159_0003  # (0x5159_0001: migrations, 0x5159_0002: report slots)


def lock_for_plan(conn, tenant_id: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s::int4, hashtext(current_schema() || ':' || %s))",
                 (PLAN_LOCK_CLASS, tenant_id))  # fmt: skip


def record_own(conn, delivery_ids: list[int], at: datetime) -> None:
    """Siyu's own sent WeCom group-sends (by delivery), one row per recipient and msgid, at
    hand-over time; the member's real send time, or the row's removal when the recipient did
    not receive it, follow from the send results (``apply_results``)."""
    conn.execute(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) "
        "SELECT tenant_id, address, msgid, %s, 'siyu' FROM deliveries "
        "WHERE delivery_id = ANY(%s) AND channel = ANY(%s) AND address IS NOT NULL "
        "AND msgid IS NOT NULL ON CONFLICT DO NOTHING",
        (at, delivery_ids, list(CHANNELS)),
    )


def backfill(conn, tenant_id: str, now: datetime) -> int:
    """Siyu's own sent WeCom deliveries of the last 31 days without a row (sent before the
    budget was counted, or while the leader was away): a month's period may count them."""
    return conn.execute(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) "
        "SELECT tenant_id, address, msgid, sent_at, 'siyu' FROM deliveries "
        "WHERE tenant_id = %s AND channel = ANY(%s) AND status IN ('sent', 'delivered') "
        "AND address IS NOT NULL AND msgid IS NOT NULL AND sent_at > %s ON CONFLICT DO NOTHING",
        (tenant_id, list(CHANNELS), now - timedelta(days=31)),
    ).rowcount


def apply_results(conn, tenant_id: str, msgid: str, results: Iterable[dict[str, Any]]) -> None:
    """One of Siyu's own messages' send results (``get_groupmsg_send_result`` rows): a
    recipient that received it (status 1) counts at the member's ``send_time``; one that did
    not (2 not a friend, 3 over the budget) consumed nothing."""
    sent, gone = [], []
    for r in results:
        recipient = r.get("chat_id") or r.get("external_userid")
        if not recipient:
            continue
        if r.get("status") == 1 and r.get("send_time"):
            sent.append((recipient, datetime.fromtimestamp(int(r["send_time"]), tz=UTC)))
        elif r.get("status") in (2, 3):
            gone.append(recipient)
    if sent:
        conn.execute(
            "UPDATE platform_sends p SET sent_at = u.t FROM unnest(%s::text[], "
            "%s::timestamptz[]) AS u(r, t) WHERE p.tenant_id = %s AND p.msgid = %s "
            "AND p.recipient = u.r",
            ([r for r, _ in sent], [t for _, t in sent], tenant_id, msgid),
        )
    if gone:
        conn.execute(
            "DELETE FROM platform_sends WHERE tenant_id = %s AND msgid = %s "
            "AND recipient = ANY(%s)",
            (tenant_id, msgid, gone),
        )


def record_seen(conn, tenant_id: str, rows: Iterable[tuple[str, str, datetime, str]]) -> int:
    """(recipient, msgid, sent_at, origin) rows seen on the platform, sent_at the member's real
    send time (a row met again takes it); returns the new ones. An erased person is not written
    back (``forget``)."""
    erased = {
        r["identity_hash"]
        for r in conn.execute(
            "SELECT identity_hash FROM platform_send_erased WHERE tenant_id = %s", (tenant_id,)
        ).fetchall()
    }
    rows = [
        row for row in rows
        if not erased or identity_hash(tenant_id, "external_userid", row[0]) not in erased
    ]  # fmt: skip
    if not rows:
        return 0
    recipients, msgids, times, origins = (list(c) for c in zip(*rows, strict=True))
    found = conn.execute(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) "
        "SELECT %s, r, m, t, o FROM unnest(%s::text[], %s::text[], %s::timestamptz[], "
        "%s::text[]) AS u(r, m, t, o) ON CONFLICT (tenant_id, recipient, msgid) DO UPDATE "
        "SET sent_at = EXCLUDED.sent_at WHERE platform_sends.sent_at <> EXCLUDED.sent_at "
        "RETURNING xmax = 0 AS inserted",
        (tenant_id, recipients, msgids, times, origins),
    ).fetchall()
    return sum(1 for r in found if r["inserted"])


def used(conn, tenant_id: str, recipient: str, start: datetime, end: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM platform_sends WHERE tenant_id = %s AND recipient = %s "
        "AND sent_at >= %s AND sent_at < %s",
        (tenant_id, recipient, start, end),
    ).fetchone()
    return row["n"]


def prune(conn, tenant_id: str, now: datetime) -> int:
    """Rows no period can reach any more (the longest, a month, is at most 31 days)."""
    conn.execute(
        "DELETE FROM platform_send_msgs WHERE tenant_id = %s AND checked_at < %s",
        (tenant_id, now - KEPT),
    )
    conn.execute(
        "DELETE FROM platform_send_erased WHERE tenant_id = %s AND erased_at < %s",
        (tenant_id, now - KEPT),
    )
    return conn.execute(
        "DELETE FROM platform_sends WHERE tenant_id = %s AND sent_at < %s",
        (tenant_id, now - KEPT),
    ).rowcount


def forget(conn, tenant_id: str, hashes: set[str], now: datetime | None = None) -> None:
    """An erased person's rows (found by keyed hash of the external_userid: the erasure names
    no identity, docs/privacy.md), and the hashes kept so the poll does not write them back.
    Siyu may then count the platform's budget short for someone added again; the platform
    itself still refuses past the limit (send result 3)."""
    if not hashes:
        return
    conn.execute(
        "INSERT INTO platform_send_erased (tenant_id, identity_hash, erased_at) "
        "SELECT %s, h, COALESCE(%s::timestamptz, now()) FROM unnest(%s::text[]) AS h "
        "ON CONFLICT (tenant_id, identity_hash) DO UPDATE SET erased_at = EXCLUDED.erased_at",
        (tenant_id, now, sorted(hashes)),
    )
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
