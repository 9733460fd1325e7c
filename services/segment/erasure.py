"""Erasure of a person (PIPL art. 47; docs/privacy.md): `DELETE /api/v1/contacts/<id>` and
`siyu contact erase`.

In one transaction of the segment schema:
1. the contact (and the contacts merged into it earlier) is deleted from every table that holds
   it: the contact row, identities, events, stage history, segment memberships, merges, the
   enrichment queues (contacts, group joins), queued profiles, and any other table with a
   ``contact_id`` column;
2. the keyed hash of each of its identities is recorded in ``erased_identities`` with the time:
   the consumer drops touchpoints of these identities received before it (a replay of the topic,
   a redelivery), while one received later is a new person (they followed again);
3. the outbox gets a Kafka tombstone per profile key (compaction removes the profile from
   ``siyu.profiles.v1``) and the announcement on ``siyu.erasures.v1``: outreach deletes the person
   from its audience and anonymises what it sent them, ingest destroys the person's encryption
   keys (services/ingest/shredding.py) so the raw payloads left on the topics cannot be read.

The outbox makes the announcement as durable as the deletion: both commit or neither.
An exclusive per-tenant advisory lock waits for the consumer's in-flight batches of the tenant
(they hold it shared), so none of them re-creates the contact from a touchpoint read before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from psycopg import Connection, sql

from services.segment import store
from services.segment.derive import refresh_accounts, refresh_members
from services.segment.topics import Topics
from shared.job_results import forget_results
from shared.privacy import encode_erasure, identity_hash
from shared.tenants import Tenant

log = structlog.get_logger("siyu.segment.erasure")

# Advisory lock class of the per-tenant erasure lock (the object id is hashtext(tenant_id)).
LOCK_CLASS = 0x4552  # "ER"
MAX_MERGE_DEPTH = 50

# Tables deleted by contact id explicitly (in this order); any other table of the schema with a
# contact_id column is emptied of the person as well, so a table added later is not forgotten.
_BY_CONTACT = ("events", "segment_members", "identities")


@dataclass(frozen=True)
class Erasure:
    contact_id: str
    status: str  # "erased" | "already_erased"
    erased_at: datetime
    identities: int = 0
    merged: tuple[str, ...] = ()


def tenant_lock(conn: Connection, tenant_id: str, *, shared: bool) -> None:
    """The consumer holds it shared for each batch; an erasure holds it exclusive."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(
        sql.SQL("SELECT {}(%s, hashtext(%s))").format(sql.Identifier(function)),
        (LOCK_CLASS, tenant_id),
    )


def erased_before(conn: Connection, tenant_id: str, hashes: list[str]) -> dict[str, datetime]:
    """{identity hash: erased_at} for the erased identities among ``hashes``."""
    if not hashes:
        return {}
    rows = conn.execute(
        "SELECT identity_hash, erased_at FROM erased_identities "
        "WHERE tenant_id = %s AND identity_hash = ANY(%s)",
        (tenant_id, hashes),
    ).fetchall()
    return {r["identity_hash"]: r["erased_at"] for r in rows}


def previous(conn: Connection, tenant_id: str, contact_id: str) -> Erasure | None:
    row = conn.execute(
        "SELECT erased_at, identities FROM erasures WHERE tenant_id = %s AND contact_id = %s",
        (tenant_id, contact_id),
    ).fetchone()
    if row is None:
        return None
    return Erasure(contact_id, "already_erased", row["erased_at"], row["identities"])


def _merged_into(conn: Connection, tenant_id: str, contact_id: str) -> list[str]:
    """Every contact merged (directly or through others) into ``contact_id``."""
    rows = conn.execute(
        "WITH RECURSIVE merged(id, depth) AS ("
        "  SELECT from_contact, 1 FROM contact_merges WHERE tenant_id = %(t)s "
        "  AND into_contact = %(c)s"
        "  UNION SELECT m.from_contact, merged.depth + 1 FROM contact_merges m "
        "  JOIN merged ON m.tenant_id = %(t)s AND m.into_contact = merged.id "
        "  WHERE merged.depth < %(max)s"
        ") SELECT DISTINCT id FROM merged WHERE id <> %(c)s ORDER BY id",
        {"t": tenant_id, "c": contact_id, "max": MAX_MERGE_DEPTH},
    ).fetchall()
    return [r["id"] for r in rows]


def _other_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND column_name IN ('contact_id', 'tenant_id') "
        "AND table_name NOT IN ('contacts', 'erasures') AND table_name <> ALL(%s) "
        "GROUP BY table_name HAVING count(*) = 2 ORDER BY table_name",
        (list(_BY_CONTACT),),
    ).fetchall()
    return [r["table_name"] for r in rows]


