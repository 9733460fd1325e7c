"""The outreach worker's SQL: planning's reads, the scheduler's on campaigns, the executor's on
runs, deliveries and exposures, the send-result polling's.

Statements only: every function takes the caller's connection, so the caller keeps its
transactions (which statements commit together) and this module keeps the table knowledge. The
HTTP routes keep their own SQL beside their handlers. Modules whose one concern is a family of
statements keep them: audience.py (the audience query builder), erasure.py, tenant_deletion.py,
groups.py (WeCom group sync), catalogue.py, backlog.py (gauges), rate_limits.py (the shared
token bucket), projection.py (the audience upsert), tokens.py (tenant seeding; tokens are
shared/tokens.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import columns

# --- planning (plan.py; the audience's own queries are audience.py) ---------------------------


def tenant_settings(conn, tenant_id: str) -> dict | None:
    """The tenant's stored settings (None: no such tenant, or none stored)."""
    row = conn.execute("SELECT settings FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return row["settings"] if row else None


def tenant_mode(conn, tenant_id: str) -> str | None:
    row = conn.execute("SELECT mode FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return row["mode"] if row else None


def content_items(conn, tenant_id: str, content_ids: list[str]) -> list[dict[str, Any]]:
    """What planning needs of content items: format, promotional, stages, roles, status."""
    return conn.execute(
        "SELECT content_id, format, promotional, stages, roles, status FROM content "
        "WHERE tenant_id = %s AND content_id = ANY(%s)",
        (tenant_id, content_ids),
    ).fetchall()


# --- scheduling (scheduler.py) --------------------------------------------------------------


def scheduled_campaigns(conn) -> list[dict[str, Any]]:
    """Active scheduled campaigns with their tenant's time zone and settings, read unlocked."""
    return conn.execute(
        "SELECT c.tenant_id, c.campaign_id, c.trigger, c.launched_at, c.scheduled_until, "
        "c.updated_at, COALESCE(t.timezone, 'Asia/Shanghai') AS timezone, t.settings "
        "FROM campaigns c "
        "LEFT JOIN tenants t ON t.tenant_id = c.tenant_id "
        "WHERE c.status = 'active' AND c.trigger ? 'schedule' "
        "ORDER BY c.created_at, c.tenant_id, c.campaign_id"  # older campaigns' runs first
    ).fetchall()


def lock_unchanged(conn, c: dict[str, Any]) -> bool:
    """Lock the campaign ``c`` (as scheduled_campaigns read it) unless it changed since or is
    locked (SKIP LOCKED); False then."""
    return (
        conn.execute(
            "SELECT 1 FROM campaigns WHERE tenant_id = %s AND campaign_id = %s "
            "AND status = 'active' AND updated_at = %s "
            "AND scheduled_until IS NOT DISTINCT FROM %s FOR UPDATE SKIP LOCKED",
            (c["tenant_id"], c["campaign_id"], c["updated_at"], c["scheduled_until"]),
        ).fetchone()
        is not None
    )


def end_campaign(conn, tenant_id: str, campaign_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE campaigns SET status = 'ended', updated_at = %s "
        "WHERE tenant_id = %s AND campaign_id = %s",
        (now, tenant_id, campaign_id),
    )


def schedule_run(conn, tenant_id: str, campaign_id: str, due: datetime) -> dict | None:
    """The run of the slot ``due`` (its step: the scheduled runs so far), unique per (campaign,
    due time), and the campaign's ``scheduled_until`` moved to it. None if the run existed."""
    steps = conn.execute(
        "SELECT count(*) AS n FROM campaign_runs "
        "WHERE tenant_id = %s AND campaign_id = %s AND trigger_key LIKE 'at:%%'",
        (tenant_id, campaign_id),
    ).fetchone()["n"]
    row = conn.execute(
        "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, step, due_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING run_id",
        (tenant_id, campaign_id, f"at:{due.isoformat()}", steps, due),
    ).fetchone()
    conn.execute(
        "UPDATE campaigns SET scheduled_until = %s WHERE tenant_id = %s AND campaign_id = %s",
        (due, tenant_id, campaign_id),
    )
    return row


def pause_unchanged(conn, c: dict[str, Any], now: datetime) -> int:
    """Pause the campaign ``c`` unless it changed since or is locked; returns rows paused."""
    return conn.execute(
        "UPDATE campaigns SET status = 'paused', updated_at = %s "
        "WHERE (tenant_id, campaign_id) IN (SELECT tenant_id, campaign_id FROM campaigns "
        "  WHERE tenant_id = %s AND campaign_id = %s AND status = 'active' "
        "  AND updated_at = %s FOR UPDATE SKIP LOCKED)",
        (now, c["tenant_id"], c["campaign_id"], c["updated_at"]),
    ).rowcount


# --- runs ------------------------------------------------------------------------------------


def claim_run(conn, now: datetime, lease_until: datetime) -> dict[str, Any] | None:
    """One due run of an active campaign (or a running one whose worker died), leased."""
    return conn.execute(
        "UPDATE campaign_runs r SET status = 'running', lease_until = %(lease)s, "
        "started_at = COALESCE(r.started_at, %(now)s) "
        "WHERE r.run_id = (SELECT q.run_id FROM campaign_runs q JOIN campaigns c "
        "  ON c.tenant_id = q.tenant_id AND c.campaign_id = q.campaign_id "
        "  WHERE c.status = 'active' AND ((q.status = 'pending' AND q.due_at <= %(now)s) "
        "     OR (q.status = 'running' AND q.lease_until < %(now)s)) "
        "  ORDER BY q.due_at, q.run_id LIMIT 1 FOR UPDATE OF q SKIP LOCKED) "
        "RETURNING r.*",
        {"now": now, "lease": lease_until},
    ).fetchone()


def campaign_and_tenant(conn, tenant_id: str, campaign_id: str):
    """The campaign row and its tenant's (timezone, settings) row (None if the tenant is gone)."""
    campaign = conn.execute(
        "SELECT * FROM campaigns WHERE tenant_id = %s AND campaign_id = %s",
        (tenant_id, campaign_id),
    ).fetchone()
    tenant = conn.execute(
        "SELECT timezone, settings FROM tenants WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    return campaign, tenant


def release_run(conn, run_id: int, at: datetime, why: str) -> None:
    conn.execute(
        "UPDATE campaign_runs SET status = 'pending', due_at = %s, lease_until = NULL, "
        "error = %s WHERE run_id = %s",
        (at, why, run_id),
    )


def mark_planned(conn, run_id: int, now: datetime) -> None:
    conn.execute(
        "UPDATE campaign_runs SET stats = stats || %s WHERE run_id = %s",
        (Jsonb({"planned_at": now.isoformat()}), run_id),
    )


def renew_lease(conn, run_id: int, until: datetime) -> None:
    conn.execute("UPDATE campaign_runs SET lease_until = %s WHERE run_id = %s", (until, run_id))


def finish_run(conn, run_id: int, status: str, error: str | None, at: datetime,
               stats: dict[str, Any]) -> None:  # fmt: skip
    conn.execute(
        "UPDATE campaign_runs SET status = %s, error = %s, finished_at = %s, "
        "lease_until = NULL, stats = stats || %s WHERE run_id = %s",
        (status, error, at, Jsonb(stats), run_id),
    )


def run_stats(conn, run_id: int) -> dict[str, Any]:
    """Counts of a run's deliveries by status and exclusion reason, and the distinct people its
    sent deliveries reached (group members counted once across groups, with or without a
    profile)."""
    by_status = {
        r["status"]: r["count"]
        for r in conn.execute(
            "SELECT status, count(*) FROM deliveries WHERE run_id = %s GROUP BY status",
            (run_id,),
        ).fetchall()
    }
    excluded = {
        r["reason"]: r["count"]
        for r in conn.execute(
            "SELECT reason, count(*) FROM deliveries WHERE run_id = %s AND status = 'excluded' "
            "GROUP BY reason ORDER BY reason",
            (run_id,),
        ).fetchall()
    }
    # People: contacts sent to, and every customer member of the groups sent to (a person in
    # two groups counts once).
    reached = conn.execute(
        "SELECT count(DISTINCT who) AS n FROM ("
        "  SELECT d.recipient_id AS who FROM deliveries d WHERE d.run_id = %(run)s "
        "  AND d.recipient_kind = 'contact' AND d.status IN ('sent', 'delivered') "
        "  UNION ALL "
        "  SELECT 'ext:' || m FROM deliveries d JOIN groups g "
        "  ON g.tenant_id = d.tenant_id AND g.chat_id = d.recipient_id, unnest(g.members) AS m "
        "  WHERE d.run_id = %(run)s AND d.recipient_kind = 'group' "
        "  AND d.status IN ('sent', 'delivered')) people",
        {"run": run_id},
    ).fetchone()["n"]
    return {"by_status": by_status, "excluded": excluded, "people_reached": reached}


def content_payloads(conn, tenant_id: str, content_ids: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT content_id, payloads FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
        (tenant_id, content_ids),
    ).fetchall()
    return {r["content_id"]: r["payloads"] for r in rows}


# --- deliveries ------------------------------------------------------------------------------


def insert_deliveries(conn, run: dict[str, Any], channel: str, rows: list[tuple]) -> None:
    """Planned deliveries: (kind, id, address, sender, content_id, status, reason, reached)
    rows; one per (run, recipient), so a resumed run plans nothing twice."""
    kinds, ids, addresses, senders, contents, statuses, reasons, reached = columns(rows)
    conn.execute(
        "INSERT INTO deliveries (tenant_id, run_id, campaign_id, recipient_kind, recipient_id, "
        "channel, address, sender, content_id, status, reason, reached) "
        "SELECT %s, %s, %s, k, i, %s, a, s, c, st, re, n FROM unnest(%s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[]) "
        "AS u(k, i, a, s, c, st, re, n) "
        "ON CONFLICT (tenant_id, run_id, recipient_kind, recipient_id) DO NOTHING",
        (run["tenant_id"], run["run_id"], run["campaign_id"], channel,
         kinds, ids, addresses, senders, contents, statuses, reasons, reached),
    )  # fmt: skip


def resend_interrupted(conn, run_id: int) -> None:
    """``sending`` deliveries of an idempotent channel: pending again (erased: excluded)."""
    conn.execute(
        "UPDATE deliveries SET status = CASE WHEN recipient_id LIKE 'erased:%%' "
        "THEN 'excluded' ELSE 'pending' END, reason = CASE WHEN recipient_id "
        "LIKE 'erased:%%' THEN 'erased' ELSE reason END "
        "WHERE run_id = %s AND status = 'sending'",
        (run_id,),
    )


def give_up_interrupted(conn, run_id: int) -> int:
    """``sending`` deliveries of a channel without idempotency: ``unknown``; returns how many."""
    return conn.execute(
        "UPDATE deliveries SET status = 'unknown', reason = 'interrupted during the "
        "API call: it may have gone out, so it is not sent again' "
        "WHERE run_id = %s AND status = 'sending'",
        (run_id,),
    ).rowcount


def next_batch(conn, run_id: int, size: int) -> list[dict[str, Any]]:
    """Pending deliveries that go in one API call (same content and sender as the first
    pending one), marked ``sending``; the caller commits before calling the API."""
    # However a delivery of a person erased meanwhile got back to pending, it is excluded,
    # never attempted (its address is gone).
    conn.execute(
        "UPDATE deliveries SET status = 'excluded', reason = 'erased', "
        "next_attempt_at = NULL WHERE run_id = %s AND status = 'pending' "
        "AND recipient_id LIKE 'erased:%%'",
        (run_id,),
    )
    return conn.execute(
        "WITH first AS (SELECT content_id, sender FROM deliveries "
        "  WHERE run_id = %(run)s AND status = 'pending' ORDER BY delivery_id LIMIT 1) "
        "UPDATE deliveries SET status = 'sending', attempts = attempts + 1 "
        "WHERE delivery_id IN (SELECT d.delivery_id FROM deliveries d, first f "
        "  WHERE d.run_id = %(run)s AND d.status = 'pending' "
        "  AND d.content_id IS NOT DISTINCT FROM f.content_id "
        "  AND d.sender IS NOT DISTINCT FROM f.sender "
        "  ORDER BY d.delivery_id LIMIT %(size)s) "
        "RETURNING *",
        {"run": run_id, "size": size},
    ).fetchall()


def back_to_pending(conn, ids: list[int], max_attempts: int, reason: str,
                    errcode: int | None) -> int:  # fmt: skip
    """A batch whose call was refused for now: pending again, or failed when out of attempts
    (erased meanwhile: excluded, not tried again). Returns how many failed for good."""
    failed = conn.execute(
        "UPDATE deliveries SET status = CASE WHEN recipient_id LIKE 'erased:%%' "
        "THEN 'excluded' WHEN attempts >= %s THEN 'failed' ELSE 'pending' END, "
        "reason = CASE WHEN recipient_id LIKE 'erased:%%' THEN 'erased' ELSE %s END, "
        "errcode = %s WHERE delivery_id = ANY(%s) RETURNING status = 'failed' AS failed",
        (max_attempts, reason, errcode, ids),
    ).fetchall()
    return sum(r["failed"] for r in failed)


def record_outcomes(conn, now: datetime, rows: list[tuple]) -> None:
    """(delivery_id, status, errcode, reason, msgid) rows, in one statement."""
    conn.execute(
        "UPDATE deliveries d SET status = u.status, errcode = u.errcode, "
        "reason = u.reason, msgid = u.msgid, "
        "sent_at = CASE WHEN u.status = 'sent' THEN %s ELSE d.sent_at END "
        "FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], %s::text[]) "
        "AS u(id, status, errcode, reason, msgid) WHERE d.delivery_id = u.id",
        (now, *columns(rows)),
    )


def expose(conn, delivery_ids: list[int], at: datetime) -> None:
    """Exposures of sent deliveries: the contact, or the group and each known member."""
    conn.execute(
        "INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at) "
        "SELECT tenant_id, recipient_kind, recipient_id, channel, delivery_id, %s "
        "FROM deliveries WHERE delivery_id = ANY(%s) AND recipient_kind <> 'tag' "
        "ON CONFLICT DO NOTHING",
        (at, delivery_ids),
    )
    conn.execute(
        "INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at) "
        "SELECT DISTINCT d.tenant_id, 'contact', a.contact_id, d.channel, d.delivery_id, %s "
        "FROM deliveries d "
        "JOIN groups g ON g.tenant_id = d.tenant_id AND g.chat_id = d.recipient_id "
        "JOIN audience a ON a.tenant_id = d.tenant_id AND a.external_userids && g.members "
        "WHERE d.delivery_id = ANY(%s) AND d.recipient_kind = 'group' ON CONFLICT DO NOTHING",
        (at, delivery_ids),
    )


def apply_send_results(conn, tenant_id: str, msgid: str, known: list[tuple]) -> list[dict]:
    """(address, status, reason) rows of one message: its ``sent`` deliveries updated, in one
    statement; returns their (channel, status)."""
    return conn.execute(
        "UPDATE deliveries d SET status = u.status, reason = u.reason "
        "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(address, status, reason) "
        "WHERE d.tenant_id = %s AND d.msgid = %s AND d.address = u.address "
        "AND d.status = 'sent' RETURNING d.channel, d.status",
        (*columns(known), tenant_id, msgid),
    ).fetchall()
