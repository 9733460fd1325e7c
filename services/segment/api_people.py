"""Admin API routes over the segment service's people: contacts, accounts and segments.

Everything is read from (and segments written to) the segment schema through
``segment_connection()``, always filtered by the tenant of the token: another tenant's ids are
answered 404, and its objects never appear in a list. SQL is static, with bound parameters only;
optional filters are ``(%(x)s IS NULL OR ...)`` clauses. Lists are keyset-paginated
(``PageArgs`` + ``page``); segment changes are audited in the transaction that makes them.

Staff overrides (a contact's role, a contact's or account's stage, an account merge) are written,
derived on (``services/segment/derive.py``) and audited in one transaction; their stage changes
and profiles are queued in the outbox like the consumer's.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime

from flask import request
from marshmallow import Schema, fields, validate
from psycopg.types.json import Jsonb

from services.segment import store
from services.segment.api_common import (
    catalogue_changed,
    current_tenant,
    segment_connection,
    segment_topics,
)
from services.segment.behaviour import Features
from services.segment.derive import derive_touched
from services.segment.erasure import erase_contact as erase
from services.segment.lifecycle.grammar import error_paths
from services.segment.overrides import override_stage
from services.segment.roles import ROLES, role_coverage
from services.segment.rule_names import RuleNames, rule_unknowns
from services.segment.segments import SLUG, SegmentError, TooManySegments, save_segment
from services.segment.tenant_model import model_for
from shared.api import (
    TENANT,
    ApiError,
    Blueprint,
    PageArgs,
    audit,
    conflict,
    cursor_key,
    invalid,
    not_found,
    page,
    paged,
    principal,
    require,
    tenant_id,
)
from shared.api.names import check_one, unknown_names
from shared.vocabulary import BEHAVIOURS, RISK_FLAGS

# Documented examples, valid for the demo tenant acme (schemathesis' examples phase sends them).
SEGMENT_EXAMPLE = {
    "segment_id": "tech-evaluators",
    "name": "Technical evaluators",
    "rule": {"all": [{"attribute": "role", "equals": "technical"},
                     {"stage_at_least": "examination"}]},
}  # fmt: skip
STAGE_EXAMPLE = {"stage": "action", "reason": "Contract signed on paper"}

UNKNOWN_ROLE = "unknown"  # the group of account members without a buying role
HISTORY_LIMIT = 500  # newest stage transitions shown in a detail (oldest first)
MEMBERS_LIMIT = 500  # account members shown in an account detail (GET /contacts?account_id=...)
MAX_MERGE_HOPS = 20  # contact_merges chains followed to the live contact


def _like(text: str) -> str:
    """A substring ILIKE pattern matching ``text`` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _segment_error(exc: SegmentError) -> ApiError:
    """400 ``invalid_segment``; details by request path (``rule.all[0].attribute``...)."""
    if isinstance(exc, TooManySegments):
        return ApiError(400, exc.code, exc.message, {"segment_id": [exc.message]})
    if exc.details:
        details = error_paths(exc.details, "rule")
    else:
        details = {"segment_id" if "segment id" in exc.message else "rule": [exc.message]}
    return ApiError(400, "invalid_segment", exc.message, details)


# --- shared schemas ------------------------------------------------------------------------------


class RiskFlagSchema(Schema):
    flag = fields.String(
        required=True,
        metadata={"enum": ["payment_risk", "churn_risk", "inactive", "new", "growing"]},
    )
    reason = fields.String(required=True, metadata={"description": "For people, with numbers"})
    since = fields.String(
        allow_none=True, metadata={"description": "When the condition began (ISO 8601), if known"}
    )


class StageChangeSchema(Schema):
    from_stage = fields.String(allow_none=True, metadata={"description": "null: first stage"})
    to_stage = fields.String(required=True)
    cause = fields.String(required=True, metadata={"description": "The rule and evidence"})
    event_id = fields.String(allow_none=True, metadata={"description": "The deciding event"})
    changed_at = fields.DateTime(required=True)
    model = fields.String(required=True, metadata={"description": "Lifecycle model, e.g. aisceas"})
    actor = fields.String(allow_none=True, metadata={"description": "Set by manual overrides"})


