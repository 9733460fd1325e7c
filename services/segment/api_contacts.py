"""Admin routes of contacts (``/contacts``): search, detail, timeline, role and stage overrides,
erasure.

Staff overrides (a contact's role or stage) are written, derived on (``derive.py``) and audited
in one transaction; their stage changes and profiles are queued in the outbox like the
consumer's. Shared pieces: api_people_common.py.
"""

from __future__ import annotations

from datetime import datetime

from flask import request
from marshmallow import Schema, fields, validate
from psycopg import sql

from services.segment import store
from services.segment.api_common import (
    current_tenant,
    segment_connection,
    segment_topics,
)
from services.segment.api_people_common import (
    ACCOUNT_ITEM_COLUMNS,
    CONTACT_ITEM_COLUMNS,
    CONTACT_SCORE,
    HISTORY_LIMIT,
    SOURCE_CHANNEL_FILTER,
    STAGE_EXAMPLE,
    UNKNOWN_ROLE,
    ContactItemSchema,
    RiskFlagSchema,
    SourceChannelSchema,
    StageChangeSchema,
    StageOverrideSchema,
    channel_cut,
    check_filters,
    check_stage,
    like,
    override_subject_stage,
    reason_field,
    source_channel,
    stage_history,
)
from services.segment.derive import derive_touched
from services.segment.erasure import erase_contact as erase
from shared.api import (
    TENANT,
    ApiError,
    Blueprint,
    PageArgs,
    Principal,
    audit,
    cursor_key,
    invalid,
    not_found,
    page,
    paged,
    principal,
    require,
    tenant_id,
)
from shared.vocabulary import BUYING_ROLES

MAX_MERGE_HOPS = 20  # contact_merges chains followed to the live contact

contacts = Blueprint(
    "contacts", __name__, description="Contacts: people resolved from every touchpoint"
)


class ContactQuerySchema(PageArgs):
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={
            "description": "Substring of name, title or company (case-insensitive), or an exact "
            "identity value (openid, unionid, external_userid, crm_id)"
        },
    )
    stage = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    role = fields.String(
        load_default=None,
        validate=validate.OneOf(
            [*BUYING_ROLES, UNKNOWN_ROLE], error="Unknown buying role {input!r}. Valid: {choices}."
        ),
        metadata={"description": f"A buying role, or `{UNKNOWN_ROLE}` for contacts without one"},
    )
    account_id = fields.String(load_default=None, validate=validate.Length(min=1, max=300))
    segment = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Members of this segment id"},
    )
    behaviour = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "A B2C behaviour segment: loyal, new, lapsed, prospect..."},
    )
    min_score = fields.Float(load_default=None, allow_nan=False)
    source_channel = SOURCE_CHANNEL_FILTER


class IdentitySchema(Schema):
    kind = fields.String(
        required=True, metadata={"enum": ["unionid", "crm_id", "external_userid", "openid"]}
    )
    value = fields.String(required=True)
    first_seen = fields.DateTime(required=True)


class ContactSegmentSchema(Schema):
    segment_id = fields.String(required=True)
    name = fields.String(required=True)
    since = fields.DateTime(required=True, metadata={"description": "Member since"})


class ContactAccountSchema(Schema):
    account_id = fields.String(required=True)
    name = fields.String(required=True)
    stage = fields.String(allow_none=True)
    score = fields.Float(required=True)
    members = fields.Integer(required=True)
    roles_engaged = fields.List(fields.String(), required=True)
    risk_flags = fields.List(fields.Nested(RiskFlagSchema), required=True)


def _lost(lost: dict | None) -> dict | None:
    """The stored loss (services/segment/lost.py) as the API shows it."""
    if not lost:
        return None
    at = datetime.fromisoformat(lost["at"])
    return {"reason": lost["reason"], "staff_userid": lost.get("staff_userid"), "at": at}


class LostSchema(Schema):
    reason = fields.String(
        required=True,
        metadata={"enum": ["customer_deleted_staff", "staff_deleted_customer"]},
    )
    staff_userid = fields.String(allow_none=True, metadata={"description": "The member it left"})
    at = fields.DateTime(required=True)


