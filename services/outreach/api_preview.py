"""Campaign previews (``/campaigns/<id>/preview``): a dry run planned now, in a background job.

A preview plans a run at this moment through the same code as the worker (plan.py), in a
background job (shared/jobs.py: 202, then poll), and sends nothing. A big audience is sampled
deterministically. The routes sit on the campaigns blueprint (api_campaigns.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import quote

from marshmallow import Schema, fields, validate
from psycopg import sql

from services.outreach.api_campaigns import SELECT_ONE, campaign_row, campaigns
from services.outreach.audience import Params, where_clause
from services.outreach.plan import Campaign, PlanError, items, plan
from services.outreach.policies import Tally
from shared import jobs
from shared.api import API_PREFIX, TENANT, connection, invalid, not_found, require, tenant_id
from shared.api.jobs import LOCATION, accepted, job_schema
from shared.api.jobs import submit as submit_job
from shared.api.jobs import view as job_view
from shared.jobs import JobFailed, JobKind, Progress

# Above this many contacts in its audience a preview plans a deterministic sample of this many
# (issue 14: a tenant of 300k contacts took seconds and GBs in a request).
PREVIEW_SAMPLE_ABOVE = 20_000
PREVIEW_JOB = "campaign.preview"


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
    with connection() as conn:
        job = queue_preview(conn, tenant_id(), campaign_id, args["sample"])
    return accepted(job, _preview_url)


@campaigns.route("/campaigns/<campaign_id>/preview/<job_id>", methods=["GET"])
@require("operator", scope=TENANT)
@campaigns.response(200, PreviewJobSchema)
def get_preview(campaign_id: str, job_id: str):
    """A queued preview: its status, progress, and once done its result"""
    with connection() as conn:
        return preview_job(conn, tenant_id(), campaign_id, job_id)


def queue_preview(conn, tenant: str, campaign_id: str, sample: int,
                  created_by: str | None = None) -> dict:  # fmt: skip
    """Queue a preview job of the tenant's campaign (``created_by``: else the API token's id);
    404 for a campaign the tenant does not have, 400 for one without content, 409 while a
    preview of the tenant is queued or running. The console calls it too."""
    campaign = Campaign.from_row({**campaign_row(conn, tenant, campaign_id), "tenant_id": tenant})
    try:
        items(conn, campaign)  # a campaign without content is a 400 now, not a failed job
    except PlanError as exc:
        raise invalid(str(exc), code="campaign_not_runnable") from None
    params = {"sample": sample, "now": datetime.now(UTC)}
    return submit_job(conn, tenant=tenant, kind=PREVIEW_JOB, subject=campaign_id, params=params,
                      locate=_preview_url, created_by=created_by)  # fmt: skip


def preview_job(conn, tenant: str, campaign_id: str, job_id: str) -> dict:
    """A preview job's view (status, progress, result once done); 404 for another's."""
    job = jobs.get(conn, tenant=tenant, kind=PREVIEW_JOB, subject=campaign_id, job_id=job_id)
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
        SELECT_ONE,
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
