"""Named dynamic segments: definitions, membership for one contact, and a full recompute.

A segment's rule uses the lifecycle condition grammar (services/segment/lifecycle.py) over the
contact's facts. Derived values are addressable too: ``attribute: stage`` / ``account_stage`` /
``account_id`` / any behaviour feature (``recency_days``, ``frequency_90d``...), and as tags
``behaviour:<type>`` (e.g. behaviour:loyal) and ``risk:<flag>`` (the account's risk flags).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from services.segment.facts import ContactFacts
from services.segment.lifecycle import Condition, ModelError, load_condition
from shared.errors import SiyuError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class SegmentError(SiyuError):
    code = "invalid_segment"


@dataclass(frozen=True)
class SegmentDef:
    segment_id: str
    name: str
    condition: Condition


def compile_rule(rule: dict | str) -> Condition:
    try:
        return load_condition(rule)
    except ModelError as exc:
        raise SegmentError(f"invalid segment rule: {exc.message}", details=exc.details) from None


def segment_facts(
    facts: ContactFacts,
    *,
    behaviour: Iterable[str],
    features: dict[str, Any],
    account_stage: str | None,
    risk_flags: Iterable[str],
) -> ContactFacts:
    """The contact's facts with its derived values exposed to segment rules."""
    attributes = {
        **features,
        **facts.attributes,
        "stage": facts.stage,
        "account_id": facts.account.account_id if facts.account else None,
        "account_stage": account_stage,
    }
    tags = (
        set(facts.tags) | {f"behaviour:{b}" for b in behaviour} | {f"risk:{r}" for r in risk_flags}
    )
    return replace(facts, attributes=attributes, tags=frozenset(tags))


def load_segments(conn: Connection, tenant_id: str) -> list[SegmentDef]:
    rows = conn.execute(
        "SELECT segment_id, name, rule FROM segments WHERE tenant_id = %s ORDER BY segment_id",
        (tenant_id,),
    ).fetchall()
    return [SegmentDef(r["segment_id"], r["name"], compile_rule(r["rule"])) for r in rows]


def save_segment(
    conn: Connection, tenant_id: str, segment_id: str, name: str, rule: dict, description: str = ""
) -> SegmentDef:
    """Create or replace a segment (validated); membership follows on the next refresh/recompute."""
    if not SLUG.match(segment_id):
        raise SegmentError("segment id: 2-63 characters of a-z, 0-9 and -, starting alphanumeric")
    condition = compile_rule(rule)
    conn.execute(
        "INSERT INTO segments (tenant_id, segment_id, name, description, rule) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, segment_id) DO UPDATE SET "
        "name = EXCLUDED.name, description = EXCLUDED.description, rule = EXCLUDED.rule, "
        "updated_at = now()",
        (tenant_id, segment_id, name, description, Jsonb(rule)),
    )
    return SegmentDef(segment_id, name, condition)


def membership(
    segments: list[SegmentDef], facts: ContactFacts, now: datetime, model=None
) -> list[str]:
    """The ids of the segments whose rule holds (``model`` resolves ``stage_at_least``)."""
    return [s.segment_id for s in segments if s.condition.holds(facts, now, model)]


def store_membership(
    conn: Connection, tenant_id: str, contact_id: str, member_of: list[str], since: datetime
) -> None:
    conn.execute(
        "DELETE FROM segment_members WHERE tenant_id = %s AND contact_id = %s "
        "AND NOT (segment_id = ANY(%s))",
        (tenant_id, contact_id, member_of),
    )
    if member_of:
        conn.execute(
            "INSERT INTO segment_members (tenant_id, segment_id, contact_id, since) "
            "SELECT %s, s, %s, %s FROM unnest(%s::text[]) AS s ON CONFLICT DO NOTHING",
            (tenant_id, contact_id, since, member_of),
        )


ProgressFn = Callable[[int], None]


def recompute(
    conn_factory: Callable[[], Any],
    tenant,
    *,
    evaluate: Callable[[Connection, Any, list[dict]], int],
    batch: int = 500,
    progress: ProgressFn | None = None,
) -> int:
    """Walk all contacts of a tenant in keyset batches, one transaction each.

    Rows locked by the consumer are skipped (``SKIP LOCKED``): it is refreshing them right now,
    with fresher facts than ours. Returns the number of contacts evaluated.
    """
    done, after = 0, ""
    while True:
        with conn_factory() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id > %s "
                "ORDER BY contact_id LIMIT %s FOR UPDATE SKIP LOCKED",
                (tenant.id, after, batch),
            ).fetchall()
            if not rows:
                return done
            done += evaluate(conn, tenant, rows)
            after = rows[-1]["contact_id"]
        if progress:
            progress(len(rows))
