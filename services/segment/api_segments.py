"""Admin routes of named segments (``/segments``): define, replace, delete, list, members.

A rule is validated by segments.py (grammar, limits) and its names checked against the tenant's
model and data (rule_names.py); every change is audited and publishes the tenant's catalogue in
the transaction that makes it. Shared pieces: api_people_common.py.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields

from marshmallow import Schema, fields, validate
from psycopg import sql

from services.segment import store
from services.segment.api_common import (
    catalogue_changed,
    current_tenant,
    segment_connection,
)
from services.segment.api_people_common import CONTACT_ITEM_COLUMNS, ContactItemSchema
from services.segment.backfill import pending, queue_backfill
from services.segment.behaviour import Features
from services.segment.lifecycle.grammar import error_paths
from services.segment.rule_names import RuleNames, rule_unknowns
from services.segment.segments import (
    SLUG,
    SegmentError,
    TooManySegments,
    compile_rule,
    save_segment,
)
from services.segment.tenant_model import model_for
from shared import jobs
from shared.api import (
    TENANT,
    ApiError,
    Blueprint,
    PageArgs,
    audit,
    conflict,
    cursor_key,
    not_found,
    page,
    paged,
    principal,
    require,
    tenant_id,
)
from shared.api.context import context
from shared.api.names import unknown_names
from shared.config import JobSettings

# Documented example, valid for the demo tenant acme (schemathesis' examples phase sends it).
SEGMENT_EXAMPLE = {
    "segment_id": "tech-evaluators",
    "name": "Technical evaluators",
    "rule": {"all": [{"attribute": "role", "equals": "technical"},
                     {"stage_at_least": "examination"}]},
}  # fmt: skip


def _segment_error(exc: SegmentError) -> ApiError:
    """400 ``invalid_segment``; details by request path (``rule.all[0].attribute``...)."""
    if isinstance(exc, TooManySegments):
        return ApiError(400, exc.code, exc.message, {"segment_id": [exc.message]})
    if exc.details:
        details = error_paths(exc.details, "rule")
    else:
        details = {"segment_id" if "segment id" in exc.message else "rule": [exc.message]}
    return ApiError(400, "invalid_segment", exc.message, details)


def _check_rule_names(conn, tenant_id_: str, rule: object) -> None:
    """400 ``invalid_segment`` for each stage, role, tag or attribute name the tenant lacks."""
    model = model_for(current_tenant(), conn)
    contact_keys = store.attribute_keys(conn, tenant_id_, "contacts")
    account_keys = store.attribute_keys(conn, tenant_id_, "accounts")
    names = RuleNames(
        funnel=tuple(model.stage_names),
        stages=(*model.stage_names, *model.side_stages),
        contact_attributes=(
            *(f.name for f in dataclass_fields(Features)),
            *sorted(contact_keys),
        ),
        account_attributes=tuple(sorted(account_keys)),
    )
    error = unknown_names(rule_unknowns(rule, names), code="invalid_segment")
    if error is not None:
        raise error


segments = Blueprint(
    "segments",
    __name__,
    description="Named dynamic segments. A new segment, a changed rule or a segment enabled again "
    "is built in the background over every contact of the tenant (`status` building, then "
    "ready, with `progress`); the segment consumer keeps membership current as events arrive.",
)

# A constant fragment: the columns of a segment and its live member count.
SEGMENT_COLUMNS = sql.SQL(
    "s.segment_id, s.name, s.description, s.rule, s.created_at, s.updated_at, "
    "CASE WHEN s.disabled_at IS NULL THEN 'enabled' ELSE 'disabled' END AS state, "
    "s.disabled_at, s.disabled_reason, "
    "CASE WHEN s.disabled_at IS NOT NULL THEN 'failed' ELSE s.build_status END AS status, "
    "CASE WHEN s.build_total IS NOT NULL "
    "THEN jsonb_build_object('done', s.build_done, 'total', s.build_total) END AS progress, "
    "(SELECT count(*) FROM segment_members m WHERE m.tenant_id = s.tenant_id "
    "AND m.segment_id = s.segment_id)::int AS members_count"
)


class BuildProgressSchema(Schema):
    done = fields.Integer(required=True, metadata={"description": "Contacts evaluated"})
    total = fields.Integer(
        required=True, metadata={"description": "The tenant's contacts when the build started"}
    )


class SegmentSchema(Schema):
    segment_id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    rule = fields.Dict(
        required=True, metadata={"description": "A condition of the lifecycle rule grammar"}
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True, metadata={"description": "Last definition change"})
    state = fields.String(
        required=True,
        metadata={
            "enum": ["enabled", "disabled"],
            "description": "disabled: the rule failed while being evaluated; it matches nobody "
            "until the segment is saved again (PUT)",
        },
    )
    disabled_at = fields.DateTime(allow_none=True, metadata={"description": "When it failed"})
    disabled_reason = fields.String(
        allow_none=True,
        metadata={
            "description": "The type of the error the rule raised and where in the rule "
            "(e.g. 'OverflowError while evaluating any[0]'); never its text"
        },
    )
    status = fields.String(
        required=True,
        metadata={
            "enum": ["building", "ready", "failed"],
            "description": "building: the membership of a new segment, a changed rule or a "
            "segment enabled again is being computed over every contact of the tenant in the "
            "background (`progress`; events keep it current meanwhile); ready: every contact was "
            "evaluated, events keep it current; failed: the rule failed while being evaluated "
            "(`disabled_reason`), the segment is disabled",
        },
    )
    progress = fields.Nested(
        BuildProgressSchema,
        allow_none=True,
        metadata={"description": "The last build's progress; null before one started"},
    )
    members_count = fields.Integer(
        required=True, metadata={"description": "Current members (see `status`)"}
    )


class SegmentReplaceSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    rule = fields.Dict(
        required=True,
        metadata={
            "description": "A condition over stage, role, account, score, features, tags and "
            'events, e.g. {"all": [{"attribute": "role", "equals": "technical"}, '
            '{"stage_at_least": "examination"}]}; derived tags `behaviour:<type>` and '
            "`risk:<flag>`"
        },
    )


class SegmentCreateSchema(SegmentReplaceSchema):
    segment_id = fields.String(
        required=True,
        metadata={
            "description": "A slug: 2-63 characters of a-z, 0-9 and -, starting alphanumeric",
            "pattern": SLUG.pattern,
        },
    )


class MemberSchema(ContactItemSchema):
    since = fields.DateTime(required=True, metadata={"description": "Member since"})


def _queue_build(
    conn, rows: list[dict], *, saved: bool = False, created_by: str | None = None
) -> bool:
    """Queue the tenant's build job if one of ``rows`` is building: always after a save (a job
    queued or running takes it up), else only when no job would (it ended as the segment was
    saved, or failed). True if queued: wake the runners once committed."""
    if not any(r["status"] == "building" for r in rows):
        return False
    try:
        tenant = current_tenant()
    except ApiError:  # not in the tenants file: its consumer serves no model to build with
        return False
    if not saved and not pending(conn, tenant.id):
        return False
    settings = context().settings  # None in tests that build the app without Settings
    return queue_backfill(
        conn,
        tenant,
        topic_prefix=settings.kafka.topic_prefix if settings is not None else "",
        created_by=created_by if created_by is not None else principal().token_id,
        ttl=(settings.jobs if settings is not None else JobSettings()).ttl,
    )


def _woken(queued: bool) -> None:
    if queued:
        jobs.wake()


def _segment_row(conn, tenant: str, segment_id: str, *, lock: bool = False) -> dict:
    query = sql.SQL(
        "SELECT {} FROM segments s WHERE s.tenant_id = %s AND s.segment_id = %s{}"
    ).format(SEGMENT_COLUMNS, sql.SQL(" FOR UPDATE OF s" if lock else ""))
    row = conn.execute(query, (tenant, segment_id)).fetchone()
    if row is None:
        raise not_found("segment", segment_id)
    return row


@segments.route("/segments", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.arguments(PageArgs, location="query")
@segments.response(200, paged(SegmentSchema))
def list_segments(args: dict):
    """Segments by segment_id, with their build status and current member counts"""
    after = cursor_key(args["cursor"], str)
    with segment_connection() as conn:
        rows = segment_rows(conn, tenant_id(), after[0] if after else None, args["limit"] + 1)
        queued = _queue_build(conn, rows)
    _woken(queued)
    return page(rows, args["limit"], key=lambda r: [r["segment_id"]])


def segment_rows(conn, tenant: str, after: str | None, limit: int) -> list[dict]:
    """Up to ``limit`` segments by segment_id after ``after`` (GET /segments, the console)."""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM segments s WHERE s.tenant_id = %(tenant)s "
            "AND (%(after)s::text IS NULL OR s.segment_id > %(after)s) "
            "ORDER BY s.segment_id LIMIT %(n)s"
        ).format(SEGMENT_COLUMNS),
        {"tenant": tenant, "after": after, "n": limit},
    ).fetchall()


def segment_row(conn, tenant: str, segment_id: str) -> dict:
    """One segment as GET /segments/<id> answers it (404 ``ApiError`` if the tenant lacks it)."""
    return _segment_row(conn, tenant, segment_id)


@segments.route("/segments", methods=["POST"])
@require("admin", scope=TENANT)
@segments.arguments(SegmentCreateSchema, example=SEGMENT_EXAMPLE)
@segments.response(201, SegmentSchema)
@segments.alt_response(409, description="A segment with this id exists")
def create_segment(body: dict):
    """Define a segment (rule validated: 400 `invalid_segment` with details by field)

    A rule is at most 10 levels of conditions deep, 50 conditions, 8 KiB as JSON; a tenant has
    at most 100 segments (400 `too_many_segments`).

    The membership is built in the background: the segment answers `status` building and
    `members_count` 0; GET it until `status` is ready (`progress` counts the contacts evaluated).
    Events keep the membership current meanwhile and afterwards.
    """
    with segment_connection() as conn:
        row, queued = create_in(conn, tenant_id(), body, principal(), principal().token_id)
    _woken(queued)
    return row


def check_rule(conn, tenant_id_: str, rule: object):
    """The compiled rule, or the 400 ``invalid_segment`` a save would answer (grammar, limits,
    then names): what the console's live preview evaluates."""
    try:
        condition = compile_rule(rule)
    except SegmentError as exc:
        raise _segment_error(exc) from None
    _check_rule_names(conn, tenant_id_, rule)
    return condition


