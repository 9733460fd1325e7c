"""Admin API routes of the platform itself: tenants (platform tokens), tokens, and "who am I".

Views are thin: the schema validates, a function of ``services.outreach.tokens`` or a statement
here changes the table, ``audit`` records it in the same transaction.
"""

from __future__ import annotations

import psycopg
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from psycopg import sql
from psycopg.types.json import Jsonb

from services.outreach import tenant_deletion
from services.outreach import tokens as token_store
from shared.api import (
    ANY,
    PLATFORM,
    TENANT,
    TENANT_OR_ALL,
    TOKEN_ROLES,
    Blueprint,
    PageArgs,
    audit,
    conflict,
    connection,
    context,
    cursor_key,
    forbidden,
    not_found,
    page,
    paged,
    principal,
    require,
    role_rank,
    tenant_id,
    unknown_tenant,
)
from shared.api.auth import bounded_expiry
from shared.expiry import expires_at_field
from shared.tenants import TENANT_ID_PATTERN
from shared.tokens import revoke_tenant_tokens
from shared.vocabulary import DEFAULT_MODEL, MODES, time_zone_error

LIFECYCLE_MODEL_PATTERN = r"^[a-z0-9_-]{2,40}$"
TENANT_COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("tenant_id", "name", "mode", "lifecycle_model", "timezone", "settings",
                         "created_at", "updated_at"))
)  # fmt: skip
INSERT_TENANT = sql.SQL(
    "INSERT INTO tenants (tenant_id, name, mode, lifecycle_model, timezone, settings) "
    "VALUES (%(tenant_id)s, %(name)s, %(mode)s, %(lifecycle_model)s, %(timezone)s, %(settings)s) "
    "ON CONFLICT (tenant_id) DO NOTHING RETURNING {}"
).format(TENANT_COLUMNS)


def _valid_timezone(value: str) -> None:
    error = time_zone_error(value)
    if error:
        raise ValidationError(error)


# --- tenants -----------------------------------------------------------------------------------

tenants = Blueprint("tenants", __name__, description="Tenants (platform tokens only)")


class TenantSchema(Schema):
    tenant_id = fields.String(required=True)
    name = fields.String(required=True)
    mode = fields.String(required=True, metadata={"enum": list(MODES)})
    lifecycle_model = fields.String(required=True)
    timezone = fields.String(required=True)
    settings = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class TenantCreateSchema(Schema):
    tenant_id = fields.String(
        required=True,
        validate=validate.Regexp(
            TENANT_ID_PATTERN, error="must be 2-40 characters of a-z, 0-9 and -"
        ),
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    lifecycle_model = fields.String(
        load_default=None,
        validate=validate.Regexp(LIFECYCLE_MODEL_PATTERN),
        metadata={"description": "Default: aisceas for b2b, aarrr for b2c"},
    )
    timezone = fields.String(load_default="Asia/Shanghai", validate=_valid_timezone)
    settings = fields.Dict(keys=fields.String(), load_default=dict)


class TenantPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    mode = fields.String(validate=validate.OneOf(MODES))
    lifecycle_model = fields.String(validate=validate.Regexp(LIFECYCLE_MODEL_PATTERN))
    timezone = fields.String(validate=_valid_timezone)
    settings = fields.Dict(keys=fields.String())

    @validates_schema
    def _not_empty(self, data: dict, **kwargs) -> None:
        if not data:
            raise ValidationError("give at least one field to change")


def _tenant_row(conn, tenant: str) -> dict:
    row = conn.execute(
        sql.SQL("SELECT {} FROM tenants WHERE tenant_id = %s").format(TENANT_COLUMNS),
        (tenant,),
    ).fetchone()
    if row is None:
        raise unknown_tenant(tenant)
    return row


@tenants.route("/tenants", methods=["GET"])
@require("viewer", scope=PLATFORM)
@tenants.arguments(PageArgs, location="query")
@tenants.response(200, paged(TenantSchema))
def list_tenants(args: dict):
    """Every tenant, by id"""
    after = cursor_key(args["cursor"], str)
    with connection() as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT {} FROM tenants WHERE %(after)s::text IS NULL OR tenant_id > %(after)s "
                "ORDER BY tenant_id LIMIT %(n)s"
            ).format(TENANT_COLUMNS),
            {"after": after[0] if after else None, "n": args["limit"] + 1},
        ).fetchall()
    return page(rows, args["limit"], key=lambda r: [r["tenant_id"]])


