"""The segment schema's SQL: contacts, identities, merges, events, accounts (bound parameters).

Functions take an open connection inside the caller's transaction: one batch of touchpoints is
applied all or nothing (see services/segment/consumer.py). Derivation locks contacts in id
order, then their accounts in id order; the API's overrides take the same order. The batched
writes of derived values are in writes.py; a route's own simple read stays with its route.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

from services.segment.facts import EventFact
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


def lower_first_seen(
    conn: Connection, tenant_id: str, first_seen: dict[tuple[str, str], datetime]
) -> None:
    """Identities seen earlier than their stored first_seen (a late event) take the earlier
    time (docs/domain.md "Event time and replay")."""
    if not first_seen:
        return
    kinds, values, times = columns([(k, v, at) for (k, v), at in sorted(first_seen.items())])
    conn.execute(
        "UPDATE identities i SET first_seen = u.t "
        "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS u(k, v, t) "
        "WHERE i.tenant_id = %s AND i.kind = u.k AND i.value = u.v AND i.first_seen > u.t",
        (kinds, values, times, tenant_id),
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
            last_active_at = GREATEST(t.last_active_at, s.last_active_at),
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
            -- Source channels as services/segment/sources.py merges them: the earliest first,
            -- the newest latest, the smaller channel name on a tie.
            first_channel = CASE WHEN s.first_channel IS NOT NULL AND (t.first_channel IS NULL
                                   OR (s.first_channel_at, s.first_channel)
                                      < (t.first_channel_at, t.first_channel))
                                 THEN s.first_channel ELSE t.first_channel END,
            first_channel_at = CASE WHEN s.first_channel IS NOT NULL AND (t.first_channel IS NULL
                                      OR (s.first_channel_at, s.first_channel)
                                         < (t.first_channel_at, t.first_channel))
                                    THEN s.first_channel_at ELSE t.first_channel_at END,
            latest_channel = CASE WHEN s.latest_channel IS NOT NULL AND (t.latest_channel IS NULL
                                    OR s.latest_channel_at > t.latest_channel_at
                                    OR (s.latest_channel_at = t.latest_channel_at
                                        AND s.latest_channel < t.latest_channel))
                                  THEN s.latest_channel ELSE t.latest_channel END,
            latest_channel_at = GREATEST(t.latest_channel_at, s.latest_channel_at),
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
    """Store applied touchpoints, (event_id, contact_id, type, occurred_at, attributes, customer
    action?) each, and count them on their contacts. Counting only the rows this statement
    inserted keeps counts exact even when another consumer stores the same events concurrently (a
    rebalance). ``last_event_at`` is the newest event of any kind, ``last_active_at`` the newest
    of the customer's own actions (docs/domain.md "Activity")."""
    event_ids, contacts, types, times, attributes, actions = columns(rows)
    conn.execute(
        """
        WITH stored AS (
            INSERT INTO events (tenant_id, event_id, contact_id, type, occurred_at, attributes)
            SELECT %(tenant)s, e, c, t, o, a
            FROM unnest(%(events)b::text[], %(contacts)b::text[], %(types)b::text[],
                        %(times)b::timestamptz[], %(attributes)b::jsonb[]) AS u(e, c, t, o, a)
            ON CONFLICT DO NOTHING
            RETURNING event_id, contact_id, occurred_at
        )
        UPDATE contacts SET events_count = events_count + s.n,
            created_at = LEAST(created_at, s.first),
            last_event_at = GREATEST(last_event_at, s.last),
            last_active_at = GREATEST(last_active_at, s.active)
        FROM (SELECT contact_id, count(*) AS n, min(occurred_at) AS first,
                     max(occurred_at) AS last,
                     max(occurred_at) FILTER (WHERE event_id IN (SELECT unnest(%(acted)s::text[])))
                       AS active  -- a hashed set, not a scan of the array per row
              FROM stored GROUP BY contact_id) s
        WHERE contacts.tenant_id = %(tenant)s AND contacts.contact_id = s.contact_id
        """,
        {"tenant": tenant_id, "events": event_ids, "contacts": contacts, "types": types,
         "times": times, "attributes": attributes,
         "acted": sorted({e for e, action in zip(event_ids, actions, strict=True) if action})},
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


# --------------------------------------------------------------------------------------------
# Reads and locks of derivation (services/segment/derive.py)


def custom_model(conn: Connection, tenant_id: str, name: str) -> dict | None:
    """A stored custom lifecycle model: its document and when it was last changed."""
    return conn.execute(
        "SELECT document, updated_at FROM lifecycle_models WHERE tenant_id = %s AND name = %s",
        (tenant_id, name),
    ).fetchone()


def contact_events(
    conn: Connection, tenant_id: str, contact_ids: list[str], since: datetime, limit: int
) -> dict[str, list[EventFact]]:
    """{contact: its newest ``limit`` events since ``since``, oldest first (equal times by event
    id: docs/domain.md "Event time and replay")}."""
    rows = conn.execute(
        "SELECT contact_id, event_id, type, occurred_at, attributes FROM ("
        "  SELECT *, row_number() OVER (PARTITION BY contact_id "
        "                               ORDER BY occurred_at DESC, event_id DESC) AS n"
        "  FROM events WHERE tenant_id = %s AND contact_id = ANY(%s) AND occurred_at >= %s"
        ") e WHERE n <= %s ORDER BY occurred_at, event_id",
        (tenant_id, contact_ids, since, limit),
    ).fetchall()
    by_contact: dict[str, list[EventFact]] = {c: [] for c in contact_ids}
    for r in rows:
        by_contact[r["contact_id"]].append(
            EventFact(r["type"], r["occurred_at"], r["attributes"], r["event_id"])
        )
    return by_contact


def contacts(conn: Connection, tenant_id: str, contact_ids: Iterable[str]) -> list[dict]:
    """Contact rows in id order (not locked: the caller holds the locks)."""
    return conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s) ORDER BY contact_id",
        (tenant_id, sorted(contact_ids)),
    ).fetchall()


