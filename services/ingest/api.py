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


@blp.route("/ingest-tokens", methods=["GET"])
@require("admin", scope=TENANT)
@blp.arguments(PageArgs, location="query")
@blp.response(200, paged(IngestTokenSchema))
def list_ingest_tokens(args: dict):
    """The tenant's event API tokens, newest first (never their secrets)"""
    after = cursor_key(args["cursor"], str, str)
    with connection() as conn:
        rows = list_tokens(
            conn, EVENT_TOKENS, tenant_id=tenant_id(), schema=_schema(),
            limit=args["limit"] + 1, after=after,
        )  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["created_at"].isoformat(), r["token_id"]])


@blp.route("/ingest-tokens", methods=["POST"])
@require("admin", scope=TENANT)
@blp.arguments(IngestTokenCreateSchema)
@blp.response(201, NewIngestTokenSchema)
def create_ingest_token(body: dict):
    """Create an event API token for the tenant, expiring no later than the caller's token"""
    tenant = tenant_id()
    with connection() as conn:
        row, secret = insert_token(
            conn,
            EVENT_TOKENS,
            tenant_id=tenant,
            name=body["name"],
            schema=_schema(),
            expires_at=bounded_expiry(principal(), body["expires_at"]),
        )
        details = {
            "name": body["name"],
            "expires_at": row["expires_at"] and row["expires_at"].isoformat(),
        }
        audit(conn, principal(), tenant, "ingest_token.create", row["token_id"], details)
    return {**row, "token": secret}


@blp.route("/ingest-tokens/<token_id>", methods=["DELETE"])
@require("admin", scope=TENANT)
@blp.response(204)
def revoke_ingest_token(token_id: str):
    """Revoke one of the tenant's event API tokens; refused at once by every ingest process"""
    tenant = tenant_id()
    with connection() as conn:
        row = revoke_token(conn, EVENT_TOKENS, token_id, tenant_id=tenant, schema=_schema())
        if row is None:
            raise not_found("token", token_id)  # another tenant's token is "not found" too
        audit(conn, principal(), tenant, "ingest_token.revoke", token_id, {"name": row["name"]})
    return None


BLUEPRINTS = (blp,)
