"""Admin routes of the content library (``/content``) and the tenant's outreach settings.

Operators create and edit content (running campaigns is their job); archiving keeps the item
for the delivery log. The promotional flag is stored true for every promotion, whatever the
request said, and cannot be cleared while the format is ``promotion``. The routes' work is in
plain functions (``create_item``, ``update_item``, ``archive_item``, ``content_rows``) that the
console calls too, with its user as the audited actor (docs/console.md "Content library").
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from marshmallow import Schema, fields, validate
from psycopg import sql
from psycopg.types.json import Jsonb

from services.outreach import notices
from services.outreach.model import (
    FORMATS,
    ContentInSchema,
    ContentPatchSchema,
    OutreachSettingsSchema,
    is_promotional,
    outreach_settings,
)
from services.outreach.names import (
    content_ref_unknowns,
    content_unknowns,
    settings_unknowns,
    tenant_names,
)
from shared.api import (
    TENANT,
    Blueprint,
    PageArgs,
    audit,
    connection,
    cursor_key,
    invalid,
    not_found,
    page,
    paged,
    principal,
    require,
    tenant_id,
    unknown_tenant,
)
from shared.api.names import unknown_names
from shared.tokens import Principal
from shared.vocabulary import BUYING_ROLES

content = Blueprint("content", __name__, description="The content library")

# The README tour's item: the documented example, and a valid body for schemathesis' examples.
CONTENT_EXAMPLE = {
    "title": "白皮书：数字化工厂",
    "format": "whitepaper",
    "stages": ["attention", "interest"],
    "roles": ["technical"],
    "payloads": {"wecom": {"text": "本周白皮书", "attachments": [
        {"msgtype": "link", "link": {"title": "数字化工厂", "url": "https://acme.example/wp"}}
    ]}},
}  # fmt: skip

COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("content_id", "title", "format", "promotional", "stages", "roles",
                         "topics", "industries", "payloads", "status", "created_at",
                         "updated_at"))
)  # fmt: skip


class ContentSchema(Schema):
    content_id = fields.String(required=True)
    title = fields.String(required=True)
    format = fields.String(required=True, metadata={"enum": list(FORMATS)})
    promotional = fields.Boolean(required=True)
    stages = fields.List(fields.String(), required=True)
    roles = fields.List(fields.String(), required=True)
    topics = fields.List(fields.String(), required=True)
    industries = fields.List(fields.String(), required=True)
    payloads = fields.Dict(required=True)
    status = fields.String(required=True, metadata={"enum": ["active", "archived"]})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ContentArgs(PageArgs):
    format = fields.String(validate=validate.OneOf(FORMATS))
    stage = fields.String()
    role = fields.String(
        validate=validate.OneOf(
            BUYING_ROLES, error="Unknown buying role {input!r}. Valid: {choices}."
        )
    )
    topic = fields.String()
    promotional = fields.Boolean()
    status = fields.String(load_default="active", validate=validate.OneOf(["active", "archived"]))


def check_content_names(conn, tenant: str, body: dict, field: str | None = None) -> None:
    """A 400 naming each stage tag the tenant's model lacks, with the valid ones."""
    found = content_unknowns(body, tenant_names(conn, tenant))
    if field is not None:  # a query parameter, not the body's list
        found = [replace(u, field=field) for u in found]
    error = unknown_names(found)
    if error is not None:
        raise error


def content_item(conn, tenant: str, content_id: str, *, lock: bool = False) -> dict:
    """One item of the tenant's library (404 for another tenant's or an unknown id); ``lock``
    holds its row until the transaction ends (an edit: see update_item)."""
    query = sql.SQL("SELECT {} FROM content WHERE tenant_id = %s AND content_id = %s").format(
        COLUMNS
    )
    row = conn.execute(query + sql.SQL(" FOR UPDATE") if lock else query,
                       (tenant, content_id)).fetchone()  # fmt: skip
    if row is None:
        raise not_found("content", content_id)
    return row


