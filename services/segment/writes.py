"""What deriving a batch writes, buffered and sent as one set-based statement per table.

Deriving one contact updates its row and its segment memberships, may record stage transitions
and queues outbox messages. Sent one statement each, a batch of 500 touchpoints cost thousands of
statements; here they go as a handful of ``unnest`` statements. Rows keep the order they were
queued in (``WITH ORDINALITY``), so history and outbox ids, and with them the order messages of
one key are published in, are those of one statement each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from services.segment.metrics import STAGE_CHANGES
from shared.db import columns


@dataclass(frozen=True)
class ContactDerived:
    role: str | None
    role_confidence: float | None
    role_source: str | None
    score: float
    score_at: datetime
    stage: str | None
    stage_since: datetime | None
    behaviour: list[str]
    features: dict[str, Any]
    due_at: datetime | None = None  # when time alone may change this (services/segment/due.py)
    lost: dict[str, Any] | None = None  # services/segment/lost.py
    sources: dict[str, Any] | None = None  # services/segment/sources.py


@dataclass(frozen=True)
class AccountDerived:
    stage: str | None
    stage_since: datetime | None
    score: float
    roles_engaged: list[str]
    members: int
    risk_flags: list[dict[str, Any]]
    refreshed_at: datetime
    due_at: datetime | None = None
    sources: dict[str, Any] | None = None  # services/segment/sources.py


@dataclass
class Writes:
    tenant_id: str
    contacts: dict[str, ContactDerived] = field(default_factory=dict)
    memberships: dict[str, tuple[list[str], datetime]] = field(default_factory=dict)
    accounts: dict[str, AccountDerived] = field(default_factory=dict)
    history: list[tuple] = field(default_factory=list)
    outbox: list[tuple[str, str, bytes]] = field(default_factory=list)

    def transition(
        self,
        kind: str,
        subject_id: str,
        model: str,
        from_stage: str | None,
        to_stage: str,
        cause: str,
        event_id: str | None,
        at: datetime,
        actor: str | None,
        moved_by: str,
    ) -> None:
        self.history.append(
            (kind, subject_id, model, from_stage, to_stage, cause, event_id, at, actor, moved_by)
        )

    def message(self, topic: str, key: str, value: bytes) -> None:
        self.outbox.append((topic, key, value))

    def flush(self, conn: Connection) -> None:
        """Send what is buffered (in the caller's transaction) and start empty."""
        # History and outbox first: a contact row and its transitions land together either way
        # (one transaction), but this keeps the statements in the order the rules produced them.
        if self.history:
            _insert_history(conn, self.tenant_id, self.history)
            for kind, _, model, _, to_stage, *_ in self.history:
                STAGE_CHANGES.labels(self.tenant_id, kind, model, to_stage).inc()
        if self.contacts:
            _update_contacts(conn, self.tenant_id, self.contacts)
        if self.memberships:
            _store_memberships(conn, self.tenant_id, self.memberships)
        if self.accounts:
            _update_accounts(conn, self.tenant_id, self.accounts)
        if self.outbox:
            _insert_outbox(conn, self.tenant_id, self.outbox)
        self.contacts, self.memberships, self.accounts = {}, {}, {}
        self.history, self.outbox = [], []


def _insert_history(conn: Connection, tenant_id: str, rows: list[tuple]) -> None:
    conn.execute(
        "INSERT INTO stage_history (tenant_id, subject_kind, subject_id, model, from_stage, "
        "to_stage, cause, event_id, changed_at, actor, moved_by) "
        "SELECT %s, k, s, m, f, t, c, e, a, r, b FROM unnest(%b::text[], %b::text[], %b::text[], "
        "%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], "
        "%b::text[]) WITH ORDINALITY AS u(k, s, m, f, t, c, e, a, r, b, n) ORDER BY n",
        (tenant_id, *columns(rows)),
    )


def _sources(sources: dict[str, Any] | None) -> tuple:
    """The four source channel columns (services/segment/sources.py FIELDS), None when unknown."""
    s = sources or {}
    return (s.get("first_channel"), s.get("first_channel_at"), s.get("latest_channel"),
            s.get("latest_channel_at"))  # fmt: skip


def _update_contacts(conn: Connection, tenant_id: str, derived: dict[str, ContactDerived]):
    rows = [
        (cid, d.role, d.role_confidence, d.role_source, d.score, d.score_at, d.stage,
         d.stage_since, Jsonb(d.behaviour), Jsonb(d.features), d.due_at,
         Jsonb(d.lost) if d.lost else None,
         datetime.fromisoformat(d.lost["at"]) if d.lost else None,
         *_sources(d.sources))
        for cid, d in derived.items()
    ]  # fmt: skip
    conn.execute(
        "UPDATE contacts c SET role = u.role, role_confidence = u.confidence, "
        "role_source = u.source, score = u.score, score_at = u.score_at, stage = u.stage, "
        "stage_since = u.since, "
        "behaviour = ARRAY(SELECT jsonb_array_elements_text(u.behaviour)), features = u.features, "
        "due_at = u.due_at, lost = u.lost, lost_at = u.lost_at, first_channel = u.fc, "
        "first_channel_at = u.fa, latest_channel = u.lc, latest_channel_at = u.la "
        "FROM unnest(%b::text[], %b::text[], %b::real[], %b::text[], %b::float8[], "
        "%b::timestamptz[], %b::text[], %b::timestamptz[], %b::jsonb[], %b::jsonb[], "
        "%b::timestamptz[], %b::jsonb[], %b::timestamptz[], %b::text[], %b::timestamptz[], "
        "%b::text[], %b::timestamptz[]) AS u(id, role, confidence, source, score, score_at, "
        "stage, since, behaviour, features, due_at, lost, lost_at, fc, fa, lc, la) "
        "WHERE c.tenant_id = %s AND c.contact_id = u.id",
        (*columns(rows), tenant_id),
    )


def _store_memberships(
    conn: Connection, tenant_id: str, memberships: dict[str, tuple[list[str], datetime]]
) -> None:
    pairs = [(cid, seg, since) for cid, (segs, since) in memberships.items() for seg in segs]
    contacts = list(memberships)
    kept_c, kept_s, since = columns(pairs) if pairs else ([], [], [])
    conn.execute(
        "DELETE FROM segment_members m WHERE m.tenant_id = %s AND m.contact_id = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM unnest(%b::text[], %b::text[]) AS k(c, s) "
        "                WHERE k.c = m.contact_id AND k.s = m.segment_id)",
        (tenant_id, contacts, kept_c, kept_s),
    )
    if pairs:
        conn.execute(
            "INSERT INTO segment_members (tenant_id, segment_id, contact_id, since) "
            "SELECT %s, s, c, t FROM unnest(%b::text[], %b::text[], %b::timestamptz[]) "
            "AS k(c, s, t) ON CONFLICT DO NOTHING",
            (tenant_id, kept_c, kept_s, since),
        )


def _update_accounts(conn: Connection, tenant_id: str, derived: dict[str, AccountDerived]):
    rows = [
        (aid, d.stage, d.stage_since, d.score, Jsonb(d.roles_engaged), d.members,
         Jsonb(d.risk_flags), d.refreshed_at, d.due_at, *_sources(d.sources))
        for aid, d in derived.items()
    ]  # fmt: skip
    conn.execute(
        "UPDATE accounts a SET stage = u.stage, stage_since = u.since, score = u.score, "
        "roles_engaged = ARRAY(SELECT jsonb_array_elements_text(u.roles)), members = u.members, "
        "risk_flags = u.flags, refreshed_at = u.at, due_at = u.due_at, first_channel = u.fc, "
        "first_channel_at = u.fa, latest_channel = u.lc, latest_channel_at = u.la "
        "FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::float8[], %b::jsonb[], "
        "%b::int[], %b::jsonb[], %b::timestamptz[], %b::timestamptz[], %b::text[], "
        "%b::timestamptz[], %b::text[], %b::timestamptz[]) "
        "AS u(id, stage, since, score, roles, members, flags, at, due_at, fc, fa, lc, la) "
        "WHERE a.tenant_id = %s AND a.account_id = u.id",
        (*columns(rows), tenant_id),
    )


def _insert_outbox(conn: Connection, tenant_id: str, rows: list[tuple[str, str, bytes]]) -> None:
    conn.execute(
        "INSERT INTO outbox (tenant_id, topic, key, value) "
        "SELECT %s, t, k, v FROM unnest(%b::text[], %b::text[], %b::bytea[]) "
        "WITH ORDINALITY AS u(t, k, v, n) ORDER BY n",
        (tenant_id, *columns(rows)),
    )
