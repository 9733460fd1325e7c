"""The effect report of a campaign (docs/domain.md "Effect report"): per campaign and per content
item, the treated contacts (sent to) against the holdout (kept out, services/outreach/holdout.py)
and what each did within N days of the run: confirmed by WeCom, clicked, replied, advanced a
stage; the uplift in advance rate with its interval and verdict (uplift.py).

A contact counts once per campaign (once per item in the breakdown): treated if any run sent to
it, from its first such run; held out otherwise, from its first run that held it out. Both arms
are timed by when the run planned them, so their windows are alike. Group deliveries are not in
the report: a group is not a person, and no one is held out of one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.outreach.uplift import uplift

DEFAULT_DAYS = 14
MAX_DAYS = 90

# One row per (key, arm): key is NULL for the campaign, the content id for the breakdown.
REPORT = """
WITH people AS (
    SELECT CASE WHEN %(by_content)s THEN d.content_id END AS key, d.recipient_id AS contact_id,
           bool_or(d.status <> 'excluded') AS treated,
           COALESCE(min(d.created_at) FILTER (WHERE d.status <> 'excluded'),
                    min(d.created_at)) AS at,
           bool_or(d.status = 'delivered') AS confirmed
    FROM deliveries d
    WHERE d.tenant_id = %(t)s AND d.campaign_id = %(c)s AND d.recipient_kind = 'contact'
      AND (d.status IN ('sent', 'delivered') OR (d.status = 'excluded' AND d.reason = 'held_out'))
    GROUP BY 1, 2
), outcomes AS (
    SELECT p.key, p.treated, p.confirmed, p.at,
        EXISTS (SELECT 1 FROM effect_events e WHERE e.tenant_id = %(t)s
                AND e.contact_id = p.contact_id AND e.kind = 'click' AND e.campaign_id = %(c)s
                AND (p.key IS NULL OR e.content_id = p.key)
                AND e.at >= p.at AND e.at < p.at + %(window)s) AS clicked,
        EXISTS (SELECT 1 FROM effect_events e WHERE e.tenant_id = %(t)s
                AND e.contact_id = p.contact_id AND e.kind = 'reply'
                AND e.at >= p.at AND e.at < p.at + %(window)s) AS replied,
        EXISTS (SELECT 1 FROM stage_advances s WHERE s.tenant_id = %(t)s
                AND s.contact_id = p.contact_id
                AND s.changed_at >= p.at AND s.changed_at < p.at + %(window)s) AS advanced
    FROM people p
)
SELECT key, treated, count(*) AS contacts,
       count(*) FILTER (WHERE confirmed) AS confirmed,
       count(*) FILTER (WHERE clicked) AS clicked,
       count(*) FILTER (WHERE replied) AS replied,
       count(*) FILTER (WHERE advanced) AS advanced,
       min(at) AS first_at, max(at) AS last_at
FROM outcomes GROUP BY key, treated ORDER BY key NULLS FIRST, treated DESC
"""

ARM_FIELDS = ("contacts", "confirmed", "clicked", "replied", "advanced")


def _arm(row: dict[str, Any] | None) -> dict[str, int]:
    return {f: int(row[f]) if row else 0 for f in ARM_FIELDS}


def _effect(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One scope's figures (the campaign's, or one item's) from its rows per arm."""
    arms = {r["treated"]: r for r in rows}
    treated, holdout = _arm(arms.get(True)), _arm(arms.get(False))
    u = uplift(treated["contacts"], treated["advanced"], holdout["contacts"], holdout["advanced"])
    times = [r[k] for r in rows for k in ("first_at", "last_at") if r[k] is not None]
    return {
        "treated": {**treated, "delivered": treated["contacts"], "rate": u.treated_rate},
        "holdout": {**holdout, "rate": u.holdout_rate},
        "uplift": {
            "verdict": u.verdict,
            "difference": u.difference,
            "low": u.low,
            "high": u.high,
            "confidence": 0.95,
        },
        "first_run_at": min(times) if times else None,
        "last_run_at": max(times) if times else None,
    }


def effect(conn, tenant: str, campaign: dict[str, Any], days: int, now: datetime) -> dict:
    """The report of ``campaign`` (its row) with an N-day window: the campaign's figures and
    one entry per content item (its title beside it)."""
    params = {"t": tenant, "c": campaign["campaign_id"], "window": timedelta(days=days)}
    whole = conn.execute(REPORT, {**params, "by_content": False}).fetchall()
    by_item = conn.execute(REPORT, {**params, "by_content": True}).fetchall()
    keys = list(dict.fromkeys(r["key"] for r in by_item))
    titles = {
        r["content_id"]: r["title"]
        for r in conn.execute(
            "SELECT content_id, title FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
            (tenant, keys),
        ).fetchall()
    }
    return {
        "campaign_id": campaign["campaign_id"],
        "name": campaign["name"],
        "channel": campaign["channel"],
        "holdout_percent": campaign["holdout_percent"],
        "days": days,
        "as_of": now,
        **_effect(whole),
        "content": [
            {
                "content_id": k,
                "title": titles.get(k),
                **_effect([r for r in by_item if r["key"] == k]),
            }
            for k in keys
        ],
    }