def content_rows(conn, tenant: str, args: dict) -> list[dict]:
    """Up to ``args["limit"] + 1`` items, newest first, after the cursor ``args["after"]``
    (created_at, content_id), filtered as ContentArgs says; a stage filter is checked first."""
    after = args.get("after")
    if args.get("stage"):  # a stage the model lacks would list nothing, silently
        check_content_names(conn, tenant, {"stages": [args["stage"]]}, field="stage")
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM content WHERE tenant_id = %(t)s AND status = %(status)s "
            "AND (%(format)s::text IS NULL OR format = %(format)s) "
            "AND (%(stage)s::text IS NULL OR %(stage)s = ANY(stages)) "
            "AND (%(role)s::text IS NULL OR %(role)s = ANY(roles)) "
            "AND (%(topic)s::text IS NULL OR %(topic)s = ANY(topics)) "
            "AND (%(promo)s::boolean IS NULL OR promotional = %(promo)s) "
            "AND (%(after_at)s::text IS NULL "
            "     OR (created_at, content_id) < (%(after_at)s::timestamptz, %(after_id)s)) "
            "ORDER BY created_at DESC, content_id DESC LIMIT %(n)s"
        ).format(COLUMNS),
        {"t": tenant, "status": args.get("status", "active"), "format": args.get("format"),
         "stage": args.get("stage"), "role": args.get("role"), "topic": args.get("topic"),
         "promo": args.get("promotional"), "after_at": after[0] if after else None,
         "after_id": after[1] if after else None, "n": args["limit"] + 1},
    ).fetchall()  # fmt: skip


def create_item(conn, tenant: str, body: dict, who: Principal | str) -> dict:
    """Store a loaded ContentInSchema body as a new item, audited as ``who``."""
    check_content_names(conn, tenant, body)
    content_id = "cnt_" + secrets.token_hex(8)
    conn.execute(
        "INSERT INTO content (tenant_id, content_id, title, format, promotional, stages, "
        "roles, topics, industries, payloads) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant, content_id, body["title"], body["format"], is_promotional(body),
         body["stages"], body["roles"], body["topics"], body["industries"],
         Jsonb(body["payloads"])),
    )  # fmt: skip
    audit(conn, who, tenant, "content.create", content_id,
          {"title": body["title"], "format": body["format"],
           "promotional": is_promotional(body)})  # fmt: skip
    return content_item(conn, tenant, content_id)


def _check_notice(conn, tenant: str, content_id: str, merged: dict) -> None:
    """400 for an edit that would make an item sent by an active OA template campaign anything
    but a notice (services/outreach/notices.py). Refused here rather than skipped when sending:
    the editor is told at once, and the campaign keeps sending the notice it was launched with.
    A draft or paused campaign is checked again when it is launched."""
    if notices.is_notice(merged["format"], is_promotional(merged)):
        return
    rows = conn.execute(
        "SELECT campaign_id FROM campaigns WHERE tenant_id = %s AND status = 'active' "
        "AND channel = ANY(%s) AND (content->>'item' = %s OR content->'series' ? %s) "
        "ORDER BY campaign_id",
        (tenant, sorted(notices.NOTICE_ONLY_CHANNELS), content_id, content_id),
    ).fetchall()
    if rows:
        message = notices.edit_refusal([r["campaign_id"] for r in rows])
        raise invalid(message, code=notices.CODE, details={"format": [message]})


def update_item(conn, tenant: str, content_id: str, body: dict, who: Principal | str) -> dict:
    """Replace the fields of a loaded ContentPatchSchema body, audited as ``who``; 400 for an
    item an active OA template campaign sends that would stop being a notice.

    The row is locked first: a campaign's launch reads its content FOR SHARE
    (api_campaigns.py _check_content), so an edit and a launch of the same item never overlap.
    A launch that came first is committed before the check below reads the active campaigns (a
    new snapshot per statement); one that comes second waits and then sees the edited item."""
    current = content_item(conn, tenant, content_id, lock=True)
    check_content_names(conn, tenant, body)
    merged = {**current, **body}
    _check_notice(conn, tenant, content_id, merged)
    conn.execute(
        "UPDATE content SET title = %s, format = %s, promotional = %s, stages = %s, "
        "roles = %s, topics = %s, industries = %s, payloads = %s, updated_at = now() "
        "WHERE tenant_id = %s AND content_id = %s",
        (merged["title"], merged["format"], is_promotional(merged), merged["stages"],
         merged["roles"], merged["topics"], merged["industries"], Jsonb(merged["payloads"]),
         tenant, content_id),
    )  # fmt: skip
    audit(conn, who, tenant, "content.update", content_id, {"fields": sorted(body)})
    return content_item(conn, tenant, content_id)


def archive_item(conn, tenant: str, content_id: str, who: Principal | str) -> dict:
    """Archive an item (kept for the delivery log), audited as ``who``."""
    content_item(conn, tenant, content_id)
    conn.execute(
        "UPDATE content SET status = 'archived', updated_at = now() "
        "WHERE tenant_id = %s AND content_id = %s",
        (tenant, content_id),
    )
    audit(conn, who, tenant, "content.archive", content_id)
    return content_item(conn, tenant, content_id)


