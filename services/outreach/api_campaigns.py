"""Admin routes of campaigns (``/campaigns``), their preview and runs, and the delivery log.

Operators define, launch and pause campaigns; letting promotional content reach B2B contacts
outside Comparison/Examination (``allow_b2b_promotion``) needs an admin and is audited on its
own. A preview plans a run at this moment through the same code as the worker, in a
background job (shared/jobs.py: 202, then poll), and sends nothing.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from marshmallow import Schema, ValidationError, fields, validate
from psycopg import sql
from psycopg.types.json import Jsonb

from services.outreach.audience import Params, where_clause
from services.outreach.model import CHANNELS, CampaignInSchema, CampaignPatchSchema
from services.outreach.names import campaign_unknowns, content_ref_unknowns, tenant_names
from services.outreach.plan import Campaign, PlanError, items, plan, tenant_settings
from services.outreach.policies import Tally
from services.outreach.schedule import frequency_error, parsed_schedule
from shared import jobs
from shared.api import (
    API_PREFIX,
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
from shared.api.jobs import LOCATION, accepted, job_schema
from shared.api.jobs import submit as submit_job
from shared.api.jobs import view as job_view
from shared.api.names import unknown_names
from shared.jobs import JobFailed, JobKind, Progress

campaigns = Blueprint("campaigns", __name__, description="Campaigns, previews and runs")
deliveries = Blueprint("deliveries", __name__, description="The delivery log")

COLUMNS = (
    "campaign_id, name, channel, status, audience, content, trigger, quiet_hours, "
    "allow_b2b_promotion, created_by, created_at, updated_at, launched_at, scheduled_until"
)
STATUSES = ["draft", "active", "paused", "ended", "archived"]
# Above this many contacts in its audience a preview plans a deterministic sample of this many
# (issue 14: a tenant of 300k contacts took seconds and GBs in a request).
PREVIEW_SAMPLE_ABOVE = 20_000
PREVIEW_JOB = "campaign.preview"


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
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    launched_at = fields.DateTime(allow_none=True)
    scheduled_until = fields.DateTime(allow_none=True)


class CampaignArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))


class PreviewArgs(Schema):
    sample = fields.Integer(load_default=10, validate=validate.Range(min=0, max=100))


class SampleSchema(Schema):
    recipient_kind = fields.String(required=True)
    recipient_id = fields.String(required=True)
    address = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    content_id = fields.String(allow_none=True)
    excluded = fields.String(allow_none=True, metadata={"description": "The reason, if excluded"})
    members = fields.Integer(metadata={"description": "Groups: members it reaches"})


class PreviewSchema(Schema):
    channel = fields.String(required=True)
    recipients = fields.Integer(required=True)
    to_send = fields.Integer(required=True)
    people_reached = fields.Integer(required=True)
    excluded = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    per_channel = fields.Dict(
        keys=fields.String(), values=fields.Integer(), required=True,
        metadata={"description": "Of the matching contacts, how many each channel can reach"},
    )  # fmt: skip
    content = fields.Dict(
        keys=fields.String(), values=fields.Integer(), required=True,
        metadata={"description": "Recipients per content item they would get"},
    )  # fmt: skip
    samples = fields.List(fields.Nested(SampleSchema), required=True)
    excluded_samples = fields.List(fields.Nested(SampleSchema), required=True)
    sampled = fields.Boolean(
        required=True,
        metadata={"description": "A big audience: the counts are of a deterministic sample"},
    )
    population = fields.Integer(
        required=True, allow_none=True,
        metadata={"description": "Contacts the audience matches (null: groups, OA tags)"},
    )  # fmt: skip
    sample_size = fields.Integer(
        required=True, allow_none=True, metadata={"description": "Contacts planned, if sampled"}
    )


PreviewJobSchema = job_schema("PreviewJob", PreviewSchema)


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


class DeliverySchema(Schema):
    delivery_id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    campaign_id = fields.String(required=True)
    recipient_kind = fields.String(required=True)
    recipient_id = fields.String(required=True)
    channel = fields.String(required=True)
    address = fields.String(allow_none=True)
    sender = fields.String(allow_none=True)
    content_id = fields.String(allow_none=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True)
    errcode = fields.Integer(allow_none=True)
    msgid = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    reached = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(allow_none=True)


class DeliveryArgs(PageArgs):
    campaign_id = fields.String()
    run_id = fields.Integer(validate=validate.Range(min=1, max=2**63 - 1))
    status = fields.String(
        validate=validate.OneOf(
            ["pending", "sending", "sent", "delivered", "failed", "excluded", "unknown"]
        )
    )
    recipient_id = fields.String()


def _jsonable(value: Any) -> Any:
    """Validated bodies hold datetimes; stored JSON holds ISO strings."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _row(conn, tenant: str, campaign_id: str, *, lock: bool = False) -> dict:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM campaigns WHERE tenant_id = %s AND campaign_id = %s"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
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
    _check_names(conn, tenant, body)
    ids = list(body["content"].get("series") or [body["content"]["item"]])
    rows = conn.execute(
        "SELECT content_id, payloads FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
        (tenant, ids),
    ).fetchall()
    found = {r["content_id"]: r for r in rows}
    key = "wecom" if body["channel"].startswith("wecom") else body["channel"]
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