def contact_count(conn: Connection, tenant_id: str) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM contacts WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()["n"]


def contacts_after(conn: Connection, tenant_id: str, after: str, limit: int) -> list[dict]:
    """The next ``limit`` contact rows after ``after`` in id order (keyset batches)."""
    return conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id > %s "
        "ORDER BY contact_id LIMIT %s",
        (tenant_id, after, limit),
    ).fetchall()


def sample_contact_ids(conn: Connection, tenant_id: str, size: int) -> list[str]:
    """A deterministic sample of ``size`` contact ids (by a hash of the id: the same every time)."""
    return [
        r["contact_id"]
        for r in conn.execute(
            "SELECT contact_id FROM contacts WHERE tenant_id = %s "
            "ORDER BY md5(contact_id), contact_id LIMIT %s",
            (tenant_id, size),
        )
    ]


def lock_contacts(conn: Connection, tenant_id: str, contact_ids: Iterable[str]) -> list[dict]:
    """Contact rows locked in id order."""
    return conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s) "
        "ORDER BY contact_id FOR UPDATE",
        (tenant_id, sorted(contact_ids)),
    ).fetchall()


def lock_with_members(conn: Connection, tenant_id: str, contact_ids: Iterable[str]) -> list[dict]:
    """The contacts and every member of their accounts, locked in one statement in id order,
    before their accounts are locked. Only the columns that say whose history to read: most of
    these rows are read in full only if their account changes."""
    return conn.execute(
        "SELECT contact_id, account_id, last_event_at FROM contacts "
        "WHERE tenant_id = %(tenant)s AND (contact_id = ANY(%(ids)s) "
        "  OR account_id IN (SELECT account_id FROM contacts WHERE tenant_id = %(tenant)s "
        "                    AND contact_id = ANY(%(ids)s) AND account_id IS NOT NULL)) "
        "ORDER BY contact_id FOR UPDATE",
        {"tenant": tenant_id, "ids": sorted(contact_ids)},
    ).fetchall()


def members(conn: Connection, tenant_id: str, account_ids: Iterable[str]) -> list[dict]:
    """The member rows of these accounts in id order (not locked: the caller holds the locks)."""
    return conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND account_id = ANY(%s) ORDER BY contact_id",
        (tenant_id, sorted(account_ids)),
    ).fetchall()


def lock_members(conn: Connection, tenant_id: str, account_id: str) -> list[dict]:
    """The member rows of one account, locked in id order."""
    return conn.execute(
        "SELECT * FROM contacts WHERE tenant_id = %s AND account_id = %s "
        "ORDER BY contact_id FOR UPDATE",
        (tenant_id, account_id),
    ).fetchall()


def member_summaries(conn: Connection, tenant_id: str, account_ids: list[str]):
    """What an account's refresh needs of its members, in id order."""
    return conn.execute(
        "SELECT contact_id, account_id, role, stage, score, score_at, last_event_at, lost, "
        "first_channel, first_channel_at, latest_channel, latest_channel_at FROM contacts "
        "WHERE tenant_id = %s AND account_id = ANY(%s) ORDER BY contact_id",
        (tenant_id, account_ids),
    )