@content.route("/content", methods=["GET"])
@require("viewer", scope=TENANT)
@content.arguments(ContentArgs, location="query")
@content.response(200, paged(ContentSchema))
def list_content(args: dict):
    """Content items, newest first, filtered by format, stage, role, topic, promotional, status"""
    with connection() as conn:
        rows = content_rows(
            conn, tenant_id(), {**args, "after": cursor_key(args["cursor"], str, str)}
        )
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["content_id"]])


@content.route("/content", methods=["POST"])
@require("operator", scope=TENANT)
@content.arguments(ContentInSchema, example=CONTENT_EXAMPLE)
@content.response(201, ContentSchema)
def create_content(body: dict):
    """Add a content item (payloads per channel validated; promotions are always promotional)"""
    with connection() as conn:
        return create_item(conn, tenant_id(), body, principal())


@content.route("/content/<content_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@content.response(200, ContentSchema)
@content.alt_response(404, description="No such content")
def get_content(content_id: str):
    """One content item with its payloads"""
    with connection() as conn:
        return content_item(conn, tenant_id(), content_id)


@content.route("/content/<content_id>", methods=["PATCH"])
@require("operator", scope=TENANT)
@content.arguments(ContentPatchSchema, example={"title": "白皮书：数字化工厂（第二版）"})
@content.response(200, ContentSchema)
@content.alt_response(404, description="No such content")
def update_content(body: dict, content_id: str):
    """Change a content item (fields given replace the stored ones)"""
    with connection() as conn:
        return update_item(conn, tenant_id(), content_id, body, principal())


@content.route("/content/<content_id>", methods=["DELETE"])
@require("operator", scope=TENANT)
@content.response(200, ContentSchema)
@content.alt_response(404, description="No such content")
def archive_content(content_id: str):
    """Archive a content item (kept for the delivery log; series skip it from now on)"""
    with connection() as conn:
        return archive_item(conn, tenant_id(), content_id, principal())


# --- settings -----------------------------------------------------------------------------------

settings = Blueprint(
    "outreach_settings",
    __name__,
    description="The tenant's outreach settings: frequency caps, platform quotas, quiet hours, "
    "the no-discount guard of a lifecycle model that flags no stage",
)


def _tenant_settings(conn, tenant: str) -> dict:
    row = conn.execute(
        "SELECT settings FROM tenants WHERE tenant_id = %s FOR UPDATE", (tenant,)
    ).fetchone()
    if row is None:
        raise unknown_tenant(tenant)
    return row["settings"]


def read_outreach_settings(conn, tenant: str) -> dict:
    """The tenant's outreach settings, defaults filled in (GET /settings/outreach; the console's
    settings page)."""
    return outreach_settings(_tenant_settings(conn, tenant))


def save_outreach_settings(conn, tenant: str, body: dict, who) -> dict:
    """Replace the tenant's outreach settings with ``body`` (already loaded by
    OutreachSettingsSchema), audited as ``who`` (a principal or an actor such as
    ``console:<login>``); the 400 of unknown stages if ``guard_unflagged_model`` names any."""
    stored = _tenant_settings(conn, tenant)
    unknowns = settings_unknowns(body, tenant_names(conn, tenant))
    if body.get("default_welcome"):  # the default welcome names the library's content
        unknowns += [
            replace(u, field=u.field.replace("content.series", "default_welcome"))
            for u in content_ref_unknowns(conn, tenant, {"series": body["default_welcome"]})
        ]
    error = unknown_names(unknowns)
    if error is not None:
        raise error
    conn.execute(
        "UPDATE tenants SET settings = %s, updated_at = now() WHERE tenant_id = %s",
        (Jsonb({**stored, "outreach": body}), tenant),
    )
    audit(conn, who, tenant, "settings.outreach", tenant, body)
    return body


@settings.route("/settings/outreach", methods=["GET"])
@require("viewer", scope=TENANT)
@settings.response(200, OutreachSettingsSchema)
def get_settings():
    """Caps, quotas, default quiet hours and the unflagged-model guard in force (defaults
    filled in)"""
    with connection() as conn:
        return read_outreach_settings(conn, tenant_id())


@settings.route("/settings/outreach", methods=["PUT"])
@require("admin", scope=TENANT)
@settings.arguments(OutreachSettingsSchema)
@settings.response(200, OutreachSettingsSchema)
def put_settings(body: dict):
    """Replace the outreach settings (fields left out take their defaults); stages listed in
    guard_unflagged_model must be the tenant's model's (a 400 lists the valid ones)"""
    with connection() as conn:
        return save_outreach_settings(conn, tenant_id(), body, principal())
