"""Admin routes of B2B accounts (``/accounts``): list, detail by buying role, stage override,
merge.

Overrides and merges are written, derived on (``derive.py``) and audited in one transaction.
Shared pieces: api_people_common.py.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate
from psycopg import sql
from psycopg.types.json import Jsonb

from services.segment import store
from services.segment.api_common import (
    current_tenant,
    segment_connection,
    segment_topics,
)
from services.segment.api_people_common import (
    ACCOUNT_ITEM_COLUMNS,
    ACCOUNT_SCORE,
    CONTACT_SCORE,
    LAST_ACTIVE,
    SOURCE_CHANNEL_FILTER,
    STAGE_EXAMPLE,
    UNKNOWN_ROLE,
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
from services.segment.roles import role_coverage
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
from shared.vocabulary import BUYING_ROLES, RISK_FLAGS

MEMBERS_LIMIT = 500  # account members shown in an account detail (GET /contacts?account_id=...)

accounts = Blueprint("accounts", __name__, description="B2B company accounts")


class AccountItemSchema(Schema):
    account_id = fields.String(required=True, metadata={"description": "Normalised company"})
    name = fields.String(required=True, metadata={"description": "The name as first seen"})
    stage = fields.String(allow_none=True)
    score = fields.Float(required=True)
    members = fields.Integer(required=True, metadata={"description": "Contacts of the account"})
    roles_engaged = fields.List(
        fields.String(metadata={"enum": list(BUYING_ROLES)}),
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
    source_channel = SOURCE_CHANNEL_FILTER


class AccountMemberSchema(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    role_confidence = fields.Float(allow_none=True)
    stage = fields.String(allow_none=True)
    score = fields.Float(required=True)
    last_event_at = fields.DateTime(required=True)
    last_active_at = fields.DateTime(allow_none=True, metadata={"description": LAST_ACTIVE})


class CoverageSchema(Schema):
    engaged = fields.List(
        fields.String(), required=True, metadata={"description": "BUYING_ROLES order"}
    )
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
    source_channel = fields.Nested(SourceChannelSchema, required=True)
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


def account_rows(
    conn,
    tenant: str,
    *,
    limit: int,
    after: str | None = None,
    q: str | None = None,
    stage: str | None = None,
    flag: str | None = None,
    source_channel: str | None = None,
) -> list[dict]:
    """Up to ``limit`` of a tenant's accounts (ACCOUNT_ITEM_COLUMNS) by account_id after
    ``after``, filtered by name or id substring, stage and risk flag: GET /accounts's query,
    the console's too."""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM accounts a "
            """WHERE tenant_id = %(tenant)s AND merged_into IS NULL
             AND (%(after)s::text IS NULL OR account_id > %(after)s)
             AND (%(q)s::text IS NULL OR name ILIKE %(like)s OR account_id ILIKE %(like)s)
             AND (%(stage)s::text IS NULL OR stage = %(stage)s)
             AND (%(flag)s::jsonb IS NULL OR risk_flags @> %(flag)s)
             {channel}
           ORDER BY account_id
           LIMIT %(n)s"""
        ).format(ACCOUNT_ITEM_COLUMNS, channel=channel_cut("a", source_channel)),
        {
            "tenant": tenant,
            "after": after,
            "q": q,
            "like": like(q) if q else None,
            "stage": stage,
            "flag": Jsonb([{"flag": flag}]) if flag else None,
            "source_channel": source_channel,
            "n": limit,
        },
    ).fetchall()


@accounts.route("/accounts", methods=["GET"])
@require("viewer", scope=TENANT)
@accounts.arguments(AccountQuerySchema, location="query")
@accounts.response(200, paged(AccountItemSchema))
def list_accounts(args: dict):
    """Accounts by account_id, filtered by stage, risk flag or name"""
    after = cursor_key(args["cursor"], str)
    with segment_connection() as conn:
        check_filters(conn, args)
        rows = account_rows(
            conn,
            tenant_id(),
            after=after[0] if after else None,
            q=args["q"],
            stage=args["stage"],
            flag=args["risk_flag"],
            source_channel=args["source_channel"],
            limit=args["limit"] + 1,
        )
    return page(rows, args["limit"], key=lambda r: [r["account_id"]])


@accounts.route("/accounts/<account_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@accounts.response(200, AccountSchema)
@accounts.alt_response(404, description="No such account")
def get_account(account_id: str):
    """An account: members by buying role, role coverage, risk flags, attributes, stage history"""
    with segment_connection() as conn:
        return account_view(conn, tenant_id(), account_id)


def account_view(conn, tenant: str, account_id: str) -> dict:
    """An account of ``tenant`` with its members by buying role, role coverage and stage
    history: GET /accounts/<id>'s answer, the console's account page too (404 ApiError for an
    unknown or merged account)."""
    row = conn.execute(
        sql.SQL(
            "SELECT a.*, {} AS score FROM accounts a "
            "WHERE tenant_id = %s AND account_id = %s AND merged_into IS NULL"
        ).format(ACCOUNT_SCORE),
        (tenant, account_id),
    ).fetchone()
    if row is None:
        raise _account_missing(conn, tenant, account_id)
    members = conn.execute(
        sql.SQL(
            "SELECT contact_id, name, title, role, role_confidence, stage, {} AS score, "
            "last_event_at, last_active_at "
            "FROM contacts c WHERE tenant_id = %s AND account_id = %s "
            "ORDER BY score DESC, contact_id LIMIT %s"
        ).format(CONTACT_SCORE),
        (tenant, account_id, MEMBERS_LIMIT),
    ).fetchall()
    history = stage_history(conn, tenant, "account", account_id)
    by_role: dict[str, list[dict]] = {}
    for role in (*BUYING_ROLES, UNKNOWN_ROLE):
        group = [
            m for m in members if (m["role"] if m["role"] in BUYING_ROLES else UNKNOWN_ROLE) == role
        ]
        if group:
            by_role[role] = group
    coverage = role_coverage(r for r in row["roles_engaged"] if r in BUYING_ROLES)
    return {
        **row,
        "members_by_role": by_role,
        "source_channel": source_channel(row),
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
        row = store.lock_live_account(conn, tenant.id, account_id)
        if row is None:
            raise _account_missing(conn, tenant.id, account_id)
        check_stage(conn, tenant, body["stage"])
        override_subject_stage(conn, tenant, "account", account_id, row, body)
        return account_view(conn, tenant.id, account_id)


class AccountMergeSchema(Schema):
    into = fields.String(
        required=True,
        validate=validate.Length(min=1, max=300),
        metadata={"description": "The account that lives on (not itself merged)"},
    )
    reason = reason_field()


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
        found = store.lock_merging_accounts(conn, tenant.id, {account_id, into})
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
        members = store.merge_account(conn, tenant.id, account_id, into)
        derive_touched(conn, tenant, {m["contact_id"]: [] for m in members}, segment_topics())
        moved = [m["contact_id"] for m in members if m["account_id"] == account_id]
        details = {**body, "members": moved}
        audit(conn, principal(), tenant.id, "account.merge", account_id, details)
        return account_view(conn, tenant.id, into)
