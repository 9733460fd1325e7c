"""Admin routes of campaigns (``/campaigns``): define, change, launch, pause, archive; their runs.

Operators define, launch and pause campaigns; letting promotional content reach B2B contacts
outside Comparison/Examination (``allow_b2b_promotion``) needs an admin and is audited on its
own. Previews are api_preview.py (on this blueprint), the delivery log api_deliveries.py.

The routes are thin: what they do is the functions below them (``create``, ``transition``,
``campaign_rows``, ``run_rows``), which take the tenant and the actor, so the console's pages
(console/views_campaigns.py) act through the same code and audit log (docs/console.md
"Campaigns").
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from psycopg import sql
from psycopg.types.json import Jsonb

from services.outreach import group_tasks, notices
from services.outreach.model import CHANNEL_PAYLOAD, CampaignInSchema, CampaignPatchSchema
from services.outreach.names import campaign_unknowns, content_ref_unknowns, tenant_names
from services.outreach.plan import tenant_settings
from services.outreach.schedule import frequency_error, parsed_schedule
from shared.api import (
    TENANT,
    Blueprint,
    PageArgs,
    audit,
    conflict,
    connection,
    cursor_key,
    forbidden,
    invalid,
    not_found,
    page,
    paged,
    principal,
    require,
    role_rank,
    tenant_id,
)
from shared.api.names import unknown_names
from shared.tokens import Principal
from shared.vocabulary import CHANNELS

# Who acts: the API's caller (a token), or a console user ("console:<login>", console/users.py).
Actor = Principal | str

campaigns = Blueprint("campaigns", __name__, description="Campaigns, previews and runs")

COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("campaign_id", "name", "channel", "status", "audience", "content",
                         "trigger", "quiet_hours", "allow_b2b_promotion", "holdout_percent",
                         "created_by",
                         "created_at", "updated_at", "launched_at", "scheduled_until"))
)  # fmt: skip
SELECT_ONE = sql.SQL("SELECT {} FROM campaigns WHERE tenant_id = %s AND campaign_id = %s").format(
    COLUMNS
)
STATUSES = ["draft", "active", "paused", "ended", "archived"]


class CampaignSchema(Schema):
    campaign_id = fields.String(required=True)
    name = fields.String(required=True)
    channel = fields.String(required=True, metadata={"enum": list(CHANNELS)})
    status = fields.String(required=True, metadata={"enum": STATUSES})
    audience = fields.Dict(required=True)
    content = fields.Dict(required=True)
    trigger = fields.Dict(required=True)
    quiet_hours = fields.Dict(allow_none=True)
    allow_b2b_promotion = fields.Boolean(required=True)
    holdout_percent = fields.Integer(required=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    launched_at = fields.DateTime(allow_none=True)
    scheduled_until = fields.DateTime(allow_none=True)


class CampaignArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))


class RunSchema(Schema):
    run_id = fields.Integer(required=True)
    trigger_key = fields.String(required=True)
    subject_kind = fields.String(allow_none=True)
    subject_id = fields.String(allow_none=True)
    step = fields.Integer(required=True)
    due_at = fields.DateTime(required=True)
    status = fields.String(required=True)
    stats = fields.Dict(required=True)
    error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    confirmation = fields.List(fields.Dict(), metadata={"description": (
        "Group sends: per staff member, tasks, confirmed, rate and median_minutes to confirm "
        '(docs/platform.md "Group sends are staff tasks")')})  # fmt: skip


def _jsonable(value: Any) -> Any:
    """Validated bodies hold datetimes; stored JSON holds ISO strings."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def campaign_row(conn, tenant: str, campaign_id: str, *, lock: bool = False) -> dict:
    row = conn.execute(
        SELECT_ONE + sql.SQL(" FOR UPDATE") if lock else SELECT_ONE,
        (tenant, campaign_id),
    ).fetchone()
    if row is None:
        raise not_found("campaign", campaign_id)
    return row


def _check_names(conn, tenant: str, body: dict) -> None:
    """400 for every name the tenant does not have: content items, stages, flags, behaviours."""
    found = content_ref_unknowns(conn, tenant, body["content"])
    found += campaign_unknowns(body, tenant_names(conn, tenant))
    error = unknown_names(found)
    if error is not None:
        raise error


