"""Deleting a tenant (``DELETE /api/v1/tenants/<id>``): what happens at once, and later.

At once, in the request's transaction: the tenant's row goes, its admin tokens and its
business-event API tokens (ingest's ``api_tokens``) are revoked, its campaigns end and their
pending runs are cancelled (nothing more is sent), and the deletion is remembered in
``deleted_tenants``, so a tenants file still listing the tenant neither seeds it back nor goes
unnoticed (``listed_in_file``, logged at API start). Later, the outreach worker's leader purges
the tenant's rows from the outreach schema in small batches (``purge_pending``).
The segment and ingest schemas and the Kafka topics are the operator's to purge:
docs/security.md "Safe defaults" says how and what stays.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from psycopg import sql
from psycopg_pool import ConnectionPool

from shared.tenant_purge import purge
from shared.tenants import TenantRegistry
from shared.tokens import revoke_tenant_tokens

log = structlog.get_logger("siyu.outreach")

BATCHES_PER_TICK = 20  # x 5000 rows: a tick stays short, a large tenant takes a few ticks


def mark_deleted(conn, tenant_id: str, actor: str) -> dict[str, int]:
    """Stop the tenant's sending and remember the deletion (the caller deletes the row)."""
    ended = conn.execute(
        "UPDATE campaigns SET status = 'ended', updated_at = now() "
        "WHERE tenant_id = %s AND status IN ('draft', 'active', 'paused')",
        (tenant_id,),
    ).rowcount
    cancelled = conn.execute(
        "UPDATE campaign_runs SET status = 'cancelled', lease_until = NULL, "
        "error = 'tenant deleted' WHERE tenant_id = %s AND status IN ('pending', 'running')",
        (tenant_id,),
    ).rowcount
    conn.execute(
        "INSERT INTO deleted_tenants (tenant_id, deleted_by) VALUES (%s, %s) "
        "ON CONFLICT (tenant_id) DO UPDATE SET deleted_at = now(), "
        "deleted_by = EXCLUDED.deleted_by, purged_at = NULL",
        (tenant_id, actor),
    )
    return {"ended_campaigns": ended, "cancelled_runs": cancelled}


def revoke_event_tokens(conn, tenant_id: str, ingest_schema: str) -> int:
    """Revoke the tenant's business-event API tokens in ingest's schema (the admin API's role may
    update them, as for ``DELETE /ingest-tokens``): ingest checks revocation on every batch, so a
    deleted tenant's CRM can no longer post events. No such table (a deployment without
    ingest): no tokens to revoke."""
    table = sql.Identifier(ingest_schema, "api_tokens")
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AS found", (table.as_string(conn),)
    ).fetchone()
    if not found["found"]:
        return 0
    return len(revoke_tenant_tokens(conn, tenant_id, schema=ingest_schema))


def deleted_at(conn, tenant_id: str) -> datetime | None:
    row = conn.execute(
        "SELECT deleted_at FROM deleted_tenants WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    return row["deleted_at"] if row else None


def forget(conn, tenant_id: str) -> bool:
    """An explicit re-creation (POST /tenants) forgets the deletion once the purge is done;
    False while the purge is still running (the caller refuses with 409)."""
    row = conn.execute(
        "DELETE FROM deleted_tenants WHERE tenant_id = %s AND purged_at IS NOT NULL "
        "RETURNING tenant_id",
        (tenant_id,),
    ).fetchone()
    pending = conn.execute(
        "SELECT 1 FROM deleted_tenants WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    return row is not None or pending is None


def listed_in_file(conn, registry: TenantRegistry) -> list[str]:
    """Deleted tenants that the tenants file still lists (not seeded back: reported)."""
    ids = [t.id for t in registry]
    rows = conn.execute(
        "SELECT tenant_id FROM deleted_tenants WHERE tenant_id = ANY(%s) ORDER BY tenant_id",
        (ids,),
    ).fetchall()
    return [r["tenant_id"] for r in rows]


def purge_pending(pool: ConnectionPool, *, batches: int = BATCHES_PER_TICK) -> int:
    """Purge deleted tenants' rows (bounded work per call); returns tenants finished."""
    with pool.connection() as conn:
        pending = [r["tenant_id"] for r in conn.execute(
            "SELECT tenant_id FROM deleted_tenants WHERE purged_at IS NULL "
            "ORDER BY deleted_at LIMIT 10"
        ).fetchall()]  # fmt: skip
    finished = 0
    for tenant_id in pending:
        if not purge(pool, tenant_id, batches=batches):
            return finished  # more next tick
        with pool.connection() as conn:
            conn.execute(
                "UPDATE deleted_tenants SET purged_at = now() "
                "WHERE tenant_id = %s AND purged_at IS NULL",
                (tenant_id,),
            )
        log.info("tenant_purged", tenant_id=tenant_id, schema="outreach")
        finished += 1
    return finished