def _reason() -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Why (kept in the audit log and, for stages, in the cause)"},
    )


class StageOverrideSchema(Schema):
    stage = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "A stage or side stage of the tenant's active lifecycle model"},
    )
    reason = _reason()


def _check_stage(conn, tenant, stage: str) -> None:
    """400 unless ``stage`` is a stage or side stage of the tenant's active model."""
    model = model_for(tenant, conn)
    valid = (*model.stage_names, *model.side_stages)
    error = unknown_names(check_one("stage", f"stage of the {model.name} model", stage, valid))
    if error is not None:
        raise error


def _check_rule_names(conn, tenant_id_: str, rule: object) -> None:
    """400 ``invalid_segment`` for each stage, role, tag or attribute name the tenant lacks."""
    model = model_for(current_tenant(), conn)
    contact_keys = conn.execute(
        "SELECT DISTINCT k FROM contacts, jsonb_object_keys(attributes) k WHERE tenant_id = %s",
        (tenant_id_,),
    ).fetchall()
    account_keys = conn.execute(
        "SELECT DISTINCT k FROM accounts, jsonb_object_keys(attributes) k WHERE tenant_id = %s",
        (tenant_id_,),
    ).fetchall()
    names = RuleNames(
        funnel=tuple(model.stage_names),
        stages=(*model.stage_names, *model.side_stages),
        contact_attributes=(
            *(f.name for f in dataclass_fields(Features)),
            *sorted(r["k"] for r in contact_keys),
        ),
        account_attributes=tuple(sorted(r["k"] for r in account_keys)),
    )
    error = unknown_names(rule_unknowns(rule, names), code="invalid_segment")
    if error is not None:
        raise error


def _check_filters(conn, args: dict) -> None:
    """400 for a filter naming a stage, behaviour or segment the tenant does not have (it
    would list nobody, which reads as "no such people")."""
    found = []
    if args.get("stage"):
        model = model_for(current_tenant(), conn)
        found += check_one("stage", f"stage of the {model.name} model", args["stage"],
                           (*model.stage_names, *model.side_stages))  # fmt: skip
    found += check_one("behaviour", "behaviour", args.get("behaviour"), BEHAVIOURS)
    if args.get("segment"):
        ids = conn.execute(
            "SELECT segment_id FROM segments WHERE tenant_id = %s ORDER BY segment_id LIMIT 200",
            (tenant_id(),),
        ).fetchall()
        found += check_one("segment", "segment", args["segment"], [r["segment_id"] for r in ids])
    error = unknown_names(found)
    if error is not None:
        raise error


