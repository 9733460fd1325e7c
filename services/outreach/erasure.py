"""Outreach's part of erasing a person (docs/privacy.md), from ``siyu.erasures.v1``.

The person (the contact and the contacts merged into it) leaves the audience, the customer
groups' member lists, the frequency caps' exposures and the platform budget's count. What was
sent stays countable for the campaign's statistics but no longer says to whom: deliveries and
runs about the contact get an opaque ``erased:<id>`` subject, lose the address (openid /
external_userid), and those not sent yet are excluded or cancelled (one in flight is excluded
when it would go back to pending: services/outreach/store.py). Any other table of the schema
with a ``contact_id`` column is emptied of the person as well. Idempotent: a redelivered erasure
finds nothing more to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import Connection, sql

from services.outreach import budget, group_tasks, welcome
from shared.job_results import forget_results
from shared.privacy import identity_hash


def _other_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND column_name IN ('contact_id', 'tenant_id') AND table_name <> 'audience' "
        "GROUP BY table_name HAVING count(*) = 2 ORDER BY table_name"
    ).fetchall()
    return [r["table_name"] for r in rows]


def forget(conn: Connection, erasures: Iterable[dict[str, Any]]) -> int:
    """Apply erasures in ``conn``'s transaction; return how many audience rows were deleted."""
    deleted = 0
    tables = None
    for erasure in erasures:
        tenant = erasure["tenant_id"]
        people = [erasure["contact_id"], *erasure.get("merged", [])]
        # A profile newer than the erasure is the person back as someone new (docs/privacy.md).
        deleted += conn.execute(
            "DELETE FROM audience WHERE tenant_id = %s AND contact_id = ANY(%s) "
            "AND updated_at <= %s",
            (tenant, people, erasure["erased_at"]),
        ).rowcount
        tables = _other_tables(conn) if tables is None else tables
        for table in tables:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND contact_id = ANY(%s)").format(
                    sql.Identifier(table)
                ),
                (tenant, people),
            )
        _leave_groups(conn, tenant, set(erasure.get("identity_hashes") or ()))
        budget.forget(conn, tenant, set(erasure.get("identity_hashes") or ()), erasure["erased_at"])
        group_tasks.forget(conn, tenant, people, set(erasure.get("identity_hashes") or ()))
        welcome.forget(conn, tenant, set(erasure.get("identity_hashes") or ()))
        forget_results(conn, tenant, people)  # preview samples name recipients
        conn.execute(
            "DELETE FROM exposures WHERE tenant_id = %s AND subject_kind = 'contact' "
            "AND subject_id = ANY(%s)",
            (tenant, people),
        )
        conn.execute(
            "UPDATE deliveries SET recipient_id = 'erased:' || delivery_id, address = NULL, "
            "status = CASE WHEN status = 'pending' THEN 'excluded' ELSE status END, "
            "reason = CASE WHEN status = 'pending' THEN 'erased' ELSE reason END, "
            "next_attempt_at = CASE WHEN status = 'pending' THEN NULL ELSE next_attempt_at END "
            "WHERE tenant_id = %s AND recipient_kind = 'contact' AND recipient_id = ANY(%s)",
            (tenant, people),
        )
        conn.execute(
            "UPDATE campaign_runs SET trigger_key = replace(trigger_key, subject_id, "
            "'erased:' || run_id), subject_id = 'erased:' || run_id, "
            "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END "
            "WHERE tenant_id = %s AND subject_kind = 'contact' AND subject_id = ANY(%s)",
            (tenant, people),
        )
    return deleted


def _leave_groups(conn: Connection, tenant: str, hashes: set[str]) -> None:
    """Take the person out of the customer groups' member lists (found by keyed hash: the
    erasure names no identity). The next group sync re-adds a member still in the group on
    WeCom: the platform's state, a new person for Siyu."""
    if not hashes:
        return
    rows = conn.execute(
        "SELECT chat_id, members FROM groups WHERE tenant_id = %s AND members <> '{}'", (tenant,)
    ).fetchall()
    for row in rows:
        gone = [m for m in row["members"] if identity_hash(tenant, "external_userid", m) in hashes]
        if gone:
            conn.execute(
                "UPDATE groups SET members = ARRAY(SELECT m FROM unnest(members) AS m "
                "WHERE m <> ALL(%s)) WHERE tenant_id = %s AND chat_id = %s",
                (gone, tenant, row["chat_id"]),
            )


def forget_profiles(conn: Connection, keys: Iterable[tuple[str, str]]) -> int:
    """Tombstones on the profiles topic (null values): the contacts leave the audience."""
    keys = list(keys)
    if not keys:
        return 0
    return conn.execute(
        "DELETE FROM audience a USING unnest(%s::text[], %s::text[]) AS g(t, c) "
        "WHERE a.tenant_id = g.t AND a.contact_id = g.c",
        ([t for t, _ in keys], [c for _, c in keys]),
    ).rowcount
