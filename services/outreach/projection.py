"""Outreach's own view of the audience, from the segment's topics (it never reads their schema).

decode (the contracts' schemas) -> process (one transaction per batch) -> commit:
- ``siyu.profiles.v1``: upsert the contact's row; an older snapshot never overwrites a newer one
  (redelivery and replays are harmless); a ``merged_into`` tombstone deletes the row. A risk flag
  the account did not have before fires the campaigns triggered by it.
- ``siyu.stage-changes.v1``: fires the campaigns triggered by entering that stage.
A trigger becomes a run of the campaign for that subject, unique per (campaign, trigger), so a
redelivered stage change never sends twice. Triggers older than ``STALE_AFTER`` (a consumer
group reset, a long outage) are dropped: a welcome sent days late is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg import Connection

from shared import messages
from shared.kafka.consumer import Message, PoisonMessage
from shared.kafka.topics import PROFILES

log = structlog.get_logger("siyu.outreach")

STALE_AFTER = timedelta(hours=24)


def decode(message: Message) -> tuple[str, dict[str, Any]]:
    kind = messages.PROFILE if message.topic.endswith(PROFILES) else messages.STAGE_CHANGE
    try:
        return kind, messages.decode(kind, message.value)
    except Exception as exc:  # not JSON or not the contract: the DLQ says which field
        raise PoisonMessage(message, f"not a valid {kind}: {exc}") from exc


UPSERT = """
INSERT INTO audience AS a (tenant_id, contact_id, mode, stage, role, account_id, account_stage,
    risk_flags, segments, tags, behaviour, score, openids, external_userids, oa_follower,
    wecom_contact, oa_last_message_at, updated_at)
VALUES (%(tenant_id)s, %(contact_id)s, %(mode)s, %(stage)s, %(role)s, %(account_id)s,
    %(account_stage)s, %(risk_flags)s, %(segments)s, %(tags)s, %(behaviour)s, %(score)s,
    %(openids)s, %(external_userids)s, %(oa_follower)s, %(wecom_contact)s,
    %(oa_last_message_at)s, %(updated_at)s)
ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
    mode = EXCLUDED.mode, stage = EXCLUDED.stage, role = EXCLUDED.role,
    account_id = EXCLUDED.account_id, account_stage = EXCLUDED.account_stage,
    risk_flags = EXCLUDED.risk_flags, segments = EXCLUDED.segments, tags = EXCLUDED.tags,
    behaviour = EXCLUDED.behaviour, score = EXCLUDED.score, openids = EXCLUDED.openids,
    external_userids = EXCLUDED.external_userids, oa_follower = EXCLUDED.oa_follower,
    wecom_contact = EXCLUDED.wecom_contact, oa_last_message_at = EXCLUDED.oa_last_message_at,
    updated_at = EXCLUDED.updated_at
WHERE a.updated_at <= EXCLUDED.updated_at
"""


def apply_profiles(conn: Connection, profiles: Iterable[dict[str, Any]], now: datetime) -> int:
    """Upsert profiles; fire risk-flag triggers for flags newly raised. Returns runs created."""
    runs = 0
    for p in profiles:
        if p.get("merged_into"):
            conn.execute(
                "DELETE FROM audience WHERE tenant_id = %s AND contact_id = %s",
                (p["tenant_id"], p["contact_id"]),
            )
            continue
        before = conn.execute(
            "SELECT risk_flags FROM audience WHERE tenant_id = %s AND contact_id = %s",
            (p["tenant_id"], p["contact_id"]),
        ).fetchone()
        ids = p.get("identities") or {}
        row = {
            **{k: p.get(k) for k in ("tenant_id", "contact_id", "mode", "stage", "role")},
            "account_id": p.get("account_id"),
            "account_stage": p.get("account_stage"),
            "risk_flags": list(p.get("risk_flags") or []),
            "segments": list(p.get("segments") or []),
            "tags": list(p.get("tags") or []),
            "behaviour": list(p.get("behaviour") or []),
            "score": p.get("score") or 0.0,
            "openids": list(ids.get("openid") or []),
            "external_userids": list(ids.get("external_userid") or []),
            "oa_follower": p.get("oa_follower"),
            "wecom_contact": p.get("wecom_contact"),
            "oa_last_message_at": p.get("oa_last_message_at"),
            "updated_at": p["updated_at"],
        }
        conn.execute(UPSERT, row)
        raised = set(row["risk_flags"]) - set(before["risk_flags"] if before else ())
        if raised and p.get("account_id"):
            for flag in sorted(raised):
                runs += fire(conn, p["tenant_id"], "risk_flag", flag, "account",
                             p["account_id"], p["updated_at"], now)  # fmt: skip
    return runs


def apply_stage_changes(conn: Connection, changes: Iterable[dict[str, Any]], now: datetime) -> int:
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
        profiles = [d.payload[1] for d in batch if d.payload[0] == messages.PROFILE]
        changes = [d.payload[1] for d in batch if d.payload[0] == messages.STAGE_CHANGE]
        now = clock()
        with pool.connection() as conn, conn.transaction():
            apply_profiles(conn, profiles, now)
            apply_stage_changes(conn, changes, now)

    return process
