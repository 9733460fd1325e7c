"""What the console's pages show, read through the services' own query functions (the same as
GET /api/v1/reports/funnel and GET /api/v1/accounts), labelled for display (console/labels.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from console import labels
from services.segment.api_accounts import account_rows
from services.segment.api_funnel import SUBJECT_OF_MODE, default_period, funnel_report
from services.segment.api_lifecycle import active_model_name, find_document
from services.segment.report_slots import claim_slot
from services.segment.roles import role_coverage
from shared.tenants import Tenant
from shared.vocabulary import BUYING_ROLES

ACCOUNTS_PAGE = 50


def stage_title(name: str, title: str | None = None) -> str:
    """A built-in stage's translated name; a custom model's stage as the model titles it."""
    return labels.stage(name) if name in labels.STAGES else (title or labels.stage(name))


def overview(conn, tenant: Tenant, source: str | None = None) -> dict:
    """The tenant's funnel on its active model over the report's default period (``conn``:
    search_path segment, then outreach); ``source``: only subjects whose first source channel
    it is (docs/domain.md "Channel codes")."""
    name = active_model_name(conn, tenant)
    document, _ = find_document(conn, tenant, name)
    since, until = default_period(tenant)
    claim_slot(conn, tenant.id)  # a report's share of the database, as the API's
    report = funnel_report(
        conn, tenant, name, document, active=True, subject=SUBJECT_OF_MODE[tenant.mode],
        params={"tenant": tenant.id, "account": None, "segment": None, "source": source},
        since=since, until=until,
    )  # fmt: skip
    stages = [{**s, "label": stage_title(s["name"], s["title"])} for s in report["stages"]]
    sides = [{**s, "label": stage_title(s["name"], s["title"])} for s in report["side_stages"]]
    widest = max([s["entered"] for s in stages] + [s["now"] for s in stages] + [1])
    return {
        "model": name,
        "model_title": document.get("title", name),
        "subject": SUBJECT_OF_MODE[tenant.mode],
        "stages": stages,
        "side_stages": sides,
        "widest": widest,
        "since": since,
        "until": until,
        "first": since.astimezone(ZoneInfo(tenant.timezone)).date(),
        "last": (until.astimezone(ZoneInfo(tenant.timezone)) - timedelta(days=1)).date(),
        "zone": tenant.timezone,
        "total": sum(s["entered"] for s in stages),
        "conversions": report["conversions"],
        "weeks": report["weeks"],
    }


def accounts(conn, tenant: Tenant, *, after: str | None = None, source: str | None = None) -> dict:
    """One page of the tenant's accounts, with stage, score, role coverage and risk flags
    (``source``: only those whose first source channel it is)."""
    rows = account_rows(conn, tenant.id, after=after, limit=ACCOUNTS_PAGE + 1,
                        source_channel=source)  # fmt: skip
    more = len(rows) > ACCOUNTS_PAGE
    rows = rows[:ACCOUNTS_PAGE]
    shown = []
    for row in rows:
        coverage = role_coverage(row["roles_engaged"] or [])
        shown.append(
            {
                **row,
                "stage_label": labels.stage(row["stage"]),
                "engaged": [labels.buying_role(r) for r in coverage.engaged],
                "missing": [labels.buying_role(r) for r in coverage.missing],
                "coverage": f"{len(coverage.engaged)}/{len(BUYING_ROLES)}",
                "flags": [labels.risk_flag(f["flag"]) for f in row["risk_flags"] or []],
            }
        )
    return {"rows": shown, "next": rows[-1]["account_id"] if more and rows else None}


def local(moment: datetime | None, zone: str) -> str:
    """An instant as the tenant's wall clock, with its zone's abbreviation."""
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
