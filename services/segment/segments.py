"""Named dynamic segments: definitions, membership for one contact, and a full recompute.

A segment's rule uses the lifecycle condition grammar (services/segment/lifecycle/grammar.py)
over the contact's facts. Derived values are addressable too: ``attribute: stage`` /
``account_stage`` / ``account_id`` / any behaviour feature (``recency_days``,
``frequency_90d``...), and as tags ``behaviour:<type>`` (e.g. behaviour:loyal) and
``risk:<flag>`` (the account's risk flags).

Rules are bounded when saved (depth and size: services/segment/rule_limits.py; at most
``MAX_SEGMENTS_PER_TENANT`` segments). A rule that still fails while being evaluated (an
exception for one contact, or a stored rule that no longer loads) disables its segment only:
``disabled_at``/``disabled_reason`` are set, its members are removed, and every other segment and
the event itself go on (docs/domain.md, "Segments"). Saving the segment again enables it.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise
from types import TracebackType
from typing import Any

import structlog
from psycopg import Connection, sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from services.segment.facts import ContactFacts
from services.segment.lifecycle.conditions import (
    AccountCondition,
    AllCondition,
    AnyCondition,
    Condition,
    NotCondition,
)
from services.segment.lifecycle.grammar import ModelError, error_paths, load_condition
from services.segment.metrics import SEGMENTS_DISABLED
from shared.errors import SiyuError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
# Every segment is evaluated for every contact an event touches: a bound on the work per event.
MAX_SEGMENTS_PER_TENANT = 100
MAX_REASON_CHARS = 500  # of a disabled segment's reason

log = structlog.get_logger("siyu.segment")


class SegmentError(SiyuError):
    code = "invalid_segment"


class TooManySegments(SegmentError):
    code = "too_many_segments"


@dataclass(frozen=True)
class RuleFailure:
    """Why one segment's rule could not be evaluated (it is disabled at the end of the batch)."""

    segment_id: str
    reason: str  # type and place, never the text: "OverflowError while evaluating any[0]"
    updated_at: datetime | None = None  # the version that failed: a newer save is not disabled


Failures = dict[str, RuleFailure]  # by segment_id, filled while evaluating


@dataclass(frozen=True)
class SegmentDef:
    segment_id: str
    name: str
    condition: Condition
    updated_at: datetime | None = None  # the stored version evaluated


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


def failure_reason(exc: BaseException, rule: Condition | None = None) -> str:
    """Why a rule failed, without the exception's text (it may quote a contact's value, and the
    reason is served by the API, published in the catalogue and kept in the audit log): the
    exception type and where in the rule it was raised, e.g. ``OverflowError while evaluating
    any[0]``; for a stored rule that does not load, the fields at fault (``ModelError while
    loading the rule (at all[0].event)``); saving the rule again shows the full error."""
    name = type(exc).__name__
    if rule is not None:
        text = f"{name} while evaluating {_failed_at(rule, exc.__traceback__)}"
    elif isinstance(exc, SiyuError) and (paths := _field_paths(exc.details)):
        text = f"{name} while loading the rule (at {', '.join(paths)})"
    else:
        text = f"{name} while loading the rule"
    return text[:MAX_REASON_CHARS]


def _field_paths(details: dict) -> list[str]:
    """The rule fields a validation error names (its messages may quote the rule's values)."""
    paths = {p.removesuffix("_schema").rstrip(".") for p in error_paths(details)}
    return sorted(p or "(root)" for p in paths)


def _failed_at(rule: Condition, tb: TracebackType | None) -> str:
    """The path (as in validation errors) of the innermost condition of ``rule`` the traceback
    passes through: the frames whose ``self`` is a condition, from the root down."""
    chain: list[Condition] = []
    for frame, _ in traceback.walk_tb(tb):
        node = frame.f_locals.get("self")
        if isinstance(node, Condition) and not (chain and chain[-1] is node):
            chain.append(node)
    start = next((i for i, node in enumerate(chain) if node is rule), 0)
    path: list[str] = []
    for parent, child in pairwise(chain[start:]):
        step = _step(parent, child)
        if step is None:
            break
        path.append(step)
    return ".".join(path) or "(root)"


def _step(parent: Condition, child: Condition) -> str | None:
    if isinstance(parent, AllCondition | AnyCondition):
        key = "all" if isinstance(parent, AllCondition) else "any"
        found = next((i for i, c in enumerate(parent.conditions) if c is child), None)
        return None if found is None else f"{key}[{found}]"
    if isinstance(parent, NotCondition | AccountCondition) and parent.condition is child:
        return "not" if isinstance(parent, NotCondition) else "account"
    return None


def load_segments(conn: Connection, tenant_id: str, failures: Failures) -> list[SegmentDef]:
    """The tenant's enabled segments; a stored rule that does not load (saved before a limit or
    a grammar change, or written around the API) goes into ``failures`` instead."""
    rows = conn.execute(
        "SELECT segment_id, name, rule, updated_at FROM segments WHERE tenant_id = %s "
        "AND disabled_at IS NULL ORDER BY segment_id",
        (tenant_id,),
    ).fetchall()
    defined = []
    for r in rows:
        sid, version = r["segment_id"], r["updated_at"]
        try:
            defined.append(SegmentDef(sid, r["name"], compile_rule(r["rule"]), version))
        except Exception as exc:  # whatever it is, only this segment stops
            failures[sid] = RuleFailure(sid, failure_reason(exc), version)
    return defined


# The stored membership still answers the saved rule (SET sees the row as it was).
_SAME_BUILD = sql.SQL("segments.rule = EXCLUDED.rule AND segments.disabled_at IS NULL")


