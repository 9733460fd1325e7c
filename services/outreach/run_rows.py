"""A tenant's latest campaign runs across its campaigns, with each campaign's name and channel
(the console's overview, docs/console.md "Overview"); one campaign's runs are GET
/api/v1/campaigns/<id>/runs (api_campaigns.list_runs). Tables unqualified: the caller's
search_path holds the outreach schema."""

from __future__ import annotations


def recent_runs(conn, tenant: str, *, limit: int = 10) -> list[dict]:
    """The tenant's ``limit`` latest runs that have started or are due (pending runs due later
    are schedule, not history), newest first."""
    return conn.execute(
        "SELECT r.run_id, r.campaign_id, c.name AS campaign_name, c.channel, r.trigger_key, "
        "r.subject_kind, r.subject_id, r.step, r.due_at, r.status, r.stats, r.error, "
        "r.created_at, r.started_at, r.finished_at FROM campaign_runs r "
        "JOIN campaigns c ON c.tenant_id = r.tenant_id AND c.campaign_id = r.campaign_id "
        "WHERE r.tenant_id = %(t)s AND (r.status <> 'pending' OR r.due_at <= now()) "
        "ORDER BY COALESCE(r.started_at, r.due_at) DESC, r.run_id DESC LIMIT %(n)s",
        {"t": tenant, "n": limit},
    ).fetchall()
