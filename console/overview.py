"""The overview's sections beside the funnel (docs/console.md "Overview"): the chart data
(stages, conversion between consecutive stages, entries per week over the last 8 weeks), the
accounts whose risk flags need action, the contacts recently lost, the latest stage changes and
the latest campaign runs.
Read through the services' own query functions, labelled for display."""

from __future__ import annotations

from flask_babel import gettext as _

from console import labels, reasons
from services.outreach.run_rows import recent_runs
from services.segment.overview_query import (
    recent_losses,
    recent_stage_changes,
    risk_account_rows,
)
from shared.tenants import Tenant

WEEKS = 8
CHANGES = 20
RISK_ACCOUNTS = 10
RUNS = 10
LOSSES = 10
# The flags that ask ops to act (``new`` and ``growing`` are chances, not risks).
ACTION_FLAGS = ("payment_risk", "churn_risk", "lost", "inactive")
SENT = ("sent", "delivered")


def movement(funnel: dict) -> list[dict]:
    """The last WEEKS weeks of the report (its weeks are dense over a 90-day period, so the
    last 8 are whole but the current one): per week, the entries into each funnel stage."""
    names = [s["name"] for s in funnel["stages"]]
    return [
        {
            "week": w["week"],
            "start": w["start"].date(),
            "entered": [w["entered"].get(n, 0) for n in names],
            "total": sum(w["entered"].get(n, 0) for n in names),
        }
        for w in funnel["weeks"][-WEEKS:]
    ]


def chart(funnel: dict, weeks: list[dict]) -> dict:
    """What console/static/overview.js draws (a JSON block of the page: no inline script)."""
    return {
        "stages": [
            {"name": s["label"], "entered": s["entered"], "now": s["now"]} for s in funnel["stages"]
        ],
        "weeks": [f"{w['start']:%m-%d}" for w in weeks],
        "movement": [
            {"name": s["label"], "data": [w["entered"][i] for w in weeks]}
            for i, s in enumerate(funnel["stages"])
        ],
        "text": {
            "entered": _("Entered"),
            "now": _("Now"),
            "week_of": _("Week of"),
            "funnel": _("Funnel"),
            "movement": _("Stage entries per week"),
        },
    }


def conversions(funnel: dict) -> list[dict]:
    """Conversion between consecutive funnel stages (the report's), labelled."""
    label = {s["name"]: s["label"] for s in funnel["stages"]}
    return [{**c, "from_label": label[c["from"]], "to_label": label[c["to"]]}
            for c in funnel["conversions"]]  # fmt: skip


def risk_accounts(conn, tenant: Tenant) -> list[dict]:
    rows = risk_account_rows(conn, tenant.id, ACTION_FLAGS, limit=RISK_ACCOUNTS)
    return [
        {
            **r,
            "stage_label": labels.stage(r["stage"]),
            "flags": [
                {
                    **f,
                    "label": labels.risk_flag(f["flag"]),
                    "reason_label": reasons.risk_reason(f["reason"]),
                }
                for f in r["risk_flags"] or []
                if f["flag"] in ACTION_FLAGS
            ],
        }
        for r in rows
    ]


def losses(conn, tenant: Tenant) -> list[dict]:
    """The contacts lost most recently (docs/domain.md "Lost customers"), labelled."""
    return [
        {
            **r,
            "reason_label": labels.lost_reason(r["lost"]["reason"]),
            "staff_userid": r["lost"].get("staff_userid"),
        }
        for r in recent_losses(conn, tenant.id, limit=LOSSES)
    ]


def stage_changes(conn, tenant: Tenant, model: str) -> list[dict]:
    return [
        {
            **h,
            "from_label": labels.stage(h["from_stage"]),
            "to_label": labels.stage(h["to_stage"]),
            "moved_by_label": labels.moved_by(h["moved_by"]),
            "cause_label": reasons.stage_cause(h["cause"]),
        }
        for h in recent_stage_changes(conn, tenant.id, model, limit=CHANGES)
    ]


def runs(conn, tenant: Tenant) -> list[dict]:
    shown = []
    for r in recent_runs(conn, tenant.id, limit=RUNS):
        stats = r["stats"] or {}
        by_status = stats.get("by_status") or {}
        excluded = stats.get("excluded") or {}
        shown.append(
            {
                **r,
                "status_label": labels.run_status(r["status"]),
                "at": r["started_at"] or r["due_at"],
                "sent": sum(by_status.get(s, 0) for s in SENT),
                "failed": by_status.get("failed", 0),
                "excluded_total": sum(excluded.values()),
                "exclusions": [
                    {"label": labels.exclusion(code), "count": n}
                    for code, n in sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0]))
                ],
                "reached": stats.get("people_reached"),
            }
        )
    return shown


def sections(conn, tenant: Tenant, funnel: dict) -> dict:
    weeks = movement(funnel)
    return {
        "weeks": weeks,
        "chart": chart(funnel, weeks),
        "conversions": conversions(funnel),
        "risk_accounts": risk_accounts(conn, tenant) if tenant.mode == "b2b" else [],
        "losses": losses(conn, tenant),
        "changes": stage_changes(conn, tenant, funnel["model"]),
        "runs": runs(conn, tenant),
    }