def _history(conn, tenant: str, kind: str, subject_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT * FROM (SELECT id, from_stage, to_stage, cause, event_id, changed_at, model, actor "
        "  FROM stage_history WHERE tenant_id = %(tenant)s AND subject_kind = %(kind)s "
        "  AND subject_id = %(id)s ORDER BY changed_at DESC, id DESC LIMIT %(n)s) h "
        "ORDER BY changed_at, id",
        {"tenant": tenant, "kind": kind, "id": subject_id, "n": HISTORY_LIMIT},
    ).fetchall()
    return rows


# --- contacts ------------------------------------------------------------------------------------

contacts = Blueprint(
    "contacts", __name__, description="Contacts: people resolved from every touchpoint"
)

CONTACT_ITEM_COLUMNS = (
    "c.contact_id, c.name, c.title, c.corp_name, c.role, c.stage, c.score, c.account_id, "
    "c.last_event_at"
)


class ContactItemSchema(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    title = fields.String(allow_none=True, metadata={"description": "Job title (职位)"})
    corp_name = fields.String(allow_none=True, metadata={"description": "Company as given"})
    role = fields.String(
        allow_none=True, metadata={"description": "Buying role (B2B)", "enum": list(ROLES)}
    )
    stage = fields.String(allow_none=True, metadata={"description": "Lifecycle stage"})
    score = fields.Float(required=True)
    account_id = fields.String(allow_none=True)
    last_event_at = fields.DateTime(required=True)


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
            [*ROLES, UNKNOWN_ROLE], error="Unknown buying role {input!r}. Valid: {choices}."
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


class ContactSchema(ContactItemSchema):
    role_confidence = fields.Float(allow_none=True, metadata={"description": "0..1"})
    role_source = fields.String(
        allow_none=True,
        metadata={"enum": ["tag", "title", "api"], "description": "api: set by staff (override)"},
    )
    role_override = fields.String(
        allow_none=True,
        metadata={"enum": list(ROLES), "description": "Set by PUT .../role; null: inferred"},
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


def _merged_into(conn, tenant: str, contact_id: str) -> str | None:
    """The live contact a merged (or re-keyed) contact became, following chains of merges."""
    current = contact_id
    for _ in range(MAX_MERGE_HOPS):
        row = conn.execute(
            "SELECT into_contact FROM contact_merges WHERE tenant_id = %s AND from_contact = %s "
            "ORDER BY merged_at DESC, into_contact LIMIT 1",
            (tenant, current),
        ).fetchone()
        if row is None:
            break
        current = row["into_contact"]
        alive = conn.execute(
            "SELECT 1 FROM contacts WHERE tenant_id = %s AND contact_id = %s", (tenant, current)
        ).fetchone()
        if alive is not None:
            break
    return None if current == contact_id else current


def _contact_missing(conn, tenant: str, contact_id: str) -> ApiError:
    into = _merged_into(conn, tenant, contact_id)
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
    role = args["role"]
    params = {
        "tenant": tenant_id(),
        "after": after[0] if after else None,
        "q": args["q"],
        "like": _like(args["q"]) if args["q"] else None,
        "stage": args["stage"],
        "role": None if role == UNKNOWN_ROLE else role,
        "no_role": role == UNKNOWN_ROLE,
        "account": args["account_id"],
        "segment": args["segment"],
        "behaviour": args["behaviour"],
        "min_score": args["min_score"],
        "n": args["limit"] + 1,
    }
    with segment_connection() as conn:
        _check_filters(conn, args)
        rows = conn.execute(
            f"SELECT {CONTACT_ITEM_COLUMNS} FROM contacts c "  # noqa: S608 - a constant
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
                 AND (%(min_score)s::float8 IS NULL OR c.score >= %(min_score)s)
               ORDER BY c.contact_id
               LIMIT %(n)s""",
            params,
        ).fetchall()
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
        return _contact_view(conn, tenant_id(), contact_id)


def _contact_view(conn, tenant: str, contact_id: str) -> dict:
    row = conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = %s",
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
            "SELECT account_id, name, stage, score, members, roles_engaged, risk_flags "
            "FROM accounts WHERE tenant_id = %s AND account_id = %s",
            (tenant, row["account_id"]),
        ).fetchone()
    history = _history(conn, tenant, "contact", contact_id)
    return {
        **row,
        "identities": identities,
        "segments": member_of,
        "account": account,
        "stage_history": history,
    }


class RoleOverrideSchema(Schema):
    role = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(ROLES, error="Unknown buying role {input!r}. Valid: {choices}."),
        metadata={"description": "The buying role; null: infer it from title and tags again"},
    )
    reason = _reason()


class ContactRoleSchema(Schema):
    contact_id = fields.String(required=True)
    role = fields.String(allow_none=True, metadata={"enum": list(ROLES)})
    role_confidence = fields.Float(allow_none=True)
    role_source = fields.String(allow_none=True, metadata={"enum": ["tag", "title", "api"]})
    role_override = fields.String(allow_none=True, metadata={"enum": list(ROLES)})


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
        row = _locked_contact(conn, tenant, contact_id)
        conn.execute(
            "UPDATE contacts SET role_override = %s WHERE tenant_id = %s AND contact_id = %s",
            (body["role"], tenant.id, contact_id),
        )
        derive_touched(conn, tenant, {contact_id: []}, segment_topics())
        after = conn.execute(
            "SELECT contact_id, role, role_confidence, role_source, role_override FROM contacts "
            "WHERE tenant_id = %s AND contact_id = %s",
            (tenant.id, contact_id),
        ).fetchone()
        details = {
            "role": body["role"],
            "reason": body["reason"],
            "previous": {"role": row["role"], "role_override": row["role_override"]},
        }
        audit(conn, principal(), tenant.id, "contact.role_override", contact_id, details)
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
        _check_stage(conn, tenant, body["stage"])
        _override_stage(conn, tenant, "contact", contact_id, row, body)
        return _contact_view(conn, tenant.id, contact_id)


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


def _override_stage(conn, tenant, kind: str, subject_id: str, row: dict, body: dict) -> None:
    if row["stage"] == body["stage"]:
        raise conflict(f"{kind} {subject_id!r} is in stage {body['stage']!r} already")
    who = principal()
    override_stage(
        conn, tenant, kind, row, body["stage"], reason=body["reason"], actor=who.token_id,
        now=datetime.now(UTC), topics=segment_topics(),
    )  # fmt: skip
    details = {**body, "previous": row["stage"], "model": model_for(tenant, conn).name}
    audit(conn, who, tenant.id, f"{kind}.stage_override", subject_id, details)


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
    tenant = tenant_id()
    with segment_connection() as conn:
        found = conn.execute(
            "SELECT 1 FROM contacts WHERE tenant_id = %s AND contact_id = %s",
            (tenant, contact_id),
        ).fetchone()
        if found is None:
            raise _contact_missing(conn, tenant, contact_id)
        rows = conn.execute(
            """SELECT event_id, type, occurred_at, attributes FROM events
                WHERE tenant_id = %(tenant)s AND contact_id = %(contact)s
                  AND (%(at)s::timestamptz IS NULL
                       OR (occurred_at, event_id) < (%(at)s::timestamptz, %(event)s::text))
                ORDER BY occurred_at DESC, event_id DESC
                LIMIT %(n)s""",
            {
                "tenant": tenant,
                "contact": contact_id,
                "at": after_at,
                "event": after[1] if after else None,
                "n": args["limit"] + 1,
            },
        ).fetchall()
    return page(rows, args["limit"], key=lambda r: [r["occurred_at"].isoformat(), r["event_id"]])


# --- accounts ------------------------------------------------------------------------------------

accounts = Blueprint("accounts", __name__, description="B2B company accounts")

ACCOUNT_ITEM_COLUMNS = "account_id, name, stage, score, members, roles_engaged, risk_flags"


class AccountItemSchema(Schema):
    account_id = fields.String(required=True, metadata={"description": "Normalised company"})
    name = fields.String(required=True, metadata={"description": "The name as first seen"})
    stage = fields.String(allow_none=True)
    score = fields.Float(required=True)
    members = fields.Integer(required=True, metadata={"description": "Contacts of the account"})
    roles_engaged = fields.List(
        fields.String(metadata={"enum": list(ROLES)}),
        required=True,
        metadata={"description": "Buying roles with a touch in the last 90 days"},
    )
    risk_flags = fields.List(fields.Nested(RiskFlagSchema), required=True)


class AccountQuerySchema(PageArgs):
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Substring of the name or id (case-insensitive)"},
    )
    stage = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    risk_flag = fields.String(
        load_default=None,
        validate=validate.OneOf(RISK_FLAGS, error="Unknown risk flag {input!r}. Valid: {choices}."),
        metadata={"description": "Accounts carrying this risk flag"},
    )


class AccountMemberSchema(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    role_confidence = fields.Float(allow_none=True)
    stage = fields.String(allow_none=True)
    score = fields.Float(required=True)
    last_event_at = fields.DateTime(required=True)


class CoverageSchema(Schema):
    engaged = fields.List(fields.String(), required=True, metadata={"description": "ROLES order"})
    missing = fields.List(fields.String(), required=True)
    ratio = fields.Float(required=True, metadata={"description": "engaged / all buying roles"})


class AccountSchema(AccountItemSchema):
    created_at = fields.DateTime(required=True)
    stage_since = fields.DateTime(allow_none=True)
    refreshed_at = fields.DateTime(allow_none=True, metadata={"description": "Last derivation"})
    attributes = fields.Dict(
        required=True, metadata={"description": "industry, size, lifecycle, region, ..."}
    )
    members_by_role = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Nested(AccountMemberSchema)),
        required=True,
        metadata={
            "description": f"Buying role -> members, highest score first; `{UNKNOWN_ROLE}` holds "
            f"members without a role. At most {MEMBERS_LIMIT} members; the full list: "
            "GET /contacts?account_id=..."
        },
    )
    coverage = fields.Nested(CoverageSchema, required=True)
    stage_history = fields.List(fields.Nested(StageChangeSchema), required=True)


def _account_missing(conn, tenant: str, account_id: str) -> ApiError:
    row = conn.execute(
        "SELECT merged_into FROM accounts WHERE tenant_id = %s AND account_id = %s",
        (tenant, account_id),
    ).fetchone()
    if row is None or row["merged_into"] is None:
        return not_found("account", account_id)
    return ApiError(
        404,
        "not_found",
        f"account {account_id!r} was merged into {row['merged_into']!r}",
        {"merged_into": row["merged_into"]},
    )


@accounts.route("/accounts", methods=["GET"])
@require("viewer", scope=TENANT)
@accounts.arguments(AccountQuerySchema, location="query")
@accounts.response(200, paged(AccountItemSchema))
def list_accounts(args: dict):
    """Accounts by account_id, filtered by stage, risk flag or name"""
    after = cursor_key(args["cursor"], str)
    flag = args["risk_flag"]
    with segment_connection() as conn:
        _check_filters(conn, args)
        rows = conn.execute(
            f"SELECT {ACCOUNT_ITEM_COLUMNS} FROM accounts "  # noqa: S608 - a constant
            """WHERE tenant_id = %(tenant)s AND merged_into IS NULL
                 AND (%(after)s::text IS NULL OR account_id > %(after)s)
                 AND (%(q)s::text IS NULL OR name ILIKE %(like)s OR account_id ILIKE %(like)s)
                 AND (%(stage)s::text IS NULL OR stage = %(stage)s)
                 AND (%(flag)s::jsonb IS NULL OR risk_flags @> %(flag)s)
               ORDER BY account_id
               LIMIT %(n)s""",
            {
                "tenant": tenant_id(),
                "after": after[0] if after else None,
                "q": args["q"],
                "like": _like(args["q"]) if args["q"] else None,
                "stage": args["stage"],
                "flag": Jsonb([{"flag": flag}]) if flag else None,
                "n": args["limit"] + 1,
            },
        ).fetchall()
    return page(rows, args["limit"], key=lambda r: [r["account_id"]])


@accounts.route("/accounts/<account_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@accounts.response(200, AccountSchema)
@accounts.alt_response(404, description="No such account")
def get_account(account_id: str):
    """An account: members by buying role, role coverage, risk flags, attributes, stage history"""
    with segment_connection() as conn:
        return _account_view(conn, tenant_id(), account_id)


def _account_view(conn, tenant: str, account_id: str) -> dict:
    row = conn.execute(
        "SELECT * FROM accounts WHERE tenant_id = %s AND account_id = %s AND merged_into IS NULL",
        (tenant, account_id),
    ).fetchone()
    if row is None:
        raise _account_missing(conn, tenant, account_id)
    members = conn.execute(
        "SELECT contact_id, name, title, role, role_confidence, stage, score, last_event_at "
        "FROM contacts WHERE tenant_id = %s AND account_id = %s "
        "ORDER BY score DESC, contact_id LIMIT %s",
        (tenant, account_id, MEMBERS_LIMIT),
    ).fetchall()
    history = _history(conn, tenant, "account", account_id)
    by_role: dict[str, list[dict]] = {}
    for role in (*ROLES, UNKNOWN_ROLE):
        group = [m for m in members if (m["role"] if m["role"] in ROLES else UNKNOWN_ROLE) == role]
        if group:
            by_role[role] = group
    coverage = role_coverage(r for r in row["roles_engaged"] if r in ROLES)
    return {
        **row,
        "members_by_role": by_role,
        "coverage": {
            "engaged": list(coverage.engaged),
            "missing": list(coverage.missing),
            "ratio": coverage.ratio,
        },
        "stage_history": history,
    }


@accounts.route("/accounts/<account_id>/stage", methods=["POST"])
@require("operator", scope=TENANT)
@accounts.arguments(StageOverrideSchema, example=STAGE_EXAMPLE)
@accounts.response(200, AccountSchema)
@accounts.alt_response(404, description="No such account (or merged: `details.merged_into`)")
@accounts.alt_response(409, description="The account is in this stage already")
def override_account_stage(body: dict, account_id: str):
    """Move the account to a stage by hand (audited)

    Recorded in the stage history with the caller as `actor` and the cause `manual: <reason>`,
    published as a stage change, audited as `account.stage_override`; members' segments and
    profiles see the new account stage. The account moves on from here when its facts or its
    members' stages support a later stage.
    """
    tenant = current_tenant()
    with segment_connection() as conn:
        # Members first, then the account: the order the consumer locks in (derive_touched).
        conn.execute(
            "SELECT 1 FROM contacts WHERE tenant_id = %s AND account_id = %s "
            "ORDER BY contact_id FOR UPDATE",
            (tenant.id, account_id),
        )
        row = conn.execute(
            "SELECT * FROM accounts WHERE tenant_id = %s AND account_id = %s "
            "AND merged_into IS NULL FOR UPDATE",
            (tenant.id, account_id),
        ).fetchone()
        if row is None:
            raise _account_missing(conn, tenant.id, account_id)
        _check_stage(conn, tenant, body["stage"])
        _override_stage(conn, tenant, "account", account_id, row, body)
        return _account_view(conn, tenant.id, account_id)


class AccountMergeSchema(Schema):
    into = fields.String(
        required=True,
        validate=validate.Length(min=1, max=300),
        metadata={"description": "The account that lives on (not itself merged)"},
    )
    reason = _reason()


@accounts.route("/accounts/<account_id>/merge", methods=["POST"])
@require("admin", scope=TENANT)
@accounts.arguments(AccountMergeSchema)
@accounts.response(200, AccountSchema, description="The account merged into, derived again")
@accounts.alt_response(404, description="No such account (or merged: `details.merged_into`)")
@accounts.alt_response(409, description="Into itself, or into an account that was merged")
def merge_account(body: dict, account_id: str):
    """Merge the account into another: two names found to be one company

    Every member moves to the target, which is derived again (stage, roles, risk flags, members'
    profiles and segments). The merged account is kept for its history: GET answers 404 with
    `details.merged_into`, and new events naming its company attach to the target. Accounts
    merged into this one earlier now point at the target too. Audited as `account.merge`.
    """
    tenant = current_tenant()
    into = body["into"]
    with segment_connection() as conn:
        # Both accounts locked in id order, like the consumer's ensure_account locks one.
        found = {
            r["account_id"]: r
            for r in conn.execute(
                "SELECT account_id, merged_into FROM accounts WHERE tenant_id = %s "
                "AND account_id = ANY(%s) ORDER BY account_id FOR UPDATE",
                (tenant.id, sorted({account_id, into})),
            )
        }
        source, target = found.get(account_id), found.get(into)
        if source is None or source["merged_into"] is not None:
            raise _account_missing(conn, tenant.id, account_id)
        if into == account_id:
            raise conflict(f"account {account_id!r} cannot be merged into itself")
        if target is None:
            raise not_found("account", into)
        if target["merged_into"] is not None:
            raise conflict(
                f"account {into!r} was merged into {target['merged_into']!r}; merge into that",
                {"merged_into": target["merged_into"]},
            )
        members = conn.execute(
            "SELECT contact_id, account_id FROM contacts WHERE tenant_id = %s "
            "AND account_id = ANY(%s) ORDER BY contact_id FOR UPDATE",
            (tenant.id, [account_id, into]),
        ).fetchall()
        conn.execute(
            "UPDATE contacts SET account_id = %s WHERE tenant_id = %s AND account_id = %s",
            (into, tenant.id, account_id),
        )
        # merged_into always names a live account: one look-up resolves it (apply._account).
        conn.execute(
            "UPDATE accounts SET merged_into = %s WHERE tenant_id = %s "
            "AND (account_id = %s OR merged_into = %s)",
            (into, tenant.id, account_id, account_id),
        )
        derive_touched(conn, tenant, {m["contact_id"]: [] for m in members}, segment_topics())
        moved = [m["contact_id"] for m in members if m["account_id"] == account_id]
        details = {**body, "members": moved}
        audit(conn, principal(), tenant.id, "account.merge", account_id, details)
        return _account_view(conn, tenant.id, into)


# --- segments ------------------------------------------------------------------------------------

segments = Blueprint(
    "segments",
    __name__,
    description="Named dynamic segments. Membership is filled by the segment consumer as events "
    "arrive and in full by `siyu segment recompute --tenant ID`; a new or changed rule shows in "
    "members after the next of these.",
)

MEMBERSHIP_NOTE = (
    "Membership is not computed by this call: the segment consumer (`siyu segment consume`) "
    "keeps it current for contacts whose events it applies, and `siyu segment recompute "
    "--tenant ID` evaluates every contact against every rule. Until then `members_count` "
    "reflects the previous rule (0 for a new segment)."
)

SEGMENT_COLUMNS = (
    "s.segment_id, s.name, s.description, s.rule, s.created_at, s.updated_at, "
    "CASE WHEN s.disabled_at IS NULL THEN 'enabled' ELSE 'disabled' END AS state, "
    "s.disabled_at, s.disabled_reason, "
    "(SELECT count(*) FROM segment_members m WHERE m.tenant_id = s.tenant_id "
    "AND m.segment_id = s.segment_id)::int AS members_count"
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
    members_count = fields.Integer(
        required=True, metadata={"description": "Current members (see the membership note)"}
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


def _segment_row(conn, tenant: str, segment_id: str, *, lock: bool = False) -> dict:
    query = (
        f"SELECT {SEGMENT_COLUMNS} FROM segments s "  # noqa: S608 - constants
        "WHERE s.tenant_id = %s AND s.segment_id = %s" + (" FOR UPDATE OF s" if lock else "")
    )
    row = conn.execute(query, (tenant, segment_id)).fetchone()
    if row is None:
        raise not_found("segment", segment_id)
    return row


@segments.route("/segments", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.arguments(PageArgs, location="query")
@segments.response(200, paged(SegmentSchema))
def list_segments(args: dict):
    """Segments by segment_id, with their current member counts

    Membership is filled by the segment consumer and by `siyu segment recompute`.
    """
    after = cursor_key(args["cursor"], str)
    with segment_connection() as conn:
        rows = conn.execute(
            f"SELECT {SEGMENT_COLUMNS} FROM segments s "  # noqa: S608 - a constant
            "WHERE s.tenant_id = %(tenant)s "
            "AND (%(after)s::text IS NULL OR s.segment_id > %(after)s) "
            "ORDER BY s.segment_id LIMIT %(n)s",
            {"tenant": tenant_id(), "after": after[0] if after else None, "n": args["limit"] + 1},
        ).fetchall()
    return page(rows, args["limit"], key=lambda r: [r["segment_id"]])


@segments.route("/segments", methods=["POST"])
@require("admin", scope=TENANT)
@segments.arguments(SegmentCreateSchema, example=SEGMENT_EXAMPLE)
@segments.response(201, SegmentSchema)
@segments.alt_response(409, description="A segment with this id exists")
def create_segment(body: dict):
    """Define a segment (rule validated: 400 `invalid_segment` with details by field)

    A rule is at most 10 levels of conditions deep, 50 conditions, 8 KiB as JSON; a tenant has
    at most 100 segments (400 `too_many_segments`).

    Membership is not computed by this call: the segment consumer keeps it current for contacts
    whose events it applies, and `siyu segment recompute --tenant ID` evaluates every contact.
    Until then `members_count` is 0.
    """
    tenant = tenant_id()
    with segment_connection() as conn:
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
        audit(conn, principal(), tenant, "segment.create", body["segment_id"], body)
        catalogue_changed(conn)
        return _segment_row(conn, tenant, body["segment_id"])


@segments.route("/segments/<segment_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.response(200, SegmentSchema)
@segments.alt_response(404, description="No such segment")
def get_segment(segment_id: str):
    """A segment's definition and its live member count

    Membership is filled by the segment consumer and by `siyu segment recompute`.
    """
    with segment_connection() as conn:
        return _segment_row(conn, tenant_id(), segment_id)


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

    Members are not re-evaluated by this call: the segment consumer re-evaluates contacts as
    their events arrive, and `siyu segment recompute --tenant ID` re-evaluates every contact.
    Until then the members (and `members_count`) follow the previous rule.
    """
    tenant = tenant_id()
    with segment_connection() as conn:
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
        audit(conn, principal(), tenant, "segment.replace", segment_id, details)
        catalogue_changed(conn)
        return _segment_row(conn, tenant, segment_id)


@segments.route("/segments/<segment_id>", methods=["DELETE"])
@require("admin", scope=TENANT)
@segments.response(204)
@segments.alt_response(404, description="No such segment")
def delete_segment(segment_id: str):
    """Delete a segment and its membership"""
    tenant = tenant_id()
    with segment_connection() as conn:
        row = conn.execute(
            "DELETE FROM segments WHERE tenant_id = %s AND segment_id = %s "
            "RETURNING name, description, rule",
            (tenant, segment_id),
        ).fetchone()
        if row is None:
            raise not_found("segment", segment_id)
        audit(conn, principal(), tenant, "segment.delete", segment_id, dict(row))
        catalogue_changed(conn)
    return None


@segments.route("/segments/<segment_id>/members", methods=["GET"])
@require("viewer", scope=TENANT)
@segments.arguments(PageArgs, location="query")
@segments.response(200, paged(MemberSchema))
@segments.alt_response(404, description="No such segment")
def segment_members(args: dict, segment_id: str):
    """The segment's members, by contact_id

    Membership is filled by the segment consumer (`siyu segment consume`) as events arrive and
    in full by `siyu segment recompute --tenant ID`; a segment just created or changed shows its
    new members after the next of these.
    """
    after = cursor_key(args["cursor"], str)
    tenant = tenant_id()
    with segment_connection() as conn:
        _segment_row(conn, tenant, segment_id)
        rows = conn.execute(
            f"SELECT {CONTACT_ITEM_COLUMNS}, m.since FROM segment_members m "  # noqa: S608
            """JOIN contacts c ON c.tenant_id = m.tenant_id AND c.contact_id = m.contact_id
               WHERE m.tenant_id = %(tenant)s AND m.segment_id = %(segment)s
                 AND (%(after)s::text IS NULL OR m.contact_id > %(after)s)
               ORDER BY m.contact_id
               LIMIT %(n)s""",
            {
                "tenant": tenant,
                "segment": segment_id,
                "after": after[0] if after else None,
                "n": args["limit"] + 1,
            },
        ).fetchall()
    return page(rows, args["limit"], key=lambda r: [r["contact_id"]])


BLUEPRINTS = (contacts, accounts, segments)