def _check_content(conn, tenant: str, body: dict) -> None:
    """400 for names the tenant does not have, content the channel may not carry (an OA
    template message carries notices only: services/outreach/notices.py) and content without
    the channel's payload. The items are read FOR SHARE: an edit of one (api_content.py
    update_item, FOR UPDATE) waits for this launch or change to commit and then sees the
    campaign active, or this waits for the edit and sees the item as edited."""
    _check_names(conn, tenant, body)
    ids = list(body["content"].get("series") or [body["content"]["item"]])
    rows = conn.execute(
        "SELECT content_id, format, promotional, payloads FROM content "
        "WHERE tenant_id = %s AND content_id = ANY(%s) ORDER BY content_id FOR SHARE",
        (tenant, ids),
    ).fetchall()
    found = {r["content_id"]: r for r in rows}
    refused = notices.not_notices(body["channel"], (found[i] for i in dict.fromkeys(ids)))
    if refused:
        message = notices.refusal(refused)
        raise invalid(message, code=notices.CODE, details={"channel": [message]})
    key = CHANNEL_PAYLOAD[body["channel"]]
    lacking = [i for i in ids if key not in found[i]["payloads"]]
    if lacking:
        raise invalid(
            f"content without a {key} payload cannot go out on {body['channel']}",
            details={"content": {"lacking_payload": lacking}},
        )


def _check_schedule(conn, tenant: str, body: dict) -> None:
    """400 for a schedule firing more often than the tenant's minimum interval (issue 14)."""
    schedule = (body.get("trigger") or {}).get("schedule")
    if not schedule:
        return
    minimum = timedelta(minutes=tenant_settings(conn, tenant)["min_schedule_interval_minutes"])
    error = frequency_error(parsed_schedule(schedule), minimum)
    if error:
        raise invalid(error, code="schedule_too_frequent",
                      details={"trigger": {"schedule": [error]}})  # fmt: skip


def _check_override(body: dict, tenant: str, conn, campaign_id: str, who: Actor, role: str,
                    was: bool = False) -> None:  # fmt: skip
    if body.get("allow_b2b_promotion") and not was:
        if role_rank(role) < role_rank("admin"):
            raise forbidden("only an admin may let promotions reach B2B contacts")
        audit(conn, who, tenant, "campaign.promotion_override", campaign_id,
              {"allow_b2b_promotion": True})  # fmt: skip


def _actor_id(who: Actor) -> str:
    return who.token_id if isinstance(who, Principal) else who


def _caller() -> tuple[Actor, str]:
    """The API's caller and its role."""
    return principal(), principal().role


def campaign_rows(conn, tenant: str, *, status: str | None, after: tuple | None,
                  limit: int) -> list[dict]:  # fmt: skip
    """Up to ``limit`` campaigns of the tenant, newest first, after the key ``after``
    (created_at ISO, campaign_id)."""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM campaigns WHERE tenant_id = %(t)s "
            "AND (%(status)s::text IS NULL OR status = %(status)s) "
            "AND (%(after_at)s::text IS NULL "
            "     OR (created_at, campaign_id) < (%(after_at)s::timestamptz, %(after_id)s)) "
            "ORDER BY created_at DESC, campaign_id DESC LIMIT %(n)s"
        ).format(COLUMNS),
        {"t": tenant, "status": status,
         "after_at": after[0] if after else None, "after_id": after[1] if after else None,
         "n": limit},
    ).fetchall()  # fmt: skip


def create(conn, tenant: str, body: dict, who: Actor, role: str) -> dict:
    """Store a validated body (CampaignInSchema) as a draft, audited as ``who``; 400 for names
    the tenant does not have, 403 for a promotion override by less than an admin."""
    campaign_id = "cmp_" + secrets.token_hex(8)
    body = _jsonable(body)
    _check_content(conn, tenant, body)
    _check_schedule(conn, tenant, body)
    _check_override(body, tenant, conn, campaign_id, who, role)
    conn.execute(
        "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, audience, content, "
        "trigger, quiet_hours, allow_b2b_promotion, holdout_percent, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant, campaign_id, body["name"], body["channel"], Jsonb(body["audience"]),
         Jsonb(body["content"]), Jsonb(body["trigger"]),
         Jsonb(body["quiet_hours"]) if body.get("quiet_hours") else None,
         body["allow_b2b_promotion"], body.get("holdout_percent", 0), _actor_id(who)),
    )  # fmt: skip
    audit(conn, who, tenant, "campaign.create", campaign_id, body)
    return campaign_row(conn, tenant, campaign_id)


