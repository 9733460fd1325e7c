"""The effect report of a campaign (docs/domain.md "Effect report"): per campaign and per content
item, the treated contacts (sent to) against the holdout (kept out, services/outreach/holdout.py)
and what each did within N days of the run: confirmed by WeCom, clicked, replied, advanced a
stage; the uplift in advance rate with its interval and verdict (uplift.py).

A contact counts once per campaign (once per item in the breakdown), by intention to treat:
treated if any run decided to send to it (a delivery row not ``excluded``: pending, sending,
sent, delivered, failed or unknown), from its first such row; held out otherwise, from its
first run that held it out. Counting only the sends that went through would drop the failed
ones from the treated arm while their held-out twins stay in the other, a survivorship bias;
how many sends went through (``delivered``) and how many failed (``failed``) are shown beside.
Both arms are timed by when the run planned them, so their windows are alike. Group deliveries
are not in the report: a group is not a person, and no one is held out of one. Erased people
(``erased:<delivery id>`` rows, services/outreach/erasure.py) are not in it either: each of
their rows would count as a person of its own.

One query (``REPORT``) reads the campaign's rows once (the partial covering index
``deliveries_effect`` of migration 0023) and yields the campaign's and every item's figures
(grouping sets), with the first and last run of each from ``campaign_runs``. Replies exist only
where the platform tells us of one (an OA message): for the other channels ``replied`` is None.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.outreach.uplift import NO_HOLDOUT, uplift

# An item of the campaign none of whose contacts was held out (a series holds contacts out at
# the item they first met), while the campaign has a holdout: compare at the campaign's level.
ITEM_WITHOUT_HOLDOUT = "item_without_holdout"

DEFAULT_DAYS = 14
MAX_DAYS = 90

# One row per (scope, arm): ``whole`` for the campaign, else ``key`` is the content item.
REPORT = """
WITH rows AS MATERIALIZED (
    SELECT d.run_id, d.content_id, d.recipient_id, d.status, d.created_at
    FROM deliveries d
    WHERE d.tenant_id = %(t)s AND d.campaign_id = %(c)s AND d.recipient_kind = 'contact'
      AND (d.status <> 'excluded' OR d.reason = 'held_out')
      AND d.recipient_id NOT LIKE 'erased:%%'
), people AS MATERIALIZED (
    SELECT GROUPING(content_id) = 1 AS whole, content_id AS key, recipient_id AS contact_id,
           bool_or(status <> 'excluded') AS treated,
           COALESCE(min(created_at) FILTER (WHERE status <> 'excluded'),
                    min(created_at)) AS at,
           bool_or(status IN ('sent', 'delivered')) AS delivered,
           bool_or(status = 'delivered') AS confirmed,
           bool_or(status = 'failed') AND NOT bool_or(status IN ('sent', 'delivered')) AS failed
    FROM rows
    GROUP BY GROUPING SETS ((recipient_id), (content_id, recipient_id))
), events AS (
    -- Joins, not a probe per person: the planner hashes the campaign's people against the
    -- tenant's events (or probes the index when they are few), whichever is cheaper.
    SELECT p.whole, p.key, p.contact_id,
           bool_or(e.kind = 'click' AND e.campaign_id = %(c)s
                   AND (p.whole OR e.content_id = p.key)) AS clicked,
           bool_or(e.kind = 'reply') AS replied
    FROM people p JOIN effect_events e ON e.tenant_id = %(t)s AND e.contact_id = p.contact_id
         AND e.at >= p.at AND e.at < p.at + %(window)s
    GROUP BY 1, 2, 3
), advances AS (
    SELECT DISTINCT p.whole, p.key, p.contact_id
    FROM people p JOIN stage_advances s ON s.tenant_id = %(t)s AND s.contact_id = p.contact_id
         AND s.changed_at >= p.at AND s.changed_at < p.at + %(window)s
), outcomes AS (
    SELECT p.whole, p.key, p.treated, p.delivered, p.confirmed, p.failed,
           COALESCE(e.clicked, false) AS clicked, COALESCE(e.replied, false) AS replied,
           a.contact_id IS NOT NULL AS advanced
    FROM people p
    LEFT JOIN events e ON e.whole = p.whole AND e.key IS NOT DISTINCT FROM p.key
         AND e.contact_id = p.contact_id
    LEFT JOIN advances a ON a.whole = p.whole AND a.key IS NOT DISTINCT FROM p.key
         AND a.contact_id = p.contact_id
), arms AS (
    SELECT whole, key, treated, count(*) AS contacts,
           count(*) FILTER (WHERE delivered) AS delivered,
           count(*) FILTER (WHERE failed) AS failed,
           count(*) FILTER (WHERE confirmed) AS confirmed,
           count(*) FILTER (WHERE clicked) AS clicked,
           count(*) FILTER (WHERE replied) AS replied,
           count(*) FILTER (WHERE advanced) AS advanced
    FROM outcomes GROUP BY whole, key, treated
), runs AS (
    SELECT GROUPING(x.content_id) = 1 AS whole, x.content_id AS key,
           min(r.started_at) AS first_run_at, max(r.started_at) AS last_run_at
    FROM (SELECT DISTINCT run_id, content_id FROM rows) x
    JOIN campaign_runs r ON r.run_id = x.run_id
    GROUP BY GROUPING SETS ((), (x.content_id))
)
SELECT a.*, r.first_run_at, r.last_run_at
FROM arms a LEFT JOIN runs r ON r.whole = a.whole AND r.key IS NOT DISTINCT FROM a.key
ORDER BY a.whole DESC, a.key, a.treated DESC
"""

ARM_FIELDS = ("contacts", "confirmed", "clicked", "replied", "advanced")
TREATED_FIELDS = ("delivered", "failed")
# Channels whose replies reach Siyu (an OA message, siyu.signals.v1); a WeCom chat's do not.
REPLY_CHANNELS = frozenset({"oa_template", "oa_mass", "oa_custom"})


def _arm(row: dict[str, Any] | None, fields: tuple[str, ...] = ARM_FIELDS) -> dict[str, int]:
    return {f: int(row[f]) if row else 0 for f in fields}


def _effect(rows: list[dict[str, Any]], channel: str, item: bool, holdout_percent: int):
    """One scope's figures (the campaign's, or one item's) from its rows per arm."""
    arms = {r["treated"]: r for r in rows}
    treated, holdout = _arm(arms.get(True)), _arm(arms.get(False))
    u = uplift(treated["contacts"], treated["advanced"], holdout["contacts"], holdout["advanced"])
    verdict = u.verdict
    if item and verdict == NO_HOLDOUT and holdout_percent:
        verdict = ITEM_WITHOUT_HOLDOUT  # a later item of a series: its holdout is elsewhere
    if channel not in REPLY_CHANNELS:
        treated["replied"] = holdout["replied"] = None
    runs = next((r for r in rows if r["first_run_at"] is not None), None)
    return {
        "treated": {**treated, **_arm(arms.get(True), TREATED_FIELDS), "rate": u.treated_rate},
        "holdout": {**holdout, "rate": u.holdout_rate},
        "uplift": {
            "verdict": verdict,
            "difference": u.difference,
            "low": u.low,
            "high": u.high,
            "confidence": 0.95,
        },
        "first_run_at": runs["first_run_at"] if runs else None,
        "last_run_at": runs["last_run_at"] if runs else None,
    }


def effect(conn, tenant: str, campaign: dict[str, Any], days: int, now: datetime) -> dict:
    """The report of ``campaign`` (its row) with an N-day window: the campaign's figures and
    one entry per content item (its title beside it)."""
    params = {"t": tenant, "c": campaign["campaign_id"], "window": timedelta(days=days)}
    rows = conn.execute(REPORT, params).fetchall()
    whole = [r for r in rows if r["whole"]]
    by_item = [r for r in rows if not r["whole"]]
    keys = list(dict.fromkeys(r["key"] for r in by_item))
    titles = {
        r["content_id"]: r["title"]
        for r in conn.execute(
            "SELECT content_id, title FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
            (tenant, keys),
        ).fetchall()
    }
    channel, share = campaign["channel"], campaign["holdout_percent"]
    return {
        "campaign_id": campaign["campaign_id"],
        "name": campaign["name"],
        "channel": channel,
        "holdout_percent": share,
        "days": days,
        "as_of": now,
        **_effect(whole, channel, False, share),
        "content": [
            {
                "content_id": k,
                "title": titles.get(k),
                **_effect([r for r in by_item if r["key"] == k], channel, True, share),
            }
            for k in keys
        ],
    }