@tenants.route("/tenants", methods=["POST"])
@require("admin", scope=PLATFORM)
@tenants.arguments(TenantCreateSchema)
@tenants.response(201, TenantSchema)
@tenants.alt_response(409, description="A tenant with this id exists")
def create_tenant(body: dict):
    """Create a tenant"""
    body["lifecycle_model"] = body["lifecycle_model"] or DEFAULT_MODEL[body["mode"]]
    with connection() as conn:
        if not tenant_deletion.forget(conn, body["tenant_id"]):
            raise conflict(f"tenant {body['tenant_id']!r} was deleted and its data is still "
                           "being purged; create it again once the purge is done")  # fmt: skip
        try:
            row = conn.execute(
                INSERT_TENANT, {**body, "settings": Jsonb(body["settings"])}
            ).fetchone()
        except psycopg.errors.CheckViolation:
            raise conflict("the tenant does not satisfy the table's checks") from None
        if row is None:
            raise conflict(f"tenant {body['tenant_id']!r} exists")
        audit(conn, principal(), row["tenant_id"], "tenant.create", row["tenant_id"], body)
    return row


@tenants.route("/tenants/<tenant>", methods=["GET"])
@require("viewer", scope=PLATFORM)
@tenants.response(200, TenantSchema)
def get_tenant(tenant: str):
    """One tenant"""
    with connection() as conn:
        return _tenant_row(conn, tenant)


@tenants.route("/tenants/<tenant>", methods=["PATCH"])
@require("admin", scope=PLATFORM)
@tenants.arguments(TenantPatchSchema)
@tenants.response(200, TenantSchema)
def update_tenant(body: dict, tenant: str):
    """Change a tenant's name, mode, lifecycle model, time zone or settings"""
    values = {k: Jsonb(v) if k == "settings" else v for k, v in body.items()}
    assignments = sql.SQL(", ").join(  # schema fields only
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
        for column in values
    )
    with connection() as conn:
        row = conn.execute(
            sql.SQL(
                "UPDATE tenants SET {}, updated_at = now() WHERE tenant_id = %(tenant)s "
                "RETURNING {}"
            ).format(assignments, TENANT_COLUMNS),
            {**values, "tenant": tenant},
        ).fetchone()
        if row is None:
            raise unknown_tenant(tenant)
        audit(conn, principal(), tenant, "tenant.update", tenant, body)
    return row


@tenants.route("/tenants/<tenant>", methods=["DELETE"])
@require("admin", scope=PLATFORM)
@tenants.response(204)
def delete_tenant(tenant: str):
    """Delete a tenant: its tokens (admin and business-event API) are revoked, its campaigns
    end, its outreach data is purged by the worker, and a tenants file still listing it does not
    bring it back"""
    with connection() as conn:
        row = conn.execute(
            "DELETE FROM tenants WHERE tenant_id = %s RETURNING tenant_id", (tenant,)
        ).fetchone()
        if row is None:
            raise unknown_tenant(tenant)
        revoked = revoke_tenant_tokens(conn, tenant)
        events = tenant_deletion.revoke_event_tokens(conn, tenant, context().schema_for("ingest"))
        stopped = tenant_deletion.mark_deleted(conn, tenant, principal().token_id or "api")
        audit(conn, principal(), tenant, "tenant.delete", tenant,
              {"revoked_tokens": revoked, "revoked_event_tokens": events, **stopped})  # fmt: skip
    return None


# --- tokens ------------------------------------------------------------------------------------

tokens = Blueprint(
    "tokens",
    __name__,
    description="Bearer tokens of a tenant (admin role); a platform admin without ?tenant "
    "lists and revokes the platform tokens",
)


