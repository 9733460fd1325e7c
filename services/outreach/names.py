"""The names in a campaign or content item, checked against what outreach knows of the tenant.

Outreach never reads the segment schema, so it knows a tenant's stages from the lifecycle model
its own ``tenants`` row names and the shared vocabulary of the built-in models; a tenant's own
(custom) model is defined in the segment service only, so its stage names are not checked here.
Buying roles, risk flags and behaviour types are the shared vocabulary; content items are
outreach's own table. Segment ids are not checked: outreach sees memberships, not definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.api import unknown_tenant
from shared.api.names import Unknown, check, check_one
from shared.vocabulary import BEHAVIOURS, RISK_FLAGS, stages_of

MAX_VALID_ITEMS = 50  # content ids listed as valid values: the newest ones


@dataclass(frozen=True)
class TenantNames:
    model: str
    stages: tuple[str, ...] | None  # None: a custom model, whose names outreach does not know


def tenant_names(conn, tenant: str) -> TenantNames:
    row = conn.execute(
        "SELECT lifecycle_model FROM tenants WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    if row is None:
        raise unknown_tenant(tenant)
    return TenantNames(row["lifecycle_model"], stages_of(row["lifecycle_model"]))


def _stage_kind(names: TenantNames) -> str:
    return f"stage of the {names.model} model"


def _filter(path: str, rules: dict, names: TenantNames) -> list[Unknown]:
    found = []
    if names.stages is not None:
        for key in ("stages", "account_stages"):
            found += check(f"{path}.{key}", _stage_kind(names), rules.get(key) or (), names.stages)
    found += check(f"{path}.risk_flags", "risk flag", rules.get("risk_flags") or (), RISK_FLAGS)
    found += check(f"{path}.behaviour", "behaviour", rules.get("behaviour") or (), BEHAVIOURS)
    return found


def campaign_unknowns(body: dict, names: TenantNames) -> list[Unknown]:
    """Unknown stages, risk flags and behaviours in the audience, its exclusions and an event
    trigger (roles, channels and time zones are refused by the schema already)."""
    audience = body.get("audience") or {}
    found = _filter("audience", audience, names)
    found += _filter("audience.exclude", audience.get("exclude") or {}, names)
    event = (body.get("trigger") or {}).get("event") or {}
    if names.stages is not None:
        found += check_one("trigger.event.stage_entered", _stage_kind(names),
                           event.get("stage_entered"), names.stages)  # fmt: skip
    found += check_one("trigger.event.risk_flag", "risk flag", event.get("risk_flag"), RISK_FLAGS)
    return found


def content_unknowns(body: dict, names: TenantNames) -> list[Unknown]:
    """Unknown stages among a content item's stage tags (a series picks items by them)."""
    if names.stages is None:
        return []
    return check("stages", _stage_kind(names), body.get("stages") or (), names.stages)


def content_ref_unknowns(conn, tenant: str, content: dict) -> list[Unknown]:
    """Content items a campaign names that the tenant's library does not hold."""
    refs = (
        [(f"content.series[{i}]", c) for i, c in enumerate(content["series"])]
        if content.get("series")
        else [("content.item", content.get("item"))]
    )
    ids = [c for _, c in refs]
    rows = conn.execute(
        "SELECT content_id FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
        (tenant, ids),
    ).fetchall()
    known = {r["content_id"] for r in rows}
    missing = [(path, c) for path, c in refs if c not in known]
    if not missing:
        return []
    newest = conn.execute(
        "SELECT content_id FROM content WHERE tenant_id = %s AND status = 'active' "
        "ORDER BY created_at DESC, content_id DESC LIMIT %s",
        (tenant, MAX_VALID_ITEMS),
    ).fetchall()
    valid = tuple(r["content_id"] for r in newest)
    return [Unknown(path, "content item", c, valid) for path, c in missing]
