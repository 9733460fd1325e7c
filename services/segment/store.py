"""The segment schema's SQL: contacts, identities, merges, events, accounts (bound parameters).

Functions take an open connection inside the caller's transaction: one batch of touchpoints is
applied all or nothing (see services/segment/consumer.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from services.segment.identity import IdentityKey, Resolution
from shared.db import columns


def known_contacts(conn: Connection, tenant_id: str, identities: list[IdentityKey]):
    """The contact of each identity already linked, as {(kind, value): contact_id}."""
    if not identities:
        return {}
    rows = conn.execute(
        "SELECT kind, value, contact_id FROM identities "
        "WHERE tenant_id = %s AND (kind, value) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (tenant_id, [k for k, _ in identities], [v for _, v in identities]),
    ).fetchall()
    return {(r["kind"], r["value"]): r["contact_id"] for r in rows}


def apply_resolution(
    conn: Connection, tenant_id: str, plan: Resolution, *, at: datetime, event_id: str, cause: str
) -> None:
    target = plan.contact_id
    if plan.create:
        conn.execute(
            "INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (tenant_id, target, at, at),
        )
    for other in plan.merge:
        merge_contact(conn, tenant_id, other, target, at=at, event_id=event_id, cause=cause)
    for kind, value in plan.link:
        conn.execute(
            "INSERT INTO identities (tenant_id, kind, value, contact_id, first_seen) "
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, kind, value) DO NOTHING",
            (tenant_id, kind, value, target, at),
        )


def merge_contact(
    conn: Connection, tenant_id: str, source: str, target: str, *, at, event_id: str, cause: str
) -> None:
    """Fold ``source`` into ``target``: identities, events, history and profile; nothing counted
    twice (events keep one row per event id)."""
    params = {"tenant": tenant_id, "source": source, "target": target}
    conn.execute(
        "UPDATE identities SET contact_id = %(target)s "
        "WHERE tenant_id = %(tenant)s AND contact_id = %(source)s",
        params,
    )
    conn.execute(
        "INSERT INTO events (tenant_id, event_id, contact_id, type, occurred_at, attributes) "
        "SELECT tenant_id, event_id, %(target)s, type, occurred_at, attributes FROM events "
        "WHERE tenant_id = %(tenant)s AND contact_id = %(source)s ON CONFLICT DO NOTHING",
        params,
    )
    conn.execute(
        "DELETE FROM events WHERE tenant_id = %(tenant)s AND contact_id = %(source)s", params
    )
    # The newer profile wins field by field; tags are united; the earliest evidence is kept.
    conn.execute(
        """
        UPDATE contacts t SET
            created_at = LEAST(t.created_at, s.created_at),
            last_event_at = GREATEST(t.last_event_at, s.last_event_at),
            name = CASE WHEN s.profile_at > t.profile_at OR t.profile_at IS NULL
                        THEN COALESCE(s.name, t.name) ELSE COALESCE(t.name, s.name) END,
            title = CASE WHEN s.profile_at > t.profile_at OR t.profile_at IS NULL
                         THEN COALESCE(s.title, t.title) ELSE COALESCE(t.title, s.title) END,
            corp_name = CASE WHEN s.profile_at > t.profile_at OR t.profile_at IS NULL
                         THEN COALESCE(s.corp_name, t.corp_name)
                         ELSE COALESCE(t.corp_name, s.corp_name) END,
            profile_at = GREATEST(t.profile_at, s.profile_at),
            account_id = COALESCE(t.account_id, s.account_id),
            -- A re-keyed contact starts without a stage: it continues from the source's. The
            -- rules then move it forward on the merged evidence.
            stage_since = CASE WHEN t.stage IS NULL THEN s.stage_since ELSE t.stage_since END,
            stage = COALESCE(t.stage, s.stage),
            tags = ARRAY(SELECT DISTINCT x FROM unnest(t.tags || s.tags) AS x ORDER BY x),
            attributes = CASE WHEN s.profile_at > t.profile_at OR t.profile_at IS NULL
                              THEN t.attributes || s.attributes
                              ELSE s.attributes || t.attributes END
        FROM contacts s
        WHERE t.tenant_id = %(tenant)s AND t.contact_id = %(target)s
          AND s.tenant_id = %(tenant)s AND s.contact_id = %(source)s
        """,
        params,
    )
    conn.execute(
        "UPDATE stage_history SET subject_id = %(target)s "
        "WHERE tenant_id = %(tenant)s AND subject_kind = 'contact' AND subject_id = %(source)s",
        params,
    )
    conn.execute(
        "DELETE FROM contacts WHERE tenant_id = %(tenant)s AND contact_id = %(source)s", params
    )
    conn.execute(
        "INSERT INTO contact_merges "
        "(tenant_id, from_contact, into_contact, cause, event_id, merged_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (tenant_id, source, target, cause, event_id, at),
    )
    refresh_counts(conn, tenant_id, target)


def refresh_counts(conn: Connection, tenant_id: str, contact_id: str) -> None:
    conn.execute(
        """
        UPDATE contacts c SET
            events_count = e.n,
            created_at = LEAST(c.created_at, COALESCE(e.first, c.created_at)),
            last_event_at = GREATEST(c.last_event_at, COALESCE(e.last, c.last_event_at))
        FROM (SELECT count(*) AS n, min(occurred_at) AS first, max(occurred_at) AS last
              FROM events WHERE tenant_id = %(tenant)s AND contact_id = %(contact)s) e
        WHERE c.tenant_id = %(tenant)s AND c.contact_id = %(contact)s
        """,
        {"tenant": tenant_id, "contact": contact_id},
    )


def stored_events(conn: Connection, tenant_id: str, event_ids: list[str]) -> set[tuple[str, str]]:
    """The (event id, contact id) pairs already stored for these events."""
    if not event_ids:
        return set()
    rows = conn.execute(
        "SELECT event_id, contact_id FROM events WHERE tenant_id = %s AND event_id = ANY(%s)",
        (tenant_id, event_ids),
    ).fetchall()
    return {(r["event_id"], r["contact_id"]) for r in rows}


def record_events(conn: Connection, tenant_id: str, rows: list[tuple]) -> None:
    """Store applied touchpoints, (event_id, contact_id, type, occurred_at, attributes) each, and
    count them on their contacts. Counting only the rows this statement inserted keeps counts
    exact even when another consumer stores the same events concurrently (a rebalance)."""
    event_ids, contacts, types, times, attributes = columns(rows)
    conn.execute(
        """
        WITH stored AS (
            INSERT INTO events (tenant_id, event_id, contact_id, type, occurred_at, attributes)
            SELECT %(tenant)s, e, c, t, o, a
            FROM unnest(%(events)b::text[], %(contacts)b::text[], %(types)b::text[],
                        %(times)b::timestamptz[], %(attributes)b::jsonb[]) AS u(e, c, t, o, a)
            ON CONFLICT DO NOTHING
            RETURNING contact_id, occurred_at
        )
        UPDATE contacts SET events_count = events_count + s.n,
            created_at = LEAST(created_at, s.first), last_event_at = GREATEST(last_event_at, s.last)
        FROM (SELECT contact_id, count(*) AS n, min(occurred_at) AS first,
                     max(occurred_at) AS last FROM stored GROUP BY contact_id) s
        WHERE contacts.tenant_id = %(tenant)s AND contacts.contact_id = s.contact_id
        """,
        {"tenant": tenant_id, "events": event_ids, "contacts": contacts, "types": types,
         "times": times, "attributes": attributes},
    )  # fmt: skip


def account_targets(conn: Connection, tenant_id: str, keys: list[str]) -> dict[str, str]:
    """{account key: the account it was merged into} for the merged ones among ``keys``."""
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT account_id, merged_into FROM accounts "
        "WHERE tenant_id = %s AND account_id = ANY(%s) AND merged_into IS NOT NULL",
        (tenant_id, keys),
    ).fetchall()
    return {r["account_id"]: r["merged_into"] for r in rows}


def update_profile(
    conn: Connection, tenant_id: str, contact_id: str, at: datetime, fields: dict[str, Any]
) -> None:
    """Name, title, company from CRM or WeCom: the latest by event time wins (order-free)."""
    columns = {k: v for k, v in fields.items() if k in ("name", "title", "corp_name") and v}
    extra = {k: v for k, v in fields.items() if k not in columns and v is not None}
    if not columns and not extra:
        return
    conn.execute(
        """
        UPDATE contacts SET
            name = CASE WHEN profile_at IS NULL OR %(at)s >= profile_at
                        THEN COALESCE(%(name)s, name) ELSE COALESCE(name, %(name)s) END,
            title = CASE WHEN profile_at IS NULL OR %(at)s >= profile_at
                         THEN COALESCE(%(title)s, title) ELSE COALESCE(title, %(title)s) END,
            corp_name = CASE WHEN profile_at IS NULL OR %(at)s >= profile_at
                             THEN COALESCE(%(corp)s, corp_name)
                             ELSE COALESCE(corp_name, %(corp)s) END,
            attributes = CASE WHEN profile_at IS NULL OR %(at)s >= profile_at
                              THEN attributes || %(extra)s ELSE %(extra)s || attributes END,
            profile_at = GREATEST(profile_at, %(at)s)
        WHERE tenant_id = %(tenant)s AND contact_id = %(contact)s
        """,
        {
            "at": at,
            "name": columns.get("name"),
            "title": columns.get("title"),
            "corp": columns.get("corp_name"),
            "extra": Jsonb(extra),
            "tenant": tenant_id,
            "contact": contact_id,
        },
    )


def set_tags(
    conn: Connection, tenant_id: str, contact_id: str, at: datetime, tags: list[str]
) -> None:
    """Replace a contact's tags with the set seen at event time ``at``, unless a later set is
    already stored (the latest by event time wins, whatever the order of application)."""
    conn.execute(
        "UPDATE contacts SET tags = %s, tags_at = %s "
        "WHERE tenant_id = %s AND contact_id = %s AND (tags_at IS NULL OR tags_at <= %s)",
        (sorted(set(tags)), at, tenant_id, contact_id, at),
    )


def ensure_account(
    conn: Connection, tenant_id: str, account_id: str, name: str, at: datetime
) -> None:
    # The name shown is the one of the earliest evidence (ties: the smallest), not the first
    # processed: a replay whose partitions interleave differently must name it the same.
    conn.execute(
        "INSERT INTO accounts (tenant_id, account_id, name, created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (tenant_id, account_id) DO UPDATE SET "
        "name = CASE WHEN EXCLUDED.created_at < accounts.created_at "
        "  OR (EXCLUDED.created_at = accounts.created_at AND EXCLUDED.name < accounts.name) "
        "  THEN EXCLUDED.name ELSE accounts.name END, "
        "created_at = LEAST(accounts.created_at, EXCLUDED.created_at)",
        (tenant_id, account_id, name, at),
    )


def attach_account(conn: Connection, tenant_id: str, contact_id: str, account_id: str) -> None:
    conn.execute(
        "UPDATE contacts SET account_id = %s WHERE tenant_id = %s AND contact_id = %s",
        (account_id, tenant_id, contact_id),
    )
