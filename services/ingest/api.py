"""Admin API routes of ingest: the business-event API tokens of a tenant (admin role).

The admin API, a composition root, mounts these (siyu/api.py); the tokens live in ingest's
schema (migration 0002; ids and expiry 0003), reached through ``context().schema_for("ingest")``.
The audit record goes to the admin tables in the same transaction.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.api import (
    TENANT,
    Blueprint,
    PageArgs,
    audit,
    connection,
    context,
    cursor_key,
    not_found,
    page,
    paged,
    principal,
    require,
    tenant_id,
)
from shared.api.auth import bounded_expiry
from shared.expiry import expires_at_field
from shared.tokens import EVENT_TOKENS, insert_token, list_tokens, revoke_token

blp = Blueprint(
    "ingest_tokens",
    __name__,
    description="Bearer tokens of the business-event API (POST /api/v1/events on ingest)",
)


class IngestTokenSchema(Schema):
    token_id = fields.String(required=True, metadata={"description": "Public id, evt_..."})
    tenant_id = fields.String(required=True)
    name = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: never"})
    revoked_at = fields.DateTime(allow_none=True)


class NewIngestTokenSchema(IngestTokenSchema):
    token = fields.String(required=True, metadata={"description": "Shown once; store it now"})


class IngestTokenCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    expires_at = expires_at_field()


def _schema() -> str:
    return context().schema_for("ingest")


def event_tokens(conn, tenant: str, schema: str, *, limit: int, after=None) -> list[dict]:
    """The tenant's event API tokens in ingest's ``schema``, newest first (never a secret)."""
    return list_tokens(
        conn, EVENT_TOKENS, tenant_id=tenant, schema=schema, limit=limit, after=after
    )


def issue_event_token(conn, who, tenant: str, name: str, expires_at, schema: str):
    """Create an event API token of ``tenant`` in ingest's ``schema``, audited as ``who`` (a
    principal, or ``console:<login>``): the row and the secret, shown once."""
    row, secret = insert_token(
        conn, EVENT_TOKENS, tenant_id=tenant, name=name, schema=schema, expires_at=expires_at
    )
    details = {"name": name, "expires_at": row["expires_at"] and row["expires_at"].isoformat()}
    audit(conn, who, tenant, "ingest_token.create", row["token_id"], details)
    return row, secret


def withdraw_event_token(conn, who, tenant: str, token_id: str, schema: str) -> dict | None:
    """Revoke one of ``tenant``'s event API tokens, audited as ``who``; None if it has none."""
    row = revoke_token(conn, EVENT_TOKENS, token_id, tenant_id=tenant, schema=schema)
    if row is not None:
        audit(conn, who, tenant, "ingest_token.revoke", token_id, {"name": row["name"]})
    return row


@blp.route("/ingest-tokens", methods=["GET"])
@require("admin", scope=TENANT)
@blp.arguments(PageArgs, location="query")
@blp.response(200, paged(IngestTokenSchema))
def list_ingest_tokens(args: dict):
    """The tenant's event API tokens, newest first (never their secrets)"""
    after = cursor_key(args["cursor"], str, str)
    with connection() as conn:
        rows = event_tokens(conn, tenant_id(), _schema(), limit=args["limit"] + 1, after=after)
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["token_id"]])


@blp.route("/ingest-tokens", methods=["POST"])
@require("admin", scope=TENANT)
@blp.arguments(IngestTokenCreateSchema)
@blp.response(201, NewIngestTokenSchema)
def create_ingest_token(body: dict):
    """Create an event API token for the tenant, expiring no later than the caller's token"""
    expires_at = bounded_expiry(principal(), body["expires_at"])
    with connection() as conn:
        row, secret = issue_event_token(
            conn, principal(), tenant_id(), body["name"], expires_at, _schema()
        )
    return {**row, "token": secret}


@blp.route("/ingest-tokens/<token_id>", methods=["DELETE"])
@require("admin", scope=TENANT)
@blp.response(204)
def revoke_ingest_token(token_id: str):
    """Revoke one of the tenant's event API tokens; refused at once by every ingest process"""
    with connection() as conn:
        if withdraw_event_token(conn, principal(), tenant_id(), token_id, _schema()) is None:
            raise not_found("token", token_id)  # another tenant's token is "not found" too
    return None


BLUEPRINTS = (blp,)