@campaigns.route("/campaigns", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.arguments(CampaignArgs, location="query")
@campaigns.response(200, paged(CampaignSchema))
def list_campaigns(args: dict):
    """Campaigns, newest first (``?status=``)"""
    after = cursor_key(args["cursor"], str, str)
    with connection() as conn:
        rows = campaign_rows(conn, tenant_id(), status=args.get("status"), after=after,
                             limit=args["limit"] + 1)  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["campaign_id"]])


@campaigns.route("/campaigns", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.arguments(CampaignInSchema)
@campaigns.response(201, CampaignSchema)
def create_campaign(body: dict):
    """Define a campaign (a draft: nothing is sent until it is launched)"""
    with connection() as conn:
        return create(conn, tenant_id(), body, *_caller())


@campaigns.route("/campaigns/<campaign_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(404, description="No such campaign")
def get_campaign(campaign_id: str):
    """One campaign"""
    with connection() as conn:
        return campaign_row(conn, tenant_id(), campaign_id)


def _check_holdout_fixed(conn, tenant: str, campaign_id: str, current: dict, body: dict) -> None:
    """The holdout share is fixed once the campaign has run (docs/domain.md "Effect report"):
    changing it would mix contacts drawn at two shares in one comparison."""
    if "holdout_percent" not in body or body["holdout_percent"] == current["holdout_percent"]:
        return
    ran = conn.execute(
        "SELECT 1 FROM campaign_runs WHERE tenant_id = %s AND campaign_id = %s LIMIT 1",
        (tenant, campaign_id),
    ).fetchone()
    if ran:
        raise conflict(
            "the holdout share cannot change once the campaign has run: the effect report "
            "compares against the contacts held out at the share it ran with; create a new "
            "campaign for another share"
        )


@campaigns.route("/campaigns/<campaign_id>", methods=["PATCH"])
@require("operator", scope=TENANT)
@campaigns.arguments(CampaignPatchSchema)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(
    409,
    description="The campaign is active (pause it first), or a holdout share change after "
    "it has run",
)
def update_campaign(body: dict, campaign_id: str):
    """Change a draft or paused campaign (the result is validated as a whole)"""
    tenant = tenant_id()
    with connection() as conn:
        current = campaign_row(conn, tenant, campaign_id, lock=True)
        if current["status"] not in ("draft", "paused"):
            raise conflict(f"a campaign that is {current['status']} cannot be changed; pause it")
        _check_holdout_fixed(conn, tenant, campaign_id, current, body)
        fields_ = ("name", "channel", "audience", "content", "trigger", "quiet_hours",
                   "allow_b2b_promotion", "holdout_percent")  # fmt: skip
        merged = {k: current[k] for k in fields_ if current[k] is not None}
        merged.update(_jsonable(body))
        try:
            merged = _jsonable(CampaignInSchema().load(merged))
        except ValidationError as exc:
            raise invalid("the changed campaign is not valid", details=exc.messages) from None
        _check_content(conn, tenant, merged)
        _check_schedule(conn, tenant, merged)
        _check_override(merged, tenant, conn, campaign_id, *_caller(),
                        was=current["allow_b2b_promotion"])  # fmt: skip
        conn.execute(
            "UPDATE campaigns SET name = %s, channel = %s, audience = %s, content = %s, "
            "trigger = %s, quiet_hours = %s, allow_b2b_promotion = %s, holdout_percent = %s, "
            "updated_at = now() "
            "WHERE tenant_id = %s AND campaign_id = %s",
            (merged["name"], merged["channel"], Jsonb(merged["audience"]),
             Jsonb(merged["content"]), Jsonb(merged["trigger"]),
             Jsonb(merged["quiet_hours"]) if merged.get("quiet_hours") else None,
             merged["allow_b2b_promotion"], merged.get("holdout_percent", 0), tenant,
             campaign_id),
        )  # fmt: skip
        audit(conn, principal(), tenant, "campaign.update", campaign_id, _jsonable(body))
        return campaign_row(conn, tenant, campaign_id)


# What each action does: the status it moves to, from which.
TRANSITIONS = {
    "launch": ("active", ("draft", "paused")),
    "pause": ("paused", ("active",)),
    "archive": ("archived", ("draft", "active", "paused", "ended")),
}
PAST = {"launch": "launched", "pause": "paused", "archive": "archived"}


def transition(conn, tenant: str, campaign_id: str, action: str, who: Actor) -> dict:
    """Launch, pause or archive (TRANSITIONS), audited as ``who``; 404 for a campaign the
    tenant does not have, 409 from a status the action does not apply to."""
    to, allowed = TRANSITIONS[action]
    current = campaign_row(conn, tenant, campaign_id, lock=True)
    if current["status"] not in allowed:
        raise conflict(f"a campaign that is {current['status']} cannot be {PAST[action]}")
    if to == "active":
        _check_content(conn, tenant, current)
        _check_schedule(conn, tenant, current)
    conn.execute(
        "UPDATE campaigns SET status = %s, updated_at = now(), "
        "launched_at = CASE WHEN %s = 'active' THEN COALESCE(launched_at, now()) "
        "ELSE launched_at END, "
        # The schedule starts from now: slots missed while paused are not sent on resume.
        "scheduled_until = CASE WHEN %s = 'active' THEN now() ELSE scheduled_until END "
        "WHERE tenant_id = %s AND campaign_id = %s",
        (to, to, to, tenant, campaign_id),
    )
    if to in ("paused", "archived"):  # the worker cancels what members have not sent yet
        group_tasks.request_cancel(conn, tenant, campaign_id, f"campaign {to}")
    if to == "archived":
        conn.execute(
            "UPDATE campaign_runs SET status = 'cancelled', finished_at = now() "
            "WHERE tenant_id = %s AND campaign_id = %s AND status = 'pending'",
            (tenant, campaign_id),
        )
    audit(conn, who, tenant, f"campaign.{action}", campaign_id,
          {"from": current["status"], "to": to})  # fmt: skip
    return campaign_row(conn, tenant, campaign_id)


def _transition(campaign_id: str, action: str) -> dict:
    with connection() as conn:
        return transition(conn, tenant_id(), campaign_id, action, principal())


@campaigns.route("/campaigns/<campaign_id>/launch", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Not a draft or paused campaign")
def launch_campaign(campaign_id: str):
    """Launch (or resume) a campaign: its schedule or trigger starts from now (audited)"""
    return _transition(campaign_id, "launch")


@campaigns.route("/campaigns/<campaign_id>/pause", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Not an active campaign")
def pause_campaign(campaign_id: str):
    """Pause: no run starts until it is launched again (runs due meanwhile wait)"""
    return _transition(campaign_id, "pause")


@campaigns.route("/campaigns/<campaign_id>", methods=["DELETE"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Archived already")
def archive_campaign(campaign_id: str):
    """Archive: pending runs are cancelled; runs and deliveries stay in the log"""
    return _transition(campaign_id, "archive")


@campaigns.route("/campaigns/<campaign_id>/runs", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.arguments(PageArgs, location="query")
@campaigns.response(200, paged(RunSchema))
def list_runs(args: dict, campaign_id: str):
    """A campaign's runs, newest first, with their stats (by status, exclusions, reach)"""
    tenant = tenant_id()
    after = cursor_key(args["cursor"], int)
    with connection() as conn:
        campaign_row(conn, tenant, campaign_id)
        rows = run_rows(conn, tenant, campaign_id, after=after[0] if after else None,
                        limit=args["limit"] + 1)  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["run_id"]])


def run_rows(conn, tenant: str, campaign_id: str, *, after: int | None, limit: int) -> list[dict]:
    """Up to ``limit`` runs of a campaign, newest first, older than run ``after``, each with
    its staff's confirmation of group sends."""
    rows = conn.execute(
        "SELECT run_id, trigger_key, subject_kind, subject_id, step, due_at, status, stats, "
        "error, created_at, started_at, finished_at FROM campaign_runs "
        "WHERE tenant_id = %(t)s AND campaign_id = %(c)s "
        "AND (%(after)s::bigint IS NULL OR run_id < %(after)s) "
        "ORDER BY run_id DESC LIMIT %(n)s",
        {"t": tenant, "c": campaign_id, "after": after, "n": limit},
    ).fetchall()
    confirmation = group_tasks.confirmation(conn, tenant, [r["run_id"] for r in rows])
    return [{**r, "confirmation": confirmation.get(r["run_id"], [])} for r in rows]
