"""The audit log: who (token id and name), did what (action, target, details), when, in which
tenant. Every mutation route calls ``audit`` in the transaction of the change it records, so an
entry exists exactly when the change does. ``GET /api/v1/audit`` reads it back (admin role)."""

from __future__ import annotations

from datetime import datetime

from marshmallow import Schema, fields, validate
from psycopg.types.json import Jsonb

from shared.api.app import Blueprint
from shared.api.auth import TENANT_OR_ALL, require, tenant_id
from shared.api.context import connection
from shared.api.pagination import PageArgs, cursor_key, page, paged
from shared.tokens import Principal

# The "actor" of changes made from the command line rather than with a token.
CLI_ACTOR = "cli"
# The "actor" of changes the services make on their own (a segment disabled because its rule
# failed while being evaluated).
SYSTEM_ACTOR = "system"


def audit(
    conn,
    actor: Principal | str,
    tenant_id: str | None,
    action: str,
    target: str | None,
    details: dict | None = None,
) -> int:
    """Record one mutation (``action`` like ``token.create``) on ``conn``; returns the entry id."""
    if isinstance(actor, Principal):
        who, name = actor.token_id, actor.name
    else:
        who, name = actor, None
    row = conn.execute(
        "INSERT INTO audit_log (tenant_id, actor, actor_name, action, target, details) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (tenant_id, who, name, action, target, Jsonb(details or {})),
    ).fetchone()
    return row["id"] if isinstance(row, dict) else row[0]


def list_audit(
    conn,
    *,
    tenant_id: str | None,
    limit: int,
    after_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    all_tenants: bool = False,
    actor: str | None = None,
) -> list[dict]:
    """Newest first, up to ``limit`` entries older than ``after_id``; one tenant unless
    ``all_tenants`` (platform tokens without ``?tenant``); ``action`` and ``actor`` exact."""
    return conn.execute(
        """SELECT id, tenant_id, actor, actor_name, action, target, details, at
             FROM audit_log
            WHERE (%(all)s OR tenant_id = %(tenant)s)
              AND (%(after)s::bigint IS NULL OR id < %(after)s)
              AND (%(action)s::text IS NULL OR action = %(action)s)
              AND (%(actor)s::text IS NULL OR actor = %(actor)s)
              AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
            ORDER BY id DESC
            LIMIT %(n)s""",
        {
            "all": all_tenants,
            "tenant": tenant_id,
            "after": after_id,
            "action": action,
            "actor": actor,
            "since": since,
            "n": limit,
        },
    ).fetchall()


# --- GET /api/v1/audit ---------------------------------------------------------------------------


blp = Blueprint("audit", __name__, description="Who changed what, when")


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    tenant_id = fields.String(allow_none=True)
    actor = fields.String(required=True, metadata={"description": "Token id, `cli`, or `system`"})
    actor_name = fields.String(allow_none=True, metadata={"description": "The token's name"})
    action = fields.String(required=True, metadata={"description": "e.g. token.create"})
    target = fields.String(allow_none=True)
    details = fields.Dict()
    at = fields.DateTime(required=True)


class AuditQuerySchema(PageArgs):
    action = fields.String(validate=validate.Length(min=1, max=100), load_default=None)
    since = fields.AwareDateTime(
        load_default=None, metadata={"description": "Only entries at or after (ISO 8601)"}
    )


@blp.route("/audit", methods=["GET"])
@require("admin", scope=TENANT_OR_ALL)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, paged(AuditEntrySchema))
def list_audit_entries(args: dict):
    """The audit log, newest first

    A tenant admin sees its tenant's entries; a platform admin sees one tenant's with
    `?tenant=ID`, or every tenant's without.
    """
    after = cursor_key(args["cursor"], int)
    tenant = tenant_id()
    with connection() as conn:
        rows = list_audit(
            conn,
            tenant_id=tenant,
            all_tenants=tenant is None,
            limit=args["limit"] + 1,
            after_id=after[0] if after else None,
            action=args["action"],
            since=args["since"],
        )
    return page(rows, args["limit"], key=lambda r: [r["id"]])
