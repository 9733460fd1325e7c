"""Removing a deleted tenant's rows from one service's schema, in small batches.

Every table of the schema with a ``tenant_id`` column is purged, except the ones that keep the
record of the deletion itself (``KEEP``); tables referencing others go first, so foreign keys
never stop it. Each batch is its own short transaction: a large tenant never holds a lock that
another tenant waits for (docs/security.md "Safe defaults").
"""

from __future__ import annotations

from psycopg import sql

from shared.config import DbTimeouts

KEEP = frozenset({"audit_log", "deleted_tenants"})  # who deleted what, and when
BATCH = 5000


def tenant_tables(conn) -> list[str]:
    """The schema's tables with a tenant_id column, referencing tables before referenced ones."""
    tables = {
        r["table_name"] if isinstance(r, dict) else r[0]
        for r in conn.execute(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' "
            "AND t.table_type = 'BASE TABLE'"
        ).fetchall()
    } - KEEP
    references = [
        (r["child"], r["parent"]) if isinstance(r, dict) else (r[0], r[1])
        for r in conn.execute(
            "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE k.contype = 'f' AND n.nspname = current_schema()"
        ).fetchall()
    ]
    ordered: list[str] = []
    left = set(tables)
    while left:
        # A table no remaining table references can go now.
        free = sorted(t for t in left if not any(p == t and c in left and c != t
                                                 for c, p in references))  # fmt: skip
        if not free:  # a reference cycle: the database would say which
            free = sorted(left)
        ordered += free
        left -= set(free)
    return ordered


def purge(pool, tenant_id: str, *, batches: int | None = None, size: int = BATCH) -> bool:
    """Delete up to ``batches`` batches of ``tenant_id``'s rows (all when None); True when none
    is left in the schema of ``pool``."""
    with pool.connection() as conn:
        tables = tenant_tables(conn)
    done = 0
    for table in tables:
        statement = sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM {t} WHERE tenant_id = %s LIMIT %s))"
        ).format(t=sql.Identifier(table))
        while batches is None or done < batches:
            with pool.connection() as conn:
                deleted = conn.execute(statement, (tenant_id, size)).rowcount
            # Only a batch that deleted counts against the bound: a schema with more tables
            # than ``batches`` must still finish once they are empty.
            done += 1 if deleted else 0
            if deleted < size:
                break
        else:
            return False
    return True


def purge_schemas(
    dsn: str,
    tenant_id: str,
    schemas: dict[str, str],
    *,
    admin_schema: str,
    timeouts: DbTimeouts | None = None,
) -> dict[str, bool]:
    """``siyu tenants purge``: every batch of ``tenant_id``'s rows in each schema (service ->
    schema name); the tenant must have been deleted through the admin API first (its
    ``deleted_tenants`` row in ``admin_schema``). ``timeouts``: ``Settings.worker_db``."""
    from shared.db import create_pool
    from shared.errors import SiyuError

    with create_pool(dsn, name="purge", schema=admin_schema, max_size=1, timeouts=timeouts) as pool:
        with pool.connection() as conn:
            deleted = conn.execute(
                "SELECT 1 FROM deleted_tenants WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()
        if deleted is None:
            raise SiyuError(
                f"tenant {tenant_id!r} was not deleted through the admin API "
                "(DELETE /api/v1/tenants/<id>): refusing to purge its data",
                code="tenant_not_deleted",
            )
    done = {}
    for service, schema in schemas.items():
        with create_pool(dsn, name="purge", schema=schema, max_size=1, timeouts=timeouts) as pool:
            done[service] = purge(pool, tenant_id)
    return done