def contact_identities(
    conn: Connection, tenant_id: str, contact_ids: list[str]
) -> dict[str, dict[str, list[str]]]:
    """{contact: {kind: [values]}} for many contacts in one query."""
    found: dict[str, dict[str, list[str]]] = {}
    for r in conn.execute(
        "SELECT contact_id, kind, value FROM identities WHERE tenant_id = %s "
        "AND contact_id = ANY(%s) ORDER BY contact_id, kind, value",
        (tenant_id, contact_ids),
    ):
        found.setdefault(r["contact_id"], {}).setdefault(r["kind"], []).append(r["value"])
    return found


def accounts_of(conn: Connection, tenant_id: str, rows: list[dict]) -> dict[str, dict]:
    """The account rows of these contacts, by id, in one query."""
    wanted = sorted({r["account_id"] for r in rows if r["account_id"]})
    if not wanted:
        return {}
    return {
        a["account_id"]: a
        for a in conn.execute(
            "SELECT * FROM accounts WHERE tenant_id = %s AND account_id = ANY(%s)",
            (tenant_id, wanted),
        ).fetchall()
    }


def lock_accounts(conn: Connection, tenant_id: str, account_ids: list[str]) -> list[dict]:
    """Account rows locked in id order (after their members: see the module docstring)."""
    return conn.execute(
        "SELECT * FROM accounts WHERE tenant_id = %s AND account_id = ANY(%s) "
        "ORDER BY account_id FOR UPDATE",
        (tenant_id, account_ids),
    ).fetchall()


def set_stage(
    conn: Connection, tenant_id: str, kind: str, subject_id: str, stage: str, at: datetime
) -> None:
    """A manual stage of a locked contact or account (``kind``), since ``at``."""
    if kind == "contact":
        conn.execute(
            "UPDATE contacts SET stage = %s, stage_since = %s "
            "WHERE tenant_id = %s AND contact_id = %s",
            (stage, at, tenant_id, subject_id),
        )
    else:
        conn.execute(
            "UPDATE accounts SET stage = %s, stage_since = %s "
            "WHERE tenant_id = %s AND account_id = %s",
            (stage, at, tenant_id, subject_id),
        )


def merged_at(conn: Connection, tenant_id: str, merged: str, into: str) -> datetime:
    """When ``merged`` was folded into ``into``."""
    return conn.execute(
        "SELECT merged_at FROM contact_merges WHERE tenant_id = %s AND from_contact = %s "
        "AND into_contact = %s",
        (tenant_id, merged, into),
    ).fetchone()["merged_at"]


# --------------------------------------------------------------------------------------------
# Staff changes through the API (api_contacts.py, api_accounts.py)


def merged_into(conn: Connection, tenant_id: str, contact_id: str, hops: int) -> str | None:
    """The live contact a merged (or re-keyed) contact became, following up to ``hops``
    merges; None when it was not merged."""
    current = contact_id
    for _ in range(hops):
        row = conn.execute(
            "SELECT into_contact FROM contact_merges WHERE tenant_id = %s AND from_contact = %s "
            "ORDER BY merged_at DESC, into_contact LIMIT 1",
            (tenant_id, current),
        ).fetchone()
        if row is None:
            break
        current = row["into_contact"]
        alive = conn.execute(
            "SELECT 1 FROM contacts WHERE tenant_id = %s AND contact_id = %s",
            (tenant_id, current),
        ).fetchone()
        if alive is not None:
            break
    return None if current == contact_id else current


def set_role_override(conn: Connection, tenant_id: str, contact_id: str, role: str | None) -> None:
    conn.execute(
        "UPDATE contacts SET role_override = %s WHERE tenant_id = %s AND contact_id = %s",
        (role, tenant_id, contact_id),
    )


def lock_live_account(conn: Connection, tenant_id: str, account_id: str) -> dict | None:
    """An account not merged away, locked after its members (the order derive_touched locks
    in); None when there is no such live account."""
    conn.execute(
        "SELECT 1 FROM contacts WHERE tenant_id = %s AND account_id = %s "
        "ORDER BY contact_id FOR UPDATE",
        (tenant_id, account_id),
    )
    return conn.execute(
        "SELECT * FROM accounts WHERE tenant_id = %s AND account_id = %s "
        "AND merged_into IS NULL FOR UPDATE",
        (tenant_id, account_id),
    ).fetchone()