def _check_override(body: dict, tenant: str, conn, campaign_id: str, was: bool = False) -> None:
    if body.get("allow_b2b_promotion") and not was:
        if role_rank(principal().role) < role_rank("admin"):
            raise forbidden("only an admin may let promotions reach B2B contacts")
        audit(conn, principal(), tenant, "campaign.promotion_override", campaign_id,
              {"allow_b2b_promotion": True})  # fmt: skip


@campaigns.route("/campaigns", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.arguments(CampaignArgs, location="query")
@campaigns.response(200, paged(CampaignSchema))
def list_campaigns(args: dict):
    """Campaigns, newest first (``?status=``)"""
    after = cursor_key(args["cursor"], str, str)
    with connection() as conn:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM campaigns WHERE tenant_id = %(t)s "  # noqa: S608
            "AND (%(status)s::text IS NULL OR status = %(status)s) "
            "AND (%(after_at)s::text IS NULL "
            "     OR (created_at, campaign_id) < (%(after_at)s::timestamptz, %(after_id)s)) "
            "ORDER BY created_at DESC, campaign_id DESC LIMIT %(n)s",
            {"t": tenant_id(), "status": args.get("status"),
             "after_at": after[0] if after else None, "after_id": after[1] if after else None,
             "n": args["limit"] + 1},
        ).fetchall()  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["campaign_id"]])


@campaigns.route("/campaigns", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.arguments(CampaignInSchema)
@campaigns.response(201, CampaignSchema)
def create_campaign(body: dict):
    """Define a campaign (a draft: nothing is sent until it is launched)"""
    tenant = tenant_id()
    campaign_id = "cmp_" + secrets.token_hex(8)
    body = _jsonable(body)
    with connection() as conn:
        _check_content(conn, tenant, body)
        _check_schedule(conn, tenant, body)
        _check_override(body, tenant, conn, campaign_id)
        conn.execute(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, audience, content, "
            "trigger, quiet_hours, allow_b2b_promotion, created_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant, campaign_id, body["name"], body["channel"], Jsonb(body["audience"]),
             Jsonb(body["content"]), Jsonb(body["trigger"]),
             Jsonb(body["quiet_hours"]) if body.get("quiet_hours") else None,
             body["allow_b2b_promotion"], principal().token_id),
        )  # fmt: skip
        audit(conn, principal(), tenant, "campaign.create", campaign_id, body)
        return _row(conn, tenant, campaign_id)