class ContactSchema(ContactItemSchema):
    role_confidence = fields.Float(allow_none=True, metadata={"description": "0..1"})
    role_source = fields.String(
        allow_none=True,
        metadata={"enum": ["tag", "title", "api"], "description": "api: set by staff (override)"},
    )
    role_override = fields.String(
        allow_none=True,
        metadata={"enum": list(BUYING_ROLES), "description": "Set by PUT .../role; null: inferred"},
    )
    stage_since = fields.DateTime(allow_none=True)
    score_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True, metadata={"description": "First evidence"})
    events_count = fields.Integer(required=True)
    behaviour = fields.List(
        fields.String(), required=True, metadata={"description": "B2C behaviour segments"}
    )
    features = fields.Dict(
        required=True, metadata={"description": "Behaviour features (recency_days, ...)"}
    )
    tags = fields.List(fields.String(), required=True)
    attributes = fields.Dict(required=True)
    identities = fields.List(fields.Nested(IdentitySchema), required=True)
    segments = fields.List(fields.Nested(ContactSegmentSchema), required=True)
    account = fields.Nested(ContactAccountSchema, allow_none=True, required=True)
    source_channel = fields.Nested(SourceChannelSchema, required=True)
    lost = fields.Nested(
        LostSchema,
        allow_none=True,
        required=True,
        metadata={
            "description": 'The latest WeCom relation is an exit (docs/domain.md "Lost customers"'
            "); null when not lost"
        },
    )
    stage_history = fields.List(
        fields.Nested(StageChangeSchema),
        required=True,
        metadata={"description": f"Oldest first (the newest {HISTORY_LIMIT})"},
    )


class EventSchema(Schema):
    event_id = fields.String(required=True)
    type = fields.String(required=True, metadata={"description": "Envelope type, e.g. oa.click"})
    occurred_at = fields.DateTime(required=True)
    attributes = fields.Dict(required=True)


def _contact_missing(conn, tenant: str, contact_id: str) -> ApiError:
    into = store.merged_into(conn, tenant, contact_id, MAX_MERGE_HOPS)
    if into is None:
        erased = conn.execute(
            "SELECT erased_at FROM erasures WHERE tenant_id = %s AND contact_id = %s",
            (tenant, contact_id),
        ).fetchone()
        if erased is not None:  # services/segment/erasure.py
            return ApiError(404, "not_found", f"contact {contact_id!r} was erased",
                            {"erased_at": erased["erased_at"].isoformat()})  # fmt: skip
        return not_found("contact", contact_id)
    return ApiError(
        404,
        "not_found",
        f"contact {contact_id!r} was merged into {into!r}",
        {"merged_into": into},
    )


def contact_rows(
    conn,
    tenant: str,
    *,
    limit: int,
    after: str | None = None,
    q: str | None = None,
    stage: str | None = None,
    role: str | None = None,
    account: str | None = None,
    segment: str | None = None,
    behaviour: str | None = None,
    min_score: float | None = None,
    source_channel: str | None = None,
) -> list[dict]:
    """Up to ``limit`` of a tenant's contacts (CONTACT_ITEM_COLUMNS) by contact_id after
    ``after``, filtered (AND): GET /contacts's query, the console's search too. ``q`` matches a
    substring of name, title or company, or an identity value exactly; ``role`` UNKNOWN_ROLE
    lists contacts without a role."""
    params = {
        "tenant": tenant,
        "after": after,
        "q": q,
        "like": like(q) if q else None,
        "stage": stage,
        "role": None if role == UNKNOWN_ROLE else role,
        "no_role": role == UNKNOWN_ROLE,
        "account": account,
        "segment": segment,
        "behaviour": behaviour,
        "min_score": min_score,
        "source_channel": source_channel,
        "n": limit,
    }
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM contacts c "
            """WHERE c.tenant_id = %(tenant)s
             AND (%(after)s::text IS NULL OR c.contact_id > %(after)s)
             AND (%(q)s::text IS NULL
                  OR c.name ILIKE %(like)s OR c.title ILIKE %(like)s
                  OR c.corp_name ILIKE %(like)s
                  OR EXISTS (SELECT 1 FROM identities i WHERE i.tenant_id = c.tenant_id
                             AND i.contact_id = c.contact_id AND i.value = %(q)s))
             AND (%(stage)s::text IS NULL OR c.stage = %(stage)s)
             AND (%(role)s::text IS NULL OR c.role = %(role)s)
             AND (NOT %(no_role)s OR c.role IS NULL)
             AND (%(account)s::text IS NULL OR c.account_id = %(account)s)
             AND (%(segment)s::text IS NULL
                  OR EXISTS (SELECT 1 FROM segment_members m WHERE m.tenant_id = c.tenant_id
                             AND m.segment_id = %(segment)s AND m.contact_id = c.contact_id))
             AND (%(behaviour)s::text IS NULL OR %(behaviour)s = ANY(c.behaviour))
             AND (%(min_score)s::float8 IS NULL OR {score} >= %(min_score)s)
             {channel}
           ORDER BY c.contact_id
           LIMIT %(n)s"""
        ).format(
            CONTACT_ITEM_COLUMNS, score=CONTACT_SCORE, channel=channel_cut("c", source_channel)
        ),
        params,
    ).fetchall()