def save_segment(
    conn: Connection, tenant_id: str, segment_id: str, name: str, rule: dict, description: str = ""
) -> SegmentDef:
    """Create or replace a segment (validated, within the limits). Saving enables a disabled
    segment: its rule is evaluated again. A new segment, a changed rule or a re-enabled segment
    is marked ``building`` (a new ``build_version``): the admin API queues its backfill
    (services/segment/backfill.py); a name or description change keeps the build as it is."""
    if not SLUG.match(segment_id):
        raise SegmentError("segment id: 2-63 characters of a-z, 0-9 and -, starting alphanumeric")
    condition = compile_rule(rule)
    exists = conn.execute(
        "SELECT 1 FROM segments WHERE tenant_id = %s AND segment_id = %s", (tenant_id, segment_id)
    ).fetchone()
    if exists is None:
        (count,) = (
            conn.cursor(row_factory=tuple_row)
            .execute("SELECT count(*) FROM segments WHERE tenant_id = %s", (tenant_id,))
            .fetchone()
        )
        if count >= MAX_SEGMENTS_PER_TENANT:
            raise TooManySegments(
                f"the tenant has {count} segments; at most {MAX_SEGMENTS_PER_TENANT} "
                "(delete one first)"
            )
    conn.execute(
        sql.SQL(
            "INSERT INTO segments (tenant_id, segment_id, name, description, rule, build_status, "
            "build_version, build_done) VALUES (%s, %s, %s, %s, %s, 'building', 1, 0) "
            "ON CONFLICT (tenant_id, segment_id) DO UPDATE SET "
            "name = EXCLUDED.name, description = EXCLUDED.description, rule = EXCLUDED.rule, "
            "updated_at = now(), disabled_at = NULL, disabled_reason = NULL, "
            "build_status = CASE WHEN {same} THEN segments.build_status ELSE 'building' END, "
            "build_version = segments.build_version + CASE WHEN {same} THEN 0 ELSE 1 END, "
            "build_done = CASE WHEN {same} THEN segments.build_done ELSE 0 END, "
            "build_total = CASE WHEN {same} THEN segments.build_total END"
        ).format(same=_SAME_BUILD),
        (tenant_id, segment_id, name, description, Jsonb(rule)),
    )
    return SegmentDef(segment_id, name, condition)


def membership(
    segments: list[SegmentDef],
    facts: ContactFacts,
    now: datetime,
    model=None,
    failures: Failures | None = None,
) -> list[str]:
    """The ids of the segments whose rule holds (``model`` resolves ``stage_at_least``).

    With ``failures``, a rule that raises is recorded there and skipped (here and for the rest
    of the batch) instead of failing the contact; without, the exception propagates.
    """
    member_of = []
    for s in segments:
        if failures is not None and s.segment_id in failures:
            continue
        try:
            if s.condition.holds(facts, now, model):
                member_of.append(s.segment_id)
        except Exception as exc:
            if failures is None:
                raise
            failures[s.segment_id] = RuleFailure(
                s.segment_id, failure_reason(exc, s.condition), s.updated_at
            )
    return member_of


def disable_segments(conn: Connection, tenant_id: str, failures: Failures) -> list[str]:
    """Disable the failed segments (in the caller's transaction, in id order: the lock order of
    every writer) and remove their members; returns the ids disabled now (not disabled before).
    Only the version that failed: a segment saved again meanwhile stays enabled."""
    disabled = []
    for segment_id in sorted(failures):
        failure = failures[segment_id]
        row = conn.execute(
            "UPDATE segments SET disabled_at = now(), disabled_reason = %s "
            "WHERE tenant_id = %s AND segment_id = %s AND disabled_at IS NULL "
            "AND (%s::timestamptz IS NULL OR updated_at = %s) RETURNING segment_id",
            (failure.reason, tenant_id, segment_id, failure.updated_at, failure.updated_at),
        ).fetchone()
        if row is None:
            continue  # deleted or saved again meanwhile, or disabled by a concurrent batch
        conn.execute(
            "DELETE FROM segment_members WHERE tenant_id = %s AND segment_id = %s",
            (tenant_id, segment_id),
        )
        disabled.append(segment_id)
        SEGMENTS_DISABLED.labels(tenant_id).inc()
        # The reason names no value (failure_reason): the type and where in the rule.
        log.warning(
            "segment_disabled", tenant_id=tenant_id, segment_id=segment_id, error=failure.reason
        )
    return disabled


ProgressFn = Callable[[int], None]


def recompute(
    conn_factory: Callable[[], Any],
    tenant,
    *,
    evaluate: Callable[[Connection, Any, list[dict]], int],
    batch: int = 500,
    progress: ProgressFn | None = None,
    partition: tuple[int, int] | None = None,
) -> int:
    """Walk all contacts of a tenant in keyset batches, one transaction each.

    Rows locked by the consumer are skipped (``SKIP LOCKED``): it is refreshing them right now,
    with fresher facts than ours. ``partition`` ``(k, n)`` walks only partition ``k`` of ``n``, a
    hash of the contact id: every contact is in exactly one, so one process per partition covers
    the tenant once (services/segment/recompute.py). Returns the number of contacts evaluated.
    """
    k, n = partition or (0, 1)
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"partition {k} of {n}")
    done, after = 0, ""
    while True:
        with conn_factory() as conn, conn.transaction():
            # The hash is cast to bigint first: abs() of the int4 -2^31 overflows.
            rows = conn.execute(
                "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id > %s "
                "AND abs(hashtext(contact_id)::bigint) %% %s = %s "
                "ORDER BY contact_id LIMIT %s FOR UPDATE SKIP LOCKED",
                (tenant.id, after, n, k, batch),
            ).fetchall()
            if not rows:
                return done
            done += evaluate(conn, tenant, rows)
            after = rows[-1]["contact_id"]
        if progress:
            progress(len(rows))