@campaigns.route("/campaigns/<campaign_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(404, description="No such campaign")
def get_campaign(campaign_id: str):
    """One campaign"""
    with connection() as conn:
        return _row(conn, tenant_id(), campaign_id)


@campaigns.route("/campaigns/<campaign_id>", methods=["PATCH"])
@require("operator", scope=TENANT)
@campaigns.arguments(CampaignPatchSchema)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="The campaign is active: pause it first")
def update_campaign(body: dict, campaign_id: str):
    """Change a draft or paused campaign (the result is validated as a whole)"""
    tenant = tenant_id()
    with connection() as conn:
        current = _row(conn, tenant, campaign_id, lock=True)
        if current["status"] not in ("draft", "paused"):
            raise conflict(f"a campaign that is {current['status']} cannot be changed; pause it")
        fields_ = ("name", "channel", "audience", "content", "trigger", "quiet_hours",
                   "allow_b2b_promotion")  # fmt: skip
        merged = {k: current[k] for k in fields_ if current[k] is not None}
        merged.update(_jsonable(body))
        try:
            merged = _jsonable(CampaignInSchema().load(merged))
        except ValidationError as exc:
            raise invalid("the changed campaign is not valid", details=exc.messages) from None
        _check_content(conn, tenant, merged)
        _check_schedule(conn, tenant, merged)
        _check_override(merged, tenant, conn, campaign_id, was=current["allow_b2b_promotion"])
        conn.execute(
            "UPDATE campaigns SET name = %s, channel = %s, audience = %s, content = %s, "
            "trigger = %s, quiet_hours = %s, allow_b2b_promotion = %s, updated_at = now() "
            "WHERE tenant_id = %s AND campaign_id = %s",
            (merged["name"], merged["channel"], Jsonb(merged["audience"]),
             Jsonb(merged["content"]), Jsonb(merged["trigger"]),
             Jsonb(merged["quiet_hours"]) if merged.get("quiet_hours") else None,
             merged["allow_b2b_promotion"], tenant, campaign_id),
        )  # fmt: skip
        audit(conn, principal(), tenant, "campaign.update", campaign_id, _jsonable(body))
        return _row(conn, tenant, campaign_id)


def _transition(campaign_id: str, to: str, allowed: tuple[str, ...], action: str) -> dict:
    tenant = tenant_id()
    with connection() as conn:
        current = _row(conn, tenant, campaign_id, lock=True)
        if current["status"] not in allowed:
            raise conflict(f"a campaign that is {current['status']} cannot be {action}d")
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
        if to == "archived":
            conn.execute(
                "UPDATE campaign_runs SET status = 'cancelled', finished_at = now() "
                "WHERE tenant_id = %s AND campaign_id = %s AND status = 'pending'",
                (tenant, campaign_id),
            )
        audit(conn, principal(), tenant, f"campaign.{action}", campaign_id,
              {"from": current["status"], "to": to})  # fmt: skip
        return _row(conn, tenant, campaign_id)