@contacts.route("/contacts", methods=["GET"])
@require("viewer", scope=TENANT)
@contacts.arguments(ContactQuerySchema, location="query")
@contacts.response(200, paged(ContactItemSchema))
def list_contacts(args: dict):
    """Search and filter contacts, by contact_id

    Filters combine (AND). `q` matches a substring of name, title or company, or an identity
    value exactly.
    """
    after = cursor_key(args["cursor"], str)
    with segment_connection() as conn:
        check_filters(conn, args)
        rows = contact_rows(
            conn,
            tenant_id(),
            limit=args["limit"] + 1,
            after=after[0] if after else None,
            q=args["q"],
            stage=args["stage"],
            role=args["role"],
            account=args["account_id"],
            segment=args["segment"],
            behaviour=args["behaviour"],
            min_score=args["min_score"],
            source_channel=args["source_channel"],
        )
    return page(rows, args["limit"], key=lambda r: [r["contact_id"]])


@contacts.route("/contacts/<contact_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@contacts.response(200, ContactSchema)
@contacts.alt_response(
    404,
    description="No such contact; a merged contact's details hold `merged_into` (the live id)",
)
def get_contact(contact_id: str):
    """A contact: identities, role, stage, score, behaviour, segments, account, stage history

    A contact merged into another (two ids found to be one person) answers 404 with
    `details.merged_into`: fetch that contact instead.
    """
    with segment_connection() as conn:
        return contact_view(conn, tenant_id(), contact_id)


def contact_view(conn, tenant: str, contact_id: str) -> dict:
    """A contact of ``tenant`` with identities, segments, account and stage history:
    GET /contacts/<id>'s answer, the console's contact page too (404 ApiError when unknown,
    merged or erased)."""
    row = conn.execute(
        sql.SQL(
            "SELECT c.*, {} AS score FROM contacts c WHERE tenant_id = %s AND contact_id = %s"
        ).format(CONTACT_SCORE),
        (tenant, contact_id),
    ).fetchone()
    if row is None:
        raise _contact_missing(conn, tenant, contact_id)
    identities = conn.execute(
        "SELECT kind, value, first_seen FROM identities "
        "WHERE tenant_id = %s AND contact_id = %s ORDER BY kind, value",
        (tenant, contact_id),
    ).fetchall()
    member_of = conn.execute(
        "SELECT m.segment_id, s.name, m.since FROM segment_members m "
        "JOIN segments s ON s.tenant_id = m.tenant_id AND s.segment_id = m.segment_id "
        "WHERE m.tenant_id = %s AND m.contact_id = %s ORDER BY m.segment_id",
        (tenant, contact_id),
    ).fetchall()
    account = None
    if row["account_id"]:
        account = conn.execute(
            sql.SQL("SELECT {} FROM accounts a WHERE tenant_id = %s AND account_id = %s").format(
                ACCOUNT_ITEM_COLUMNS
            ),
            (tenant, row["account_id"]),
        ).fetchone()
    history = stage_history(conn, tenant, "contact", contact_id)
    return {
        **row,
        "identities": identities,
        "segments": member_of,
        "account": account,
        "source_channel": source_channel(row),
        "lost": _lost(row.get("lost")),
        "stage_history": history,
    }


class RoleOverrideSchema(Schema):
    role = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(
            BUYING_ROLES, error="Unknown buying role {input!r}. Valid: {choices}."
        ),
        metadata={"description": "The buying role; null: infer it from title and tags again"},
    )
    reason = reason_field()


