"""The names in a campaign or content item, checked against what outreach knows of the tenant.

Outreach never reads the segment schema. It knows a built-in model's stages from the shared
vocabulary and the model its own ``tenants`` row names; a tenant's own (custom) model and its
segments are defined in the segment service, which publishes them per tenant on
``siyu.catalogue.v1`` (outreach's ``catalogue`` table, services/outreach/catalogue.py). Buying
roles, risk flags and behaviour types are the shared vocabulary; content items are outreach's
own table.

Before the tenant's first catalogue arrived (segment not running yet, or a fresh outreach
schema before segment's start-up announcement), a custom model's stage or a segment id cannot be
checked: that is a 400 saying so, not an acceptance. A campaign accepted unchecked is what
issue 13 was about: it matches nobody, silently. Built-in stages never need the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.outreach.catalogue import Catalogue, tenant_catalogue
from shared.api import unknown_tenant
from shared.api.names import Unknown, check, check_one
from shared.vocabulary import BEHAVIOURS, RISK_FLAGS, stages_of

MAX_VALID_ITEMS = 50  # content ids listed as valid values: the newest ones

NO_CATALOGUE = (
    "the segment service has not published this tenant's catalogue (siyu.catalogue.v1) to "
    "outreach yet, so its {what} are not known here. Is `siyu segment consume` running? It "
    "publishes every tenant's catalogue when it starts."
)
CUSTOM_STAGES = "custom model's stages"


@dataclass(frozen=True)
class TenantNames:
    model: str
    stages: tuple[str, ...] | None  # None: a custom model whose catalogue has not arrived
    segments: tuple[str, ...] | None  # None: no catalogue yet


def names_of(model: str, catalogue: Catalogue | None) -> TenantNames:
    """What a tenant's names are, from its model's name and its catalogue (if any).

    A built-in model's stages are the vocabulary's; a custom model's are the catalogue's, under
    the name segment gives (its mode's default when the custom model is missing or invalid:
    profiles then carry the default's stages, so those are the names that match)."""
    segments = catalogue.segments if catalogue is not None else None
    builtin = stages_of(model)
    if builtin is not None:
        return TenantNames(model, builtin, segments)
    if catalogue is None:
        return TenantNames(model, None, None)
    return TenantNames(catalogue.model, catalogue.stages, segments)


def tenant_names(conn, tenant: str) -> TenantNames:
    row = conn.execute(
        "SELECT lifecycle_model FROM tenants WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    if row is None:
        raise unknown_tenant(tenant)
    return names_of(row["lifecycle_model"], tenant_catalogue(conn, tenant))


def _check(field: str, kind: str, values, valid: tuple[str, ...] | None, what: str):
    """``check`` of a list field, or each value refused as unchecked when ``valid`` is not
    known yet (``what``: the names missing, for the message)."""
    if valid is not None:
        return check(field, kind, values, valid)
    why = NO_CATALOGUE.format(what=what)
    return [Unknown(f"{field}[{i}]", kind, v, (), why) for i, v in enumerate(values)]


def _check_one(field: str, kind: str, value, valid: tuple[str, ...] | None, what: str):
    if value is None or valid is not None:
        return check_one(field, kind, value, valid or ())
    return [Unknown(field, kind, value, (), NO_CATALOGUE.format(what=what))]


def _stage_kind(names: TenantNames) -> str:
    return f"stage of the {names.model} model"


def _filter(path: str, rules: dict, names: TenantNames) -> list[Unknown]:
    found = []
    for key in ("stages", "account_stages"):  # accounts are staged with the contacts' model
        found += _check(f"{path}.{key}", _stage_kind(names), rules.get(key) or (), names.stages,
                        CUSTOM_STAGES)  # fmt: skip
    found += _check(f"{path}.segments", "segment", rules.get("segments") or (), names.segments,
                    "segments")  # fmt: skip
    found += check(f"{path}.risk_flags", "risk flag", rules.get("risk_flags") or (), RISK_FLAGS)
    found += check(f"{path}.behaviour", "behaviour", rules.get("behaviour") or (), BEHAVIOURS)
    return found


def campaign_unknowns(body: dict, names: TenantNames) -> list[Unknown]:
    """Unknown stages, segments, risk flags and behaviours in the audience, its exclusions and an
    event trigger (roles, channels and time zones are refused by the schema already)."""
    audience = body.get("audience") or {}
    found = _filter("audience", audience, names)
    found += _filter("audience.exclude", audience.get("exclude") or {}, names)
    event = (body.get("trigger") or {}).get("event") or {}
    found += _check_one("trigger.event.stage_entered", _stage_kind(names),
                        event.get("stage_entered"), names.stages, CUSTOM_STAGES)  # fmt: skip
    found += check_one("trigger.event.risk_flag", "risk flag", event.get("risk_flag"), RISK_FLAGS)
    return found


def content_unknowns(body: dict, names: TenantNames) -> list[Unknown]:
    """Unknown stages among a content item's stage tags (a series picks items by them)."""
    return _check("stages", _stage_kind(names), body.get("stages") or (), names.stages,
                  CUSTOM_STAGES)  # fmt: skip


def settings_unknowns(body: dict, names: TenantNames) -> list[Unknown]:
    """Unknown stages among those the outreach settings treat as evaluating when the model flags
    no stage (``guard_unflagged_model`` as a list)."""
    listed = body.get("guard_unflagged_model")
    if not isinstance(listed, list):
        return []
    return _check("guard_unflagged_model", _stage_kind(names), listed, names.stages, CUSTOM_STAGES)


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