@campaigns.route("/campaigns/<campaign_id>/launch", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Not a draft or paused campaign")
def launch_campaign(campaign_id: str):
    """Launch (or resume) a campaign: its schedule or trigger starts from now (audited)"""
    return _transition(campaign_id, "active", ("draft", "paused"), "launch")


@campaigns.route("/campaigns/<campaign_id>/pause", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Not an active campaign")
def pause_campaign(campaign_id: str):
    """Pause: no run starts until it is launched again (runs due meanwhile wait)"""
    return _transition(campaign_id, "paused", ("active",), "pause")


@campaigns.route("/campaigns/<campaign_id>", methods=["DELETE"])
@require("operator", scope=TENANT)
@campaigns.response(200, CampaignSchema)
@campaigns.alt_response(409, description="Archived already")
def archive_campaign(campaign_id: str):
    """Archive: pending runs are cancelled; runs and deliveries stay in the log"""
    return _transition(campaign_id, "archived", ("draft", "active", "paused", "ended"), "archive")


def _preview_url(campaign_id: str, job_id: str) -> str:
    return f"{API_PREFIX}/campaigns/{quote(campaign_id, safe='')}/preview/{job_id}"


@campaigns.route("/campaigns/<campaign_id>/preview", methods=["POST"])
@require("operator", scope=TENANT)
@campaigns.arguments(PreviewArgs, location="query")
@campaigns.response(202, PreviewJobSchema, headers=LOCATION, description="Queued: poll Location")
@campaigns.alt_response(409, description="A preview of the tenant is queued or running")
def preview_campaign(args: dict, campaign_id: str):
    """Queue a dry run now: audience size, reach per channel, exclusions by rule, samples

    Planned in the background through the same code as the worker: the answer is the job, its
    `Location` the URL to poll until it is `done` (its `result`) or `failed` (its `error`). A
    tenant has one preview queued or running at a time (409 names it). Above a size, a
    deterministic sample of the audience is planned (`result.sampled`). Event-triggered
    campaigns are previewed over their whole audience (as if every contact had just triggered
    them). Nothing is sent.
    """
    tenant = tenant_id()
    with connection() as conn:
        campaign = Campaign.from_row({**_row(conn, tenant, campaign_id), "tenant_id": tenant})
        try:
            items(conn, campaign)  # a campaign without content is a 400 now, not a failed job
        except PlanError as exc:
            raise invalid(str(exc), code="campaign_not_runnable") from None
        params = {"sample": args["sample"], "now": datetime.now(UTC)}
        job = submit_job(conn, tenant=tenant, kind=PREVIEW_JOB, subject=campaign_id,
                         params=params, locate=_preview_url)  # fmt: skip
    return accepted(job, _preview_url)


@campaigns.route("/campaigns/<campaign_id>/preview/<job_id>", methods=["GET"])
@require("operator", scope=TENANT)
@campaigns.response(200, PreviewJobSchema)
def get_preview(campaign_id: str, job_id: str):
    """A queued preview: its status, progress, and once done its result"""
    with connection() as conn:
        job = jobs.get(conn, tenant=tenant_id(), kind=PREVIEW_JOB, subject=campaign_id,
                       job_id=job_id)  # fmt: skip
    if job is None:
        raise not_found("preview", job_id)
    return job_view(job, job["result"])


def preview(conn, campaign: Campaign, now: datetime, samples: int,
            progress: Progress = lambda fraction: None) -> dict:  # fmt: skip
    """What a run at ``now`` would do (stores nothing); a big audience is sampled."""
    planned, population, sampled = _sampled(conn, campaign)
    tally = Tally()
    sample: list[dict] = []
    excluded_samples: list[dict] = []
    by_content: dict[str, int] = {}
    seen = 0
    try:
        for r, d in plan(conn, planned, now):
            tally.add(r, d)
            if d.send:
                by_content[d.content_id] = by_content.get(d.content_id, 0) + 1
            target = sample if d.send else excluded_samples
            if len(target) < samples:
                target.append(_sample(r, d))
            seen += 1
            if population and seen % 1000 == 0:
                progress(min(1.0, seen / min(population, PREVIEW_SAMPLE_ABOVE)))
    except PlanError as exc:
        raise JobFailed(f"campaign_not_runnable: {exc}") from None
    return {"channel": campaign.channel, **tally.result(),
            "per_channel": _per_channel(conn, campaign), "content": by_content,
            "samples": sample, "excluded_samples": excluded_samples, "sampled": sampled,
            "population": population,
            "sample_size": PREVIEW_SAMPLE_ABOVE if sampled else None}  # fmt: skip


def _sampled(conn, campaign: Campaign) -> tuple[Campaign, int | None, bool]:
    """(the campaign to plan, contacts its audience matches, sampled?): above
    PREVIEW_SAMPLE_ABOVE contacts, a deterministic sample of that many (by a hash of the id:
    the same contacts every time). Groups and OA tags are planned whole."""
    if campaign.channel == "wecom_group" or "oa_tag_id" in campaign.audience:
        return campaign, None, False
    filters = {k: v for k, v in campaign.audience.items() if k != "exclude"}
    p = Params()
    where = where_clause(campaign.tenant_id, filters, None, p)
    population = conn.execute(
        sql.SQL("SELECT count(*) AS n FROM audience a WHERE {}").format(where), p.values
    ).fetchone()["n"]
    if population <= PREVIEW_SAMPLE_ABOVE:
        return campaign, population, False
    p = Params()
    where = where_clause(campaign.tenant_id, filters, None, p)
    ids = conn.execute(
        sql.SQL(
            "SELECT a.contact_id FROM audience a WHERE {} "
            "ORDER BY md5(a.contact_id), a.contact_id LIMIT {}"
        ).format(where, p(PREVIEW_SAMPLE_ABOVE)),
        p.values,
    ).fetchall()
    audience = {**campaign.audience, "contacts": [r["contact_id"] for r in ids]}
    return dataclasses.replace(campaign, audience=audience), population, True


def _run_preview(conn, job: dict, progress: Progress) -> dict:
    """The background job (shared/jobs.py) of a preview, planned as of when it was asked."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    row = conn.execute(
        f"SELECT {COLUMNS} FROM campaigns WHERE tenant_id = %s AND campaign_id = %s",  # noqa: S608
        (job["tenant_id"], job["subject"]),
    ).fetchone()
    if row is None:
        raise JobFailed("the campaign no longer exists")
    campaign = Campaign.from_row({**row, "tenant_id": job["tenant_id"]})
    params = job["params"]
    return preview(conn, campaign, datetime.fromisoformat(params["now"]), params["sample"],
                   progress)  # fmt: skip


JOBS = (JobKind(PREVIEW_JOB, "outreach", _run_preview),)


def _sample(r, d) -> dict:
    return {
        "recipient_kind": r.kind,
        "recipient_id": r.id,
        "address": r.address,
        "stage": r.stage,
        "role": r.role,
        "content_id": d.content_id,
        "excluded": d.reason,
        "members": len(r.members) if r.kind == "group" else 1,
    }


def _per_channel(conn, campaign: Campaign) -> dict[str, int]:
    if "oa_tag_id" in campaign.audience:
        return {}  # the platform resolves an OA tag: we do not know its followers
    p = Params()
    contact_filters = {k: v for k, v in campaign.audience.items() if k != "exclude"}
    where = where_clause(campaign.tenant_id, contact_filters, None, p)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE a.external_userids <> '{{}}' "
            "  AND a.wecom_contact IS NOT FALSE) AS wecom, "
            "count(*) FILTER (WHERE a.openids <> '{{}}' AND a.oa_follower IS NOT FALSE) AS oa "
            "FROM audience a WHERE {}"
        ).format(where),
        p.values,
    ).fetchone()
    return {"wecom": row["wecom"], "oa": row["oa"]}


@campaigns.route("/campaigns/<campaign_id>/runs", methods=["GET"])
@require("viewer", scope=TENANT)
@campaigns.arguments(PageArgs, location="query")
@campaigns.response(200, paged(RunSchema))
def list_runs(args: dict, campaign_id: str):
    """A campaign's runs, newest first, with their stats (by status, exclusions, reach)"""
    tenant = tenant_id()
    after = cursor_key(args["cursor"], int)
    with connection() as conn:
        _row(conn, tenant, campaign_id)
        rows = conn.execute(
            "SELECT run_id, trigger_key, subject_kind, subject_id, step, due_at, status, stats, "
            "error, created_at, started_at, finished_at FROM campaign_runs "
            "WHERE tenant_id = %(t)s AND campaign_id = %(c)s "
            "AND (%(after)s::bigint IS NULL OR run_id < %(after)s) "
            "ORDER BY run_id DESC LIMIT %(n)s",
            {"t": tenant, "c": campaign_id, "after": after[0] if after else None,
             "n": args["limit"] + 1},
        ).fetchall()  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["run_id"]])