class ContactRoleSchema(Schema):
    contact_id = fields.String(required=True)
    role = fields.String(allow_none=True, metadata={"enum": list(BUYING_ROLES)})
    role_confidence = fields.Float(allow_none=True)
    role_source = fields.String(allow_none=True, metadata={"enum": ["tag", "title", "api"]})
    role_override = fields.String(allow_none=True, metadata={"enum": list(BUYING_ROLES)})


def _locked_contact(conn, tenant, contact_id: str) -> dict:
    rows = store.lock_contacts(conn, tenant.id, [contact_id])
    if not rows:
        raise _contact_missing(conn, tenant.id, contact_id)
    return rows[0]


@contacts.route("/contacts/<contact_id>/role", methods=["PUT"])
@require("operator", scope=TENANT)
@contacts.arguments(RoleOverrideSchema)
@contacts.response(200, ContactRoleSchema)
@contacts.alt_response(404, description="No such contact (or merged: `details.merged_into`)")
def override_role(body: dict, contact_id: str):
    """Set (or with null clear) the contact's buying role, overriding the one inferred

    The override wins over title and tags (`role_source` `api`, confidence 1) and survives new
    events. The contact and its account (role coverage) are derived again at once. Audited as
    `contact.role_override`.
    """
    tenant = current_tenant()
    with segment_connection() as conn:
        return override_contact_role(
            conn, tenant, contact_id, body["role"], body["reason"], principal()
        )


def override_contact_role(
    conn, tenant, contact_id: str, role: str | None, reason: str, who: Principal | str
) -> dict:
    """Set (None: clear) a contact's buying role override, derive it and its account again and
    audit ``contact.role_override`` by ``who``, in ``conn``'s transaction: PUT .../role's
    change, the console's too. ``role`` must be one of BUYING_ROLES or None."""
    row = _locked_contact(conn, tenant, contact_id)
    store.set_role_override(conn, tenant.id, contact_id, role)
    derive_touched(conn, tenant, {contact_id: []}, segment_topics())
    after = conn.execute(
        "SELECT contact_id, role, role_confidence, role_source, role_override FROM contacts "
        "WHERE tenant_id = %s AND contact_id = %s",
        (tenant.id, contact_id),
    ).fetchone()
    details = {
        "role": role,
        "reason": reason,
        "previous": {"role": row["role"], "role_override": row["role_override"]},
    }
    audit(conn, who, tenant.id, "contact.role_override", contact_id, details)
    return after


@contacts.route("/contacts/<contact_id>/stage", methods=["POST"])
@require("operator", scope=TENANT)
@contacts.arguments(StageOverrideSchema, example=STAGE_EXAMPLE)
@contacts.response(200, ContactSchema)
@contacts.alt_response(404, description="No such contact (or merged: `details.merged_into`)")
@contacts.alt_response(409, description="The contact is in this stage already")
def override_contact_stage(body: dict, contact_id: str):
    """Move the contact to a stage by hand (audited)

    Recorded in the stage history with the caller as `actor` and the cause `manual: <reason>`,
    published as a stage change, audited as `contact.stage_override`. Stages stay computed from
    evidence: the next touchpoint moves the contact on from here when its evidence supports a
    later stage. The account's stage is not lowered (accounts only move forward).
    """
    tenant = current_tenant()
    with segment_connection() as conn:
        row = _locked_contact(conn, tenant, contact_id)
        check_stage(conn, tenant, body["stage"])
        override_subject_stage(conn, tenant, "contact", contact_id, row, body)
        return contact_view(conn, tenant.id, contact_id)


class EraseQuerySchema(Schema):
    reason = fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Why (required here or as `reason` in a JSON body; audited)"},
    )


class ErasureSchema(Schema):
    contact_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["erased", "already_erased"]})
    erased_at = fields.DateTime(required=True)
    identities = fields.Integer(required=True, metadata={"description": "Identities erased"})