def create_in(conn, tenant: str, body: dict, who, created_by: str | None) -> tuple[dict, bool]:
    """POST /segments in ``conn``'s transaction (the API's and the console's): the new row and
    whether a build job was queued (wake the runners once committed)."""
    # Two creators of one id: the second waits here, then sees the first's row (409); per
    # tenant, so that two creators cannot both pass the segments-per-tenant limit.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"siyu.segment:{tenant}",)
    )
    exists = conn.execute(
        "SELECT 1 FROM segments WHERE tenant_id = %s AND segment_id = %s",
        (tenant, body["segment_id"]),
    ).fetchone()
    if exists is not None:
        raise conflict(f"segment {body['segment_id']!r} exists; PUT replaces it")
    try:
        save_segment(
            conn, tenant, body["segment_id"], body["name"], body["rule"], body["description"]
        )
    except SegmentError as exc:
        raise _segment_error(exc) from None
    _check_rule_names(conn, tenant, body["rule"])
    audit(conn, who, tenant, "segment.create", body["segment_id"], body)
    catalogue_changed(conn)
    row = _segment_row(conn, tenant, body["segment_id"])
    return row, _queue_build(conn, [row], saved=True, created_by=created_by)


@segments.route("/segments/<segment_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.response(200, SegmentSchema)
@segments.alt_response(404, description="No such segment")
def get_segment(segment_id: str):
    """A segment's definition, its build status and its live member count"""
    with segment_connection() as conn:
        row = _segment_row(conn, tenant_id(), segment_id)
        queued = _queue_build(conn, [row])
    _woken(queued)
    return row


@segments.route("/segments/<segment_id>", methods=["PUT"])
@require("admin", scope=TENANT)
@segments.arguments(
    SegmentReplaceSchema, example={k: v for k, v in SEGMENT_EXAMPLE.items() if k != "segment_id"}
)
@segments.response(200, SegmentSchema)
@segments.alt_response(404, description="No such segment")
def replace_segment(body: dict, segment_id: str):
    """Replace a segment's name, description and rule

    Replacing a disabled segment (its rule failed while being evaluated) enables it again.

    A changed rule (or a segment enabled again) is built again in the background: `status`
    building until every contact was evaluated with it (a build of the previous rule still
    running stops: the newest rule wins); until then members not yet evaluated follow the
    previous rule. A name or description change keeps the membership and status as they are.
    """
    with segment_connection() as conn:
        row, queued = replace_in(
            conn, tenant_id(), segment_id, body, principal(), principal().token_id
        )
    _woken(queued)
    return row


def replace_in(conn, tenant: str, segment_id: str, body: dict, who,
               created_by: str | None) -> tuple[dict, bool]:  # fmt: skip
    """PUT /segments/<id> in ``conn``'s transaction (the API's and the console's)."""
    before = _segment_row(conn, tenant, segment_id, lock=True)
    try:
        save_segment(conn, tenant, segment_id, body["name"], body["rule"], body["description"])
    except SegmentError as exc:
        raise _segment_error(exc) from None
    _check_rule_names(conn, tenant, body["rule"])
    details = {**body, "previous": {k: before[k] for k in ("name", "description", "rule")}}
    if before["disabled_at"] is not None:  # saving enables it again
        details["previous"]["disabled_at"] = before["disabled_at"].isoformat()
        details["previous"]["disabled_reason"] = before["disabled_reason"]
    audit(conn, who, tenant, "segment.replace", segment_id, details)
    catalogue_changed(conn)
    row = _segment_row(conn, tenant, segment_id)
    return row, _queue_build(conn, [row], saved=True, created_by=created_by)


@segments.route("/segments/<segment_id>", methods=["DELETE"])
@require("admin", scope=TENANT)
@segments.response(204)
@segments.alt_response(404, description="No such segment")
def delete_segment(segment_id: str):
    """Delete a segment and its membership"""
    with segment_connection() as conn:
        delete_in(conn, tenant_id(), segment_id, principal())
    return None


def delete_in(conn, tenant: str, segment_id: str, who) -> None:
    """DELETE /segments/<id> in ``conn``'s transaction (the API's and the console's)."""
    row = conn.execute(
        "DELETE FROM segments WHERE tenant_id = %s AND segment_id = %s "
        "RETURNING name, description, rule",
        (tenant, segment_id),
    ).fetchone()
    if row is None:
        raise not_found("segment", segment_id)
    audit(conn, who, tenant, "segment.delete", segment_id, dict(row))
    catalogue_changed(conn)


@segments.route("/segments/<segment_id>/members", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.arguments(PageArgs, location="query")
@segments.response(200, paged(MemberSchema))
@segments.alt_response(404, description="No such segment")
def segment_members(args: dict, segment_id: str):
    """The segment's members, by contact_id

    A segment just created or changed is built in the background (its `status`); the segment
    consumer (`siyu segment consume`) keeps membership current as events arrive.
    """
    after = cursor_key(args["cursor"], str)
    tenant = tenant_id()
    with segment_connection() as conn:
        _segment_row(conn, tenant, segment_id)
        rows = member_rows(conn, tenant, segment_id, after[0] if after else None, args["limit"] + 1)
    return page(rows, args["limit"], key=lambda r: [r["contact_id"]])


def member_rows(conn, tenant: str, segment_id: str, after: str | None, limit: int) -> list[dict]:
    """Up to ``limit`` members by contact_id after ``after`` (GET .../members, the console)."""
    return conn.execute(
        sql.SQL(
            "SELECT {}, m.since FROM segment_members m "
            """JOIN contacts c ON c.tenant_id = m.tenant_id AND c.contact_id = m.contact_id
           WHERE m.tenant_id = %(tenant)s AND m.segment_id = %(segment)s
             AND (%(after)s::text IS NULL OR m.contact_id > %(after)s)
           ORDER BY m.contact_id
           LIMIT %(n)s"""
        ).format(CONTACT_ITEM_COLUMNS),
        {"tenant": tenant, "segment": segment_id, "after": after, "n": limit},
    ).fetchall()