class TokenSchema(Schema):
    token_id = fields.String(required=True, metadata={"description": "Public id, tok_..."})
    tenant_id = fields.String(required=True, allow_none=True)
    role = fields.String(required=True, metadata={"enum": list(TOKEN_ROLES)})
    name = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: never"})
    revoked_at = fields.DateTime(allow_none=True)


class NewTokenSchema(TokenSchema):
    token = fields.String(required=True, metadata={"description": "Shown once; store it now"})


class TokenCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf(TOKEN_ROLES))
    expires_at = expires_at_field()


def issue_token(conn, who, tenant: str, body: dict) -> tuple[dict, str]:
    """Create a token of ``tenant`` (``body``: name, role, expires_at already bounded) and audit
    it as ``who`` (a principal, or ``console:<login>``): the row and the secret, shown once."""
    row, secret = token_store.create_token(
        conn, tenant_id=tenant, role=body["role"], name=body["name"],
        expires_at=body["expires_at"],
    )  # fmt: skip
    details = {**body, "expires_at": row["expires_at"] and row["expires_at"].isoformat()}
    audit(conn, who, tenant, "token.create", row["token_id"], details)
    return row, secret


def withdraw_token(conn, who, tenant: str | None, token_id: str) -> dict | None:
    """Revoke one of ``tenant``'s tokens (None: a platform token), audited as ``who``; None if
    the tenant has no such token."""
    row = token_store.revoke_token(conn, token_id, tenant_id=tenant)
    if row is not None:
        audit(conn, who, tenant, "token.revoke", token_id, {"name": row["name"]})
    return row


@tokens.route("/tokens", methods=["GET"])
@require("admin", scope=TENANT_OR_ALL, omitted="the platform tokens")
@tokens.arguments(PageArgs, location="query")
@tokens.response(200, paged(TokenSchema))
def list_tokens(args: dict):
    """The tenant's tokens, newest first (never their secrets); a platform token without
    ?tenant lists the platform tokens"""
    after = cursor_key(args["cursor"], str, str)
    with connection() as conn:
        rows = token_store.list_tokens(
            conn, tenant_id=tenant_id(), limit=args["limit"] + 1, after=after
        )
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["token_id"]])


@tokens.route("/tokens", methods=["POST"])
@require("admin", scope=TENANT)
@tokens.arguments(TokenCreateSchema)
@tokens.response(201, NewTokenSchema)
def create_token(body: dict):
    """Create a token for the tenant, with a role no higher than the caller's and an expiry no
    later than the caller's"""
    caller = principal()
    if role_rank(body["role"]) > role_rank(caller.role):
        raise forbidden(f"a {caller.role} token cannot create a {body['role']} token")
    expires_at = bounded_expiry(caller, body["expires_at"])
    with connection() as conn:
        row, secret = issue_token(conn, caller, tenant_id(), {**body, "expires_at": expires_at})
    return {**row, "token": secret}


@tokens.route("/tokens/<token_id>", methods=["DELETE"])
@require("admin", scope=TENANT_OR_ALL, omitted="the platform tokens")
@tokens.response(204)
def revoke_token(token_id: str):
    """Revoke one of the tenant's tokens (a platform token without ?tenant: one of the
    platform tokens); refused at once by every process"""
    with connection() as conn:
        if withdraw_token(conn, principal(), tenant_id(), token_id) is None:
            raise not_found("token", token_id)  # another tenant's token is "not found" too
    return None


# --- me ----------------------------------------------------------------------------------------

me = Blueprint("me", __name__, description="The calling token")


class MeSchema(Schema):
    token_id = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": list(TOKEN_ROLES)})
    tenant_id = fields.String(
        required=True, allow_none=True, metadata={"description": "null: platform"}
    )
    platform = fields.Boolean(required=True)


@me.route("/me", methods=["GET"])
@require("viewer", scope=ANY)
@me.response(200, MeSchema)
def who_am_i():
    """Who the token belongs to: tenant, role, token id"""
    caller = principal()
    return {
        "token_id": caller.token_id,
        "name": caller.name,
        "role": caller.role,
        "tenant_id": caller.tenant_id,
        "platform": caller.is_platform,
    }


BLUEPRINTS = (me, tenants, tokens)