def _erase_reason(args: dict) -> str:
    reason = args.get("reason")
    if reason is None:
        body = request.get_json(silent=True)
        reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise invalid(
            "a reason (1 to 500 characters) is required, as ?reason= or in a JSON body",
            {"reason": ["a reason (1 to 500 characters) is required"]},
        )
    return reason.strip()


@contacts.route("/contacts/<contact_id>", methods=["DELETE"])
@require("admin", scope=TENANT)
@contacts.arguments(EraseQuerySchema, location="query")
@contacts.response(200, ErasureSchema)
@contacts.alt_response(404, description="No such contact (or merged: `details.merged_into`)")
def erase_contact(args: dict, contact_id: str):
    """Erase a person (PIPL art. 47): every trace in every service, audited (docs/privacy.md)

    The contact, its identities, events, history and memberships are deleted; its profile is
    tombstoned on siyu.profiles.v1 and the erasure announced on siyu.erasures.v1 (outreach and
    ingest forget the person; their encryption keys are destroyed). Touchpoints of the person
    received before now never bring them back. Audited as `contact.erase`; erasing again
    answers `already_erased`.
    """
    reason = _erase_reason(args)
    tenant = current_tenant()
    who = principal()
    with segment_connection() as conn:
        done = erase(
            conn, tenant, contact_id, actor=who.token_id, reason=reason, topics=segment_topics()
        )
        if done is None:
            raise _contact_missing(conn, tenant.id, contact_id)
        if done.status == "erased":
            details = {"reason": reason, "identities": done.identities, "merged": list(done.merged)}
            audit(conn, who, tenant.id, "contact.erase", contact_id, details)
    return {"contact_id": contact_id, "status": done.status, "erased_at": done.erased_at,
            "identities": done.identities}  # fmt: skip


class TimelineQuerySchema(PageArgs):
    pass


@contacts.route("/contacts/<contact_id>/timeline", methods=["GET"])
@require("viewer", scope=TENANT)
@contacts.arguments(TimelineQuerySchema, location="query")
@contacts.response(200, paged(EventSchema))
@contacts.alt_response(404, description="No such contact (or merged: `details.merged_into`)")
def contact_timeline(args: dict, contact_id: str):
    """The contact's touchpoints, newest first

    Ordered by occurred_at then event_id, both descending. A merged contact's events moved to
    the contact it was merged into.
    """
    after = cursor_key(args["cursor"], str, str)
    after_at = None
    if after is not None:
        try:
            after_at = datetime.fromisoformat(after[0])
        except ValueError:
            raise invalid(
                "cursor is not valid; start again without it", code="invalid_cursor"
            ) from None
        if after_at.tzinfo is None:
            raise invalid("cursor is not valid; start again without it", code="invalid_cursor")
    with segment_connection() as conn:
        rows = timeline_rows(
            conn,
            tenant_id(),
            contact_id,
            limit=args["limit"] + 1,
            after_at=after_at,
            after_event=after[1] if after else None,
        )
    return page(rows, args["limit"], key=lambda r: [r["occurred_at"].isoformat(), r["event_id"]])


def timeline_rows(
    conn,
    tenant: str,
    contact_id: str,
    *,
    limit: int,
    after_at: datetime | None = None,
    after_event: str | None = None,
) -> list[dict]:
    """Up to ``limit`` of a contact's touchpoints, newest first (occurred_at, then event_id,
    both descending) before (``after_at``, ``after_event``): GET .../timeline's query, the
    console's contact page too (404 ApiError when the contact is unknown, merged or erased)."""
    found = conn.execute(
        "SELECT 1 FROM contacts WHERE tenant_id = %s AND contact_id = %s",
        (tenant, contact_id),
    ).fetchone()
    if found is None:
        raise _contact_missing(conn, tenant, contact_id)
    return conn.execute(
        """SELECT event_id, type, occurred_at, attributes FROM events
            WHERE tenant_id = %(tenant)s AND contact_id = %(contact)s
              AND (%(at)s::timestamptz IS NULL
                   OR (occurred_at, event_id) < (%(at)s::timestamptz, %(event)s::text))
            ORDER BY occurred_at DESC, event_id DESC
            LIMIT %(n)s""",
        {"tenant": tenant, "contact": contact_id, "at": after_at, "event": after_event,
         "n": limit},
    ).fetchall()  # fmt: skip
