"""What the account and contact pages show (docs/console.md "Accounts", "Contacts"), read through
the segment service's own query functions (those of GET /api/v1/accounts/<id>, /contacts,
/contacts/<id> and .../timeline), labelled for display (console/labels.py). A subject the
tenant does not have (unknown, merged, erased, another tenant's) is ``None``: the page is 404."""

from __future__ import annotations

from datetime import datetime

from console import labels, reasons
from console.pages import stage_title
from services.segment.api_accounts import account_view
from services.segment.api_contacts import contact_rows, contact_view, timeline_rows
from services.segment.api_people_common import valid_stages
from services.segment.roles import role_coverage
from shared.api.errors import ApiError
from shared.tenants import Tenant
from shared.vocabulary import BUYING_ROLES

CONTACTS_PAGE = 50
TIMELINE_LIMIT = 200  # newest touchpoints on a contact's page


def _found(read):
    try:
        return read()
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _history(rows: list[dict]) -> list[dict]:
    """Stage changes, newest first, labelled."""
    return [
        {
            **h,
            "from_label": labels.stage(h["from_stage"]),
            "to_label": labels.stage(h["to_stage"]),
            "moved_by_label": labels.moved_by(h["moved_by"]),
            "cause_label": reasons.stage_cause(h["cause"]),
        }
        for h in reversed(rows)
    ]


def _flags(flags) -> list[dict]:
    return [
        {
            **f,
            "label": labels.risk_flag(f["flag"]),
            "reason_label": reasons.risk_reason(f["reason"]),
            "since": _instant(f.get("since")),
        }
        for f in flags or []
    ]


def _instant(value) -> datetime | None:
    """A flag's `since`, ISO text in the account's JSON: an instant the page shows in the
    tenant's zone."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else value or None


def account(conn, tenant: Tenant, account_id: str) -> dict | None:
    """An account: its role-coverage grid (who holds each buying role, engaged or missing),
    risk flags with reasons, stage history and members."""
    view = _found(lambda: account_view(conn, tenant.id, account_id))
    if view is None:
        return None
    coverage = role_coverage(r for r in view["roles_engaged"] if r in BUYING_ROLES)
    by_role = view["members_by_role"]
    grid = [
        {
            "role": role,
            "label": labels.buying_role(role),
            "engaged": role in coverage.engaged,
            "members": by_role.get(role, []),
        }
        for role in BUYING_ROLES
    ]
    members = [
        {
            **m,
            "role_label": labels.buying_role(m["role"]) or "—",
            "stage_label": labels.stage(m["stage"]),
        }
        for group in by_role.values()
        for m in group
    ]
    members.sort(key=lambda m: (-m["score"], m["contact_id"]))
    return {
        **view,
        "stage_label": labels.stage(view["stage"]),
        "grid": grid,
        "missing": [labels.buying_role(r) for r in coverage.missing],
        "coverage_text": f"{len(coverage.engaged)}/{len(BUYING_ROLES)}",
        "flags": _flags(view["risk_flags"]),
        "history": _history(view["stage_history"]),
        "member_rows": members,
    }


def contacts(conn, tenant: Tenant, *, q: str | None, after: str | None,
             source: str | None = None) -> dict:  # fmt: skip
    """One page of the tenant's contacts matching ``q`` (name, title, company or an exact id)
    and ``source`` (their first source channel)."""
    rows = contact_rows(conn, tenant.id, limit=CONTACTS_PAGE + 1, after=after, q=q,
                        source_channel=source)  # fmt: skip
    more = len(rows) > CONTACTS_PAGE
    rows = rows[:CONTACTS_PAGE]
    shown = [
        {
            **r,
            "role_label": labels.buying_role(r["role"]) or "—",
            "stage_label": labels.stage(r["stage"]),
        }
        for r in rows
    ]
    return {"rows": shown, "next": rows[-1]["contact_id"] if more and rows else None}


def contact(conn, tenant: Tenant, contact_id: str) -> dict | None:
    """A contact: identities, role, stage, score, segments, account, and a timeline of its
    touchpoints and stage changes, newest first; the stages a staff override may choose."""
    view = _found(lambda: contact_view(conn, tenant.id, contact_id))
    if view is None:
        return None
    events = timeline_rows(conn, tenant.id, contact_id, limit=TIMELINE_LIMIT)
    timeline = [
        {"at": e["occurred_at"], "kind": "event", "event": e, "label": labels.event_type(e["type"])}
        for e in events
    ]
    timeline += [{"at": h["changed_at"], "kind": "stage", "change": h}
                 for h in _history(view["stage_history"])]  # fmt: skip
    timeline.sort(key=lambda t: t["at"], reverse=True)
    account_row = view["account"]
    return {
        **view,
        "role_label": labels.buying_role(view["role"]) or "—",
        "stage_label": labels.stage(view["stage"]),
        "account_row": account_row
        and {**account_row, "stage_label": labels.stage(account_row["stage"])},
        "timeline": timeline,
        "first_channel_label": labels.source_channel(view["source_channel"]["first"]),
        "latest_channel_label": labels.source_channel(view["source_channel"]["latest"]),
        "lost_reason_label": view["lost"] and labels.lost_reason(view["lost"]["reason"]),
        "stages": [{"name": s, "label": stage_title(s)} for s in valid_stages(conn, tenant)],
        "roles": [{"name": r, "label": labels.buying_role(r)} for r in BUYING_ROLES],
    }