def lock_merging_accounts(
    conn: Connection, tenant_id: str, account_ids: Iterable[str]
) -> dict[str, dict]:
    """{account: its merged_into} of both sides of a merge, locked in id order, like the
    consumer's ensure_account locks one."""
    return {
        r["account_id"]: r
        for r in conn.execute(
            "SELECT account_id, merged_into FROM accounts WHERE tenant_id = %s "
            "AND account_id = ANY(%s) ORDER BY account_id FOR UPDATE",
            (tenant_id, sorted(account_ids)),
        )
    }


def merge_account(conn: Connection, tenant_id: str, source: str, into: str) -> list[dict]:
    """Move ``source``'s members to ``into`` and point ``source`` (and the accounts merged into
    it) at ``into``; the members of both, locked, as they were before."""
    members = conn.execute(
        "SELECT contact_id, account_id FROM contacts WHERE tenant_id = %s "
        "AND account_id = ANY(%s) ORDER BY contact_id FOR UPDATE",
        (tenant_id, [source, into]),
    ).fetchall()
    conn.execute(
        "UPDATE contacts SET account_id = %s WHERE tenant_id = %s AND account_id = %s",
        (into, tenant_id, source),
    )
    # merged_into always names a live account: one look-up resolves it (apply._account).
    conn.execute(
        "UPDATE accounts SET merged_into = %s WHERE tenant_id = %s "
        "AND (account_id = %s OR merged_into = %s)",
        (into, tenant_id, source, source),
    )
    return members


def update_account_attributes(
    conn: Connection, tenant_id: str, account_id: str, facts: dict[str, Any]
) -> None:
    """Merge CRM facts (industry, size, ...) into an account's attributes."""
    conn.execute(
        "UPDATE accounts SET attributes = attributes || %s "
        "WHERE tenant_id = %s AND account_id = %s",
        (Jsonb(facts), tenant_id, account_id),
    )


ATTRIBUTE_TABLES = ("contacts", "accounts")


def attribute_keys(conn: Connection, tenant_id: str, table: str) -> list[str]:
    """The attribute names stored on the tenant's ``table`` (contacts or accounts)."""
    if table not in ATTRIBUTE_TABLES:  # a table name is composed into the statement
        raise ValueError(f"attributes are kept on {', '.join(ATTRIBUTE_TABLES)}, not {table!r}")
    rows = conn.execute(
        sql.SQL(
            "SELECT DISTINCT k FROM {}, jsonb_object_keys(attributes) k WHERE tenant_id = %s"
        ).format(sql.Identifier(table)),
        (tenant_id,),
    ).fetchall()
    return [r["k"] for r in rows]


# --------------------------------------------------------------------------------------------
# Re-settling after late evidence (services/segment/settle.py)


def stage_histories(
    conn: Connection, tenant_id: str, kind: str, subject_ids: list[str]
) -> dict[str, list[dict]]:
    """{subject: its stage_history rows, in the order they were recorded}."""
    found: dict[str, list[dict]] = {s: [] for s in subject_ids}
    if not subject_ids:
        return found
    for r in conn.execute(
        "SELECT id, subject_id, to_stage, event_id, changed_at, actor FROM stage_history "
        "WHERE tenant_id = %s AND subject_kind = %s AND subject_id = ANY(%s) ORDER BY id",
        (tenant_id, kind, sorted(subject_ids)),
    ):
        found[r["subject_id"]].append(r)
    return found


def delete_transitions(conn: Connection, tenant_id: str, ids: list[int]) -> None:
    """Drop derived transitions that a re-settle records again."""
    if ids:
        conn.execute(
            "DELETE FROM stage_history WHERE tenant_id = %s AND id = ANY(%s) AND actor IS NULL",
            (tenant_id, sorted(ids)),
        )


def set_settled_account(conn: Connection, tenant_id: str, contact_ids: list[str]) -> None:
    """The contacts' stages are now settled with the account they belong to."""
    if contact_ids:
        conn.execute(
            "UPDATE contacts SET settled_account = account_id "
            "WHERE tenant_id = %s AND contact_id = ANY(%s)",
            (tenant_id, sorted(contact_ids)),
        )


def settle_rows(conn: Connection, tenant_id: str, contact_ids: Iterable[str]) -> list[dict]:
    """What settling stages in event time reads of contacts (locked by the caller), in id
    order."""
    return conn.execute(
        "SELECT contact_id, account_id, settled_account, stage, stage_since, role, "
        "role_override, title, tags, attributes, created_at FROM contacts "
        "WHERE tenant_id = %s AND contact_id = ANY(%s) ORDER BY contact_id",
        (tenant_id, sorted(contact_ids)),
    ).fetchall()
