"""The effect report of a campaign (``GET /campaigns/<id>/effect?days=N``, docs/domain.md
"Effect report"): treated contacts against the holdout, per campaign and per content item, with
the uplift in stage advance rate and its 95 % interval. ``campaign_effect`` is what the console's
page and CSV read too (console/effect.py). Times are in the tenant's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, validate

from services.outreach.api_campaigns import campaign_row
from services.outreach.effect_report import DEFAULT_DAYS, MAX_DAYS, effect
from services.outreach.schedule import zone
from shared.api import TENANT, Blueprint, connection, require, tenant_id

effects = Blueprint("effect", __name__, description="What moved: a campaign's effect report")

VERDICTS = [
    "no_holdout",
    "item_without_holdout",
    "too_small",
    "uplift",
    "negative",
    "no_difference",
]


class EffectArgs(Schema):
    days = fields.Integer(
        load_default=DEFAULT_DAYS, validate=validate.Range(min=1, max=MAX_DAYS),
        metadata={"description": "Outcomes within this many days after the run (1-90)"},
    )  # fmt: skip


class ArmSchema(Schema):
    contacts = fields.Integer(required=True)
    confirmed = fields.Integer(required=True, metadata={"description": "WeCom reported delivered"})
    clicked = fields.Integer(required=True)
    replied = fields.Integer(
        required=True, allow_none=True,
        metadata={"description": "None where the channel brings no reply back (WeCom)"},
    )  # fmt: skip
    advanced = fields.Integer(required=True, metadata={"description": "Advanced a stage"})
    rate = fields.Float(allow_none=True, metadata={"description": "advanced / contacts"})


class TreatedSchema(ArmSchema):
    """Every contact a run decided to send to (intention to treat), however the send went."""

    delivered = fields.Integer(
        required=True, metadata={"description": "Contacts the platform accepted a send to"}
    )
    failed = fields.Integer(required=True, metadata={"description": "Contacts whose send failed"})


class UpliftSchema(Schema):
    verdict = fields.String(required=True, metadata={"enum": VERDICTS})
    difference = fields.Float(allow_none=True, metadata={"description": "Treated - holdout rate"})
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    confidence = fields.Float(required=True)


class _Effect(Schema):
    treated = fields.Nested(TreatedSchema, required=True)
    holdout = fields.Nested(ArmSchema, required=True)
    uplift = fields.Nested(UpliftSchema, required=True)
    first_run_at = fields.DateTime(allow_none=True)
    last_run_at = fields.DateTime(allow_none=True)


class ContentEffectSchema(_Effect):
    content_id = fields.String(required=True)
    title = fields.String(allow_none=True)


class EffectSchema(_Effect):
    campaign_id = fields.String(required=True)
    name = fields.String(required=True)
    channel = fields.String(required=True)
    holdout_percent = fields.Integer(required=True)
    days = fields.Integer(required=True)
    as_of = fields.DateTime(required=True)
    timezone = fields.String(required=True)
    content = fields.List(fields.Nested(ContentEffectSchema), required=True)


def _local(value: Any, tz) -> Any:
    """Every time of the report in the tenant's zone (the same instants)."""
    if isinstance(value, dict):
        return {k: _local(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [_local(v, tz) for v in value]
    return value.astimezone(tz) if isinstance(value, datetime) else value


def campaign_effect(conn, tenant: str, campaign_id: str, days: int, now: datetime | None = None):
    """The report of the tenant's campaign (404 for one it does not have), times in its zone."""
    campaign = campaign_row(conn, tenant, campaign_id)
    row = conn.execute("SELECT timezone FROM tenants WHERE tenant_id = %s", (tenant,)).fetchone()
    name = (row and row["timezone"]) or "Asia/Shanghai"
    report = effect(conn, tenant, campaign, days, now or datetime.now(UTC))
    return {**_local(report, zone(name)), "timezone": name}


@effects.route("/campaigns/<campaign_id>/effect", methods=["GET"])
@require("viewer", scope=TENANT)
@effects.arguments(EffectArgs, location="query")
@effects.response(200, EffectSchema)
@effects.alt_response(404, description="No such campaign")
def get_effect(args: dict, campaign_id: str):
    """What moved: treated vs holdout, per campaign and per content item, with the uplift in
    stage advance rate (95 % interval) or why the sample is too small"""
    with connection() as conn:
        return campaign_effect(conn, tenant_id(), campaign_id, args["days"])
