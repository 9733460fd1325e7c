"""Outreach's own view of the audience, from the segment's topics (it never reads their schema).

decode (the contracts' schemas) -> process (one transaction per batch) -> commit:
- ``siyu.profiles.v1``: upsert the contact's row; an older snapshot never overwrites a newer one
  (redelivery and replays are harmless); a ``merged_into`` tombstone deletes the row. A risk flag
  the account did not have before fires the campaigns triggered by it; a loss on the profile
  queues its staff alert once (services/outreach/lost_alerts.py).
- ``siyu.stage-changes.v1``: fires the campaigns triggered by entering that stage; a contact's
  advance is kept for the effect report (services/outreach/effects.py).
- ``siyu.catalogue.v1``: the tenant's model and segments, the names campaigns are checked
  against (services/outreach/catalogue.py; the newest per tenant wins).
- ``siyu.erasures.v1``: a person erased (services/outreach/erasure.py, docs/privacy.md); a null
  profile (the Kafka tombstone of an erased profile) deletes the audience row too.
A trigger becomes a run of the campaign for that subject, unique per (campaign, trigger), so a
redelivered stage change never sends twice. Triggers older than ``STALE_AFTER`` (a consumer
group reset, a long outage) are dropped: a welcome sent days late is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg import Connection, sql
from psycopg.adapt import PyFormat
from psycopg.types.json import Jsonb

from services.outreach import effects, erasure, lost_alerts
from services.outreach.catalogue import apply_catalogues
from shared import messages
from shared.kafka.consumer import Message, PoisonMessage
from shared.kafka.topics import CATALOGUE, ERASURES, PROFILES, STAGE_CHANGES
from shared.privacy import ERASURE, decode_erasure

log = structlog.get_logger("siyu.outreach")

STALE_AFTER = timedelta(hours=24)


# By topic suffix: a deployment's topics may carry a prefix (KafkaSettings.topic_prefix).
KINDS = {PROFILES: messages.PROFILE, STAGE_CHANGES: messages.STAGE_CHANGE,
         CATALOGUE: messages.CATALOGUE, ERASURES: ERASURE}  # fmt: skip
TOMBSTONE = "tombstone"


def decode(message: Message) -> tuple[str, dict[str, Any]]:
    kind = next(k for topic, k in KINDS.items() if message.topic.endswith(topic))
    try:
        if kind == messages.PROFILE and not message.value:  # null value: an erased profile
            tenant_id, contact_id = (message.key or b"").decode("utf-8").split(":", 1)
            return TOMBSTONE, {"tenant_id": tenant_id, "contact_id": contact_id}
        if kind == ERASURE:
            return kind, decode_erasure(message.value)
        return kind, messages.decode(kind, message.value)
    except Exception as exc:  # not JSON or not the contract: the DLQ says which field
        raise PoisonMessage(message, f"not a valid {kind}: {exc}") from exc


COLUMNS = ("tenant_id", "contact_id", "mode", "stage", "role", "account_id", "account_stage",
           "risk_flags", "segments", "tags", "behaviour", "score", "openids", "external_userids",
           "oa_follower", "wecom_contact", "oa_last_message_at", "updated_at")  # fmt: skip
ARRAYS = ("risk_flags", "segments", "tags", "behaviour", "openids", "external_userids")
TYPES = {"score": "float8", "oa_follower": "bool", "wecom_contact": "bool",
         "oa_last_message_at": "timestamptz", "updated_at": "timestamptz"}  # fmt: skip

# One statement per batch: the newest snapshot per contact, upserted unless the stored one is
# newer; the flags each contact had before come back beside the new ones (all CTEs see the
# snapshot from before the insert).
UPSERT = sql.SQL("""
WITH incoming AS (
    SELECT * FROM unnest({params}) AS u({columns})
), latest AS (
    SELECT DISTINCT ON (tenant_id, contact_id) * FROM incoming
    ORDER BY tenant_id, contact_id, updated_at DESC
), before AS (
    SELECT a.tenant_id, a.contact_id, a.risk_flags FROM audience a
    JOIN latest l ON l.tenant_id = a.tenant_id AND l.contact_id = a.contact_id
), upserted AS (
    INSERT INTO audience AS a ({columns})
    SELECT {select} FROM latest
    ON CONFLICT (tenant_id, contact_id) DO UPDATE SET {updates}
    WHERE a.updated_at <= EXCLUDED.updated_at
    RETURNING a.tenant_id, a.contact_id, a.account_id, a.risk_flags, a.updated_at
)
SELECT u.*, b.risk_flags AS flags_before FROM upserted u
LEFT JOIN before b ON b.tenant_id = u.tenant_id AND b.contact_id = u.contact_id
""").format(
    # Binary parameters (%(c)b), one array per column.
    params=sql.SQL(", ").join(
        sql.SQL("{}::{}[]").format(
            sql.Placeholder(c, PyFormat.BINARY),
            sql.SQL("jsonb" if c in ARRAYS else TYPES.get(c, "text")),
        )
        for c in COLUMNS
    ),
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    select=sql.SQL(", ").join(
        sql.SQL("ARRAY(SELECT jsonb_array_elements_text({}))").format(sql.Identifier(c))
        if c in ARRAYS
        else sql.Identifier(c)
        for c in COLUMNS
    ),
    updates=sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in COLUMNS[2:]
    ),
)


def _row(p: dict[str, Any]) -> dict[str, Any]:
    ids = p.get("identities") or {}
    return {
        **{k: p.get(k) for k in ("tenant_id", "contact_id", "mode", "stage", "role")},
        "account_id": p.get("account_id"),
        "account_stage": p.get("account_stage"),
        "risk_flags": Jsonb(list(p.get("risk_flags") or [])),
        "segments": Jsonb(list(p.get("segments") or [])),
        "tags": Jsonb(list(p.get("tags") or [])),
        "behaviour": Jsonb(list(p.get("behaviour") or [])),
        "score": float(p.get("score") or 0.0),
        "openids": Jsonb(list(ids.get("openid") or [])),
        "external_userids": Jsonb(list(ids.get("external_userid") or [])),
        "oa_follower": p.get("oa_follower"),
        "wecom_contact": p.get("wecom_contact"),
        "oa_last_message_at": p.get("oa_last_message_at"),
        "updated_at": p["updated_at"],
    }


def _at(p: dict[str, Any]) -> datetime:
    at = p["updated_at"]
    return datetime.fromisoformat(at) if isinstance(at, str) else at


def apply_profiles(conn: Connection, profiles: Iterable[dict[str, Any]], now: datetime) -> int:
    """Upsert profiles (the newest per contact wins); delete tombstoned contacts; fire risk-flag
    triggers for flags newly raised. Returns runs created."""
    profiles = list(profiles)
    live_profiles = [p for p in profiles if not p.get("merged_into")]
    live = [_row(p) for p in live_profiles]
    gone = [(p["tenant_id"], p["contact_id"]) for p in profiles if p.get("merged_into")]
    runs = 0
    accepted: set[tuple[str, str]] = set()
    if live:
        params = {c: [r[c] for r in live] for c in COLUMNS}
        for r in conn.execute(UPSERT, params).fetchall():
            accepted.add((r["tenant_id"], r["contact_id"]))
            raised = set(r["risk_flags"]) - set(r["flags_before"] or ())
            for flag in sorted(raised) if r["account_id"] else ():
                runs += fire(conn, r["tenant_id"], "risk_flag", flag, "account",
                             r["account_id"], r["updated_at"], now)  # fmt: skip
    # Alerts only from the profile the upsert took (each contact's newest): an older one read in
    # the same batch (a lagging consumer: v1 lost, v2 re-added) must not announce a loss.
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for p in live_profiles:
        key = (p["tenant_id"], p["contact_id"])
        if key in accepted and (key not in newest or _at(p) >= _at(newest[key])):
            newest[key] = p
    lost_alerts.queue(conn, list(newest.values()), now - STALE_AFTER)
    if gone:
        conn.execute(
            "DELETE FROM audience a USING unnest(%s::text[], %s::text[]) AS g(t, c) "
            "WHERE a.tenant_id = g.t AND a.contact_id = g.c",
            ([t for t, _ in gone], [c for _, c in gone]),
        )
    return runs


def apply_stage_changes(conn: Connection, changes: Iterable[dict[str, Any]], now: datetime) -> int:
    changes = list(changes)
    effects.record_advances(conn, changes)  # the effect report's outcomes (effects.py)
    runs = 0
    for c in changes:
        runs += fire(conn, c["tenant_id"], "stage_entered", c["to_stage"], c["subject"],
                     c["subject_id"], c["changed_at"], now)  # fmt: skip
    return runs


def fire(
    conn: Connection,
    tenant_id: str,
    kind: str,
    value: str,
    subject_kind: str,
    subject_id: str,
    at: datetime,
    now: datetime,
) -> int:
    """Queue a run of every active campaign this trigger fires (at most once per trigger)."""
    if at < now - STALE_AFTER:
        return 0
    campaigns = conn.execute(
        "SELECT campaign_id, trigger FROM campaigns WHERE tenant_id = %s AND status = 'active' "
        "AND trigger->'event'->>%s = %s AND launched_at <= %s",
        (tenant_id, kind, value, at),
    ).fetchall()
    created = 0
    for c in campaigns:
        event = c["trigger"]["event"]
        if kind == "stage_entered" and event.get("subject", "contact") != subject_kind:
            continue
        due = max(at + timedelta(minutes=event.get("delay_minutes", 0)), now)
        # An account's flag shows on every member's profile: one run per account and day.
        when = at.astimezone(UTC).date().isoformat() if kind == "risk_flag" else at.isoformat()
        key = f"event:{kind}:{value}:{subject_kind}:{subject_id}:{when}"
        row = conn.execute(
            "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, subject_kind, "
            "subject_id, due_at) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, campaign_id, trigger_key) DO NOTHING RETURNING run_id",
            (tenant_id, c["campaign_id"], key, subject_kind, subject_id, due),
        ).fetchone()
        if row is not None:
            created += 1
            log.info("campaign_triggered", tenant_id=tenant_id, campaign_id=c["campaign_id"],
                     trigger=key, run_id=row["run_id"])  # fmt: skip
    return created


def make_process(pool, clock=lambda: datetime.now(UTC)):
    def process(batch) -> None:
        # A profile and a tombstone of one contact in one batch: the later one (same key, same
        # partition, so batch order is offset order) wins; one erased and back as a new person
        # keeps the new profile.
        last = {}
        for d in batch:
            if d.payload[0] in (messages.PROFILE, TOMBSTONE):
                last[(d.payload[1]["tenant_id"], d.payload[1]["contact_id"])] = d.payload[0]
        profiles = [d.payload[1] for d in batch if d.payload[0] == messages.PROFILE
                    and last[(d.payload[1]["tenant_id"], d.payload[1]["contact_id"])]
                    == messages.PROFILE]  # fmt: skip
        changes = [d.payload[1] for d in batch if d.payload[0] == messages.STAGE_CHANGE]
        catalogues = [d.payload[1] for d in batch if d.payload[0] == messages.CATALOGUE]
        gone = [key for key, kind in last.items() if kind == TOMBSTONE]
        erased = [d.payload[1] for d in batch if d.payload[0] == ERASURE]
        now = clock()
        with pool.connection() as conn, conn.transaction():
            apply_catalogues(conn, catalogues)
            apply_profiles(conn, profiles, now)
            apply_stage_changes(conn, changes, now)
            erasure.forget_profiles(conn, gone)
            erasure.forget(conn, erased)

    return process