def erase_contact(
    conn: Connection,
    tenant: Tenant,
    contact_id: str,
    *,
    actor: str,
    reason: str,
    topics: Topics,
    now: datetime | None = None,
) -> Erasure | None:
    """Erase the contact in ``conn``'s transaction; None when the tenant has no such contact
    (and never had: a contact erased before answers ``already_erased``)."""
    tenant_lock(conn, tenant.id, shared=False)
    locked = store.lock_with_members(conn, tenant.id, [contact_id])
    row = next((r for r in locked if r["contact_id"] == contact_id), None)
    if row is None:
        return previous(conn, tenant.id, contact_id)
    now = now or datetime.now(UTC)
    merged = _merged_into(conn, tenant.id, contact_id)
    people = [contact_id, *merged]
    identities = conn.execute(
        "SELECT kind, value FROM identities WHERE tenant_id = %s AND contact_id = %s",
        (tenant.id, contact_id),
    ).fetchall()
    hashes = sorted({identity_hash(tenant.id, r["kind"], r["value"]) for r in identities})
    if hashes:
        conn.execute(
            "INSERT INTO erased_identities (tenant_id, identity_hash, erased_at) "
            "SELECT %s, h, %s FROM unnest(%s::text[]) AS h "
            "ON CONFLICT (tenant_id, identity_hash) DO UPDATE SET erased_at = EXCLUDED.erased_at",
            (tenant.id, now, hashes),
        )
    external = [r["value"] for r in identities if r["kind"] == "external_userid"]
    if external:
        conn.execute(
            "DELETE FROM enrichment_queue WHERE tenant_id = %s AND external_userid = ANY(%s)",
            (tenant.id, external),
        )
        conn.execute(
            "DELETE FROM chat_join_queue WHERE tenant_id = %s AND external_userid = ANY(%s)",
            (tenant.id, external),
        )
    for table in _BY_CONTACT:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND contact_id = ANY(%s)").format(
                sql.Identifier(table)
            ),
            (tenant.id, people),
        )
    for table in _other_tables(conn):
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND contact_id = ANY(%s)").format(
                sql.Identifier(table)
            ),
            (tenant.id, people),
        )
    conn.execute(
        "DELETE FROM stage_history WHERE tenant_id = %s AND subject_kind = 'contact' "
        "AND subject_id = ANY(%s)",
        (tenant.id, people),
    )
    conn.execute(
        "DELETE FROM contact_merges WHERE tenant_id = %s "
        "AND (from_contact = ANY(%s) OR into_contact = ANY(%s))",
        (tenant.id, people, people),
    )
    keys = [f"{tenant.id}:{c}" for c in people]
    # A profile still queued would follow the tombstone and bring the profile back.
    conn.execute(
        "DELETE FROM outbox WHERE tenant_id = %s AND topic = %s AND key = ANY(%s)",
        (tenant.id, topics.profiles, keys),
    )
    conn.execute(
        "DELETE FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s)", (tenant.id, people)
    )
    forget_results(conn, tenant.id, people)  # dry-run samples name contacts
    _refresh_account(conn, tenant, row["account_id"], topics)
    announcement = encode_erasure(
        {
            "tenant_id": tenant.id,
            "contact_id": contact_id,
            "merged": merged,
            "identity_hashes": hashes,
            "erased_at": now.isoformat(),
        }
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (tenant_id, topic, key, value) VALUES (%s, %s, %s, %s)",
            [(tenant.id, topics.profiles, key, None) for key in keys]
            + [(tenant.id, topics.erasures, f"{tenant.id}:{contact_id}", announcement)],
        )
    conn.execute(
        "INSERT INTO erasures (tenant_id, contact_id, erased_at, actor, reason, identities) "
        "SELECT %s, c, %s, %s, %s, %s FROM unnest(%s::text[]) AS c "
        # The same id erased again: the person had come back (as new) and is erased again.
        "ON CONFLICT (tenant_id, contact_id) DO UPDATE SET erased_at = EXCLUDED.erased_at, "
        "actor = EXCLUDED.actor, reason = EXCLUDED.reason, identities = EXCLUDED.identities",
        (tenant.id, now, actor, reason, len(hashes), people),
    )
    log.info("contact_erased", tenant_id=tenant.id, contact_id=contact_id,
             identities=len(hashes), merged=len(merged))  # fmt: skip
    return Erasure(contact_id, "erased", now, len(hashes), tuple(merged))


def _refresh_account(conn: Connection, tenant: Tenant, account_id: str | None, topics: Topics):
    """The account loses a member: its roles, stage view and flags, and its members' profiles."""
    if account_id is None:
        return
    # Its last member gone, nothing re-derives the account: it keeps no trace of the person.
    conn.execute(
        "UPDATE accounts SET members = 0, roles_engaged = '{}' WHERE tenant_id = %s "
        "AND account_id = %s AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = %s "
        "AND c.account_id = %s)",
        (tenant.id, account_id, tenant.id, account_id),
    )
    changed = refresh_accounts(conn, tenant, [account_id], event_ids={}, topics=topics)
    refresh_members(conn, tenant, changed, topics=topics)


# --- `siyu contact erase` -------------------------------------------------------------------------


def main(settings, *, tenant: str, contact: str, reason: str, actor: str) -> int:
    """Erase one contact from the command line, audited like the API's DELETE."""
    import click

    from shared.api.audit import audit
    from shared.db import create_pool
    from shared.errors import UnknownTenant
    from shared.tenants import load_tenants

    found = load_tenants(settings.tenants_path).get(tenant)
    if found is None:
        raise UnknownTenant(f"unknown tenant {tenant!r} (not in {settings.tenants_path})")
    if not reason.strip():
        raise click.UsageError("--reason must not be empty")
    topics = Topics.with_prefix(settings.kafka.topic_prefix)
    pool = create_pool(
        settings.require_database(),
        name="contact-erase",
        schema="segment",
        timeouts=settings.worker_db,
    )
    try:
        with pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL search_path TO segment, outreach")  # audit_log is outreach's
            done = erase_contact(conn, found, contact, actor=actor, reason=reason, topics=topics)
            if done is not None and done.status == "erased":
                details = {"reason": reason, "identities": done.identities,
                           "merged": list(done.merged), "via": "cli"}  # fmt: skip
                audit(conn, actor, tenant, "contact.erase", contact, details)
    finally:
        pool.close()
    if done is None:
        click.echo(f"no contact {contact!r} in tenant {tenant!r}", err=True)
        return 1
    click.echo(f"{contact}: {done.status} at {done.erased_at.isoformat()} "
               f"({done.identities} identities); the segment outbox announces it")  # fmt: skip
    return 0