@deliveries.route("/deliveries", methods=["GET"])
@require("viewer", scope=TENANT)
@deliveries.arguments(DeliveryArgs, location="query")
@deliveries.response(200, paged(DeliverySchema))
def list_deliveries(args: dict):
    """Deliveries, newest first, by campaign, run, status or recipient"""
    after = cursor_key(args["cursor"], int)
    with connection() as conn:
        rows = conn.execute(
            "SELECT delivery_id, run_id, campaign_id, recipient_kind, recipient_id, channel, "
            "address, sender, content_id, status, reason, errcode, msgid, attempts, reached, "
            "created_at, sent_at FROM deliveries WHERE tenant_id = %(t)s "
            "AND (%(c)s::text IS NULL OR campaign_id = %(c)s) "
            "AND (%(r)s::bigint IS NULL OR run_id = %(r)s) "
            "AND (%(s)s::text IS NULL OR status = %(s)s) "
            "AND (%(who)s::text IS NULL OR recipient_id = %(who)s) "
            "AND (%(after)s::bigint IS NULL OR delivery_id < %(after)s) "
            "ORDER BY delivery_id DESC LIMIT %(n)s",
            {"t": tenant_id(), "c": args.get("campaign_id"), "r": args.get("run_id"),
             "s": args.get("status"), "who": args.get("recipient_id"),
             "after": after[0] if after else None, "n": args["limit"] + 1},
        ).fetchall()  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["delivery_id"]])
