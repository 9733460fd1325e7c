"""The background build of a segment's membership: a segment created, whose rule changed or that
was enabled again is ``building`` until every contact of its tenant was evaluated (docs/domain.md,
"Segments").

One job per tenant (shared/jobs.py: one queued or running per tenant and kind) builds its
``building`` segments one after the other, so a second segment saved during a build waits for it
rather than being refused. A build walks the tenant's contacts in keyset batches, one transaction
each, and evaluates only that segment's rule over what the contact's last derivation stored (the
facts every other segment was evaluated with). The contacts whose membership changes are
re-derived (``derive.refresh_contacts``): their membership rows and the profiles outreach targets
by segment. Meanwhile the consumer keeps membership live as today:

- Rows the consumer holds are skipped (``SKIP LOCKED``: it evaluates every enabled segment, this
  one included) and evaluated again once the walk is over, waiting for the lock then: its batch may
  have read the segments before this one was saved. A contact is only ever evaluated under its
  row lock, from what is stored then: a fresher result of the consumer is never overwritten.
- Each batch ends by recording progress only if the segment's ``build_version`` is still the one
  built: a rule saved meanwhile (a newer build) or a deleted segment rolls the batch back. The
  newest rule wins; a deleted segment ends its build quietly.
- A rule that raises is the consumer's rule failure (segments.disable_segments): the segment is
  disabled with the reason, its members removed, and GET shows it ``failed``.

The job commits between batches (each one short, so the consumer never waits long for a row),
keeping the search path and statement timeout the runner set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from psycopg import Connection, errors

from services.segment import store
from services.segment.catalogue import queue_catalogue
from services.segment.derive import (
    HISTORY_DAYS,
    Watch,
    account_facts,
    contact_role,
    derived_at,
    load_history,
    refresh_contacts,
)
from services.segment.due import horizon_days
from services.segment.facts import ContactFacts
from services.segment.segments import (
    Failures,
    RuleFailure,
    SegmentDef,
    compile_rule,
    disable_segments,
    failure_reason,
    membership,
    segment_facts,
)
from services.segment.tenant_model import model_for
from services.segment.topics import Topics
from shared import jobs
from shared.jobs import JobKind, Progress
from shared.tenants import Tenant

BACKFILL_JOB = "segment.backfill"
BACKFILL_SUBJECT = "segments"  # one job per tenant builds all of its building segments
BATCH = 500

log = structlog.get_logger("siyu.segment.backfill")


@dataclass(frozen=True)
class Build:
    segment_id: str
    version: int


def job_params(tenant: Tenant, topic_prefix: str) -> dict:
    """What a job needs beyond its tenant id: the tenant's model and the deployment's topics."""
    return {
        "tenant": {k: getattr(tenant, k) for k in ("name", "mode", "lifecycle_model", "timezone")},
        "topic_prefix": topic_prefix,
    }


def queue_backfill(conn: Connection, tenant: Tenant, *, topic_prefix: str,
                   created_by: str | None, ttl: timedelta) -> bool:  # fmt: skip
    """Queue the tenant's build job in ``conn``'s transaction; False when one is queued or
    running already (it builds every segment still ``building`` before it ends)."""
    try:
        jobs.submit(conn, tenant=tenant.id, kind=BACKFILL_JOB, subject=BACKFILL_SUBJECT,
                    params=job_params(tenant, topic_prefix), created_by=created_by,
                    ttl=ttl)  # fmt: skip
    except jobs.Busy:
        return False
    return True


def _next(conn: Connection, tenant_id: str) -> Build | None:
    row = conn.execute(
        "SELECT segment_id, build_version FROM segments WHERE tenant_id = %s "
        "AND build_status = 'building' AND disabled_at IS NULL ORDER BY segment_id LIMIT 1",
        (tenant_id,),
    ).fetchone()
    return Build(row["segment_id"], row["build_version"]) if row else None


class _Transactions:
    """Commit the job's work so far and go on with the runner's search path and timeout."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.saved = conn.execute(
            "SELECT current_setting('search_path') AS path, "
            "current_setting('statement_timeout') AS timeout"
        ).fetchone()

    def _restore(self) -> None:
        self.conn.execute(
            "SELECT set_config('search_path', %s, true), set_config('statement_timeout', %s, true)",
            (self.saved["path"], self.saved["timeout"]),
        )

    def commit(self) -> None:
        self.conn.commit()
        self._restore()

    def rollback(self) -> None:
        self.conn.rollback()
        self._restore()


def run_backfill(conn: Connection, job: dict, progress: Progress) -> dict:
    """The job: build each ``building`` segment of the tenant until none is left."""
    params = job["params"]
    tenant = Tenant(id=job["tenant_id"], **params["tenant"])
    topics = Topics.with_prefix(params["topic_prefix"])
    tx = _Transactions(conn)
    outcomes: dict[str, str] = {}
    tried: set[Build] = set()
    while (build := _next(conn, tenant.id)) is not None:
        if build in tried:  # still building after its own build: never loop on it
            raise jobs.JobFailed(f"segment {build.segment_id} did not leave building")
        tried.add(build)
        outcomes[build.segment_id] = build_segment(conn, tx, tenant, build, topics, progress)
        tx.commit()
    return {"segments": outcomes}


def build_segment(conn: Connection, tx: _Transactions, tenant: Tenant, build: Build,
                  topics: Topics, progress: Progress = lambda f: None) -> str:  # fmt: skip
    """Walk the tenant's contacts for one segment: ``ready``, ``superseded`` (a newer rule or
    deleted: the next build, if any, starts over), or ``failed`` (its rule raised)."""
    total = store.contact_count(conn, tenant.id)
    if not _record(conn, tenant.id, build, done=0, total=total):
        tx.rollback()
        return "superseded"
    tx.commit()
    done, after, skipped = 0, "", []
    while True:
        ids = [
            r["contact_id"]
            for r in conn.execute(
                "SELECT contact_id FROM contacts WHERE tenant_id = %s AND contact_id > %s "
                "ORDER BY contact_id LIMIT %s",
                (tenant.id, after, BATCH),
            ).fetchall()
        ]
        if not ids:
            break
        after = ids[-1]
        rows = conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s) "
            "ORDER BY contact_id FOR UPDATE SKIP LOCKED",
            (tenant.id, ids),
        ).fetchall()
        locked = {r["contact_id"] for r in rows}
        skipped += [i for i in ids if i not in locked]
        done += len(rows)
        outcome = _batch(conn, tx, tenant, build, rows, topics, done, total)
        if outcome != "ok":
            return outcome
        progress(min(1.0, done / max(1, total)))
    # The rows the consumer held: now waiting for their locks (in id order, as it locks).
    for i in range(0, len(skipped), BATCH):
        rows = conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s) "
            "ORDER BY contact_id FOR UPDATE",
            (tenant.id, skipped[i : i + BATCH]),
        ).fetchall()
        done += len(rows)
        outcome = _batch(conn, tx, tenant, build, rows, topics, done, total)
        if outcome != "ok":
            return outcome
    row = conn.execute(
        "UPDATE segments SET build_status = 'ready', build_done = %s, "
        "build_total = GREATEST(build_total, %s) WHERE tenant_id = %s AND segment_id = %s "
        "AND build_version = %s AND disabled_at IS NULL RETURNING segment_id",
        (done, done, tenant.id, build.segment_id, build.version),
    ).fetchone()
    tx.commit()
    return "ready" if row else "superseded"


def _record(conn: Connection, tenant_id: str, build: Build, *, done: int, total: int) -> bool:
    """Progress of ``build`` if it is still the segment's current one (the row locked)."""
    return (
        conn.execute(
            "UPDATE segments SET build_done = %s, build_total = GREATEST(%s, %s) "
            "WHERE tenant_id = %s AND segment_id = %s AND build_version = %s "
            "AND build_status = 'building' AND disabled_at IS NULL RETURNING segment_id",
            (done, total, done, tenant_id, build.segment_id, build.version),
        ).fetchone()
        is not None
    )


def _batch(conn: Connection, tx: _Transactions, tenant: Tenant, build: Build, rows: list[dict],
           topics: Topics, done: int, total: int) -> str:  # fmt: skip
    """Evaluate one batch of locked rows and commit it ("ok"), or roll it back."""
    segment = conn.execute(
        "SELECT name, rule, updated_at, build_version FROM segments "
        "WHERE tenant_id = %s AND segment_id = %s AND disabled_at IS NULL",
        (tenant.id, build.segment_id),
    ).fetchone()
    if segment is None or segment["build_version"] != build.version:
        tx.rollback()
        return "superseded"
    failures: Failures = {}
    if rows:
        earlier: dict[str, datetime] = {}
        changed = _changed(conn, tenant, build.segment_id, segment, rows, failures, earlier)
        if failures:
            tx.rollback()  # nothing of this batch: only the disable
            if disable_segments(conn, tenant.id, failures):
                queue_catalogue(conn, tenant, topics)  # outreach learns it is disabled
            tx.commit()
            return "failed"
        _rederive(conn, tenant, changed, topics)
        _due_earlier(conn, tenant.id, earlier)
    if not _record(conn, tenant.id, build, done=done, total=total):
        tx.rollback()  # a newer rule saved, or deleted, or disabled meanwhile
        return "superseded"
    tx.commit()
    return "ok"


def _changed(conn: Connection, tenant: Tenant, segment_id: str, segment: dict, rows: list[dict],
             failures: Failures, earlier: dict[str, datetime]) -> list[dict]:  # fmt: skip
    """The rows whose membership of the segment the rule changes (evaluated over what the
    contact's last derivation stored, at the time it derived); a failure goes to ``failures``.
    The other rows whose due instant the new rule brings forward (its windows and limits:
    docs/architecture.md "Time-driven evaluation") go to ``earlier``."""
    try:
        defined = SegmentDef(segment_id, segment["name"], compile_rule(segment["rule"]),
                             segment["updated_at"])  # fmt: skip
    except Exception as exc:  # a stored rule that no longer loads
        failures[segment_id] = RuleFailure(segment_id, failure_reason(exc), segment["updated_at"])
        return []
    ids = [r["contact_id"] for r in rows]
    members = {
        r["contact_id"]
        for r in conn.execute(
            "SELECT contact_id FROM segment_members WHERE tenant_id = %s AND segment_id = %s "
            "AND contact_id = ANY(%s)",
            (tenant.id, segment_id, ids),
        ).fetchall()
    }
    model = model_for(tenant, conn)
    history = load_history(conn, tenant.id, rows)
    accounts = store.accounts_of(conn, tenant.id, rows)
    found = defined.condition.horizons()
    watch = Watch(horizon_days(found), found.scores)
    changed = []
    for row in rows:
        now = derived_at(row)
        facts = stored_facts(
            tenant, row, history[row["contact_id"]], accounts.get(row["account_id"]), now
        )
        member = bool(membership([defined], facts, now, model, failures))
        if failures:
            return []
        if member != (row["contact_id"] in members):
            changed.append(row)
            continue
        times = [e.occurred_at for e in history[row["contact_id"]]] + [row["created_at"]]
        due = watch.due(times, now, facts.score)
        if due is not None and (row["due_at"] is None or due < row["due_at"]):
            earlier[row["contact_id"]] = due
    return changed


def _rederive(conn: Connection, tenant: Tenant, rows: list[dict], topics: Topics) -> None:
    """Re-derive the changed rows (locked), each at its own derivation time. A segment deleted
    after the derivation loaded the tenant's segments fails its membership write (foreign key):
    derive once more, in a savepoint, and the deleted segment is no longer loaded."""
    for attempt in (1, 2):
        try:
            with conn.transaction():  # a savepoint: the rows stay locked
                for now, group in derivation_times(rows).items():
                    refresh_contacts(conn, tenant, group, topics=topics, now=now, settle=False)
            return
        except errors.ForeignKeyViolation:
            if attempt == 2:
                raise


def _due_earlier(conn: Connection, tenant_id: str, earlier: dict[str, datetime]) -> None:
    if earlier:
        conn.execute(
            "UPDATE contacts c SET due_at = LEAST(COALESCE(c.due_at, u.due), u.due) "
            "FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, due) "
            "WHERE c.tenant_id = %s AND c.contact_id = u.id",
            (list(earlier), list(earlier.values()), tenant_id),
        )


def derivation_times(rows: list[dict]) -> dict[datetime | None, list[dict]]:
    """The rows by the time to re-derive them at, so that a build moves no contact back in time:
    None (each at its newest evidence, as the consumer derived it), or a recompute's clock,
    which recomputed contacts share batch by batch."""
    groups: dict[datetime | None, list[dict]] = {}
    for row in rows:
        at = derived_at(row)
        groups.setdefault(None if at == row["last_event_at"] else at, []).append(row)
    return groups


def stored_facts(
    tenant: Tenant, row: dict, events, account: dict | None, now: datetime
) -> ContactFacts:
    """The contact's facts as its last derivation gave the segment rules (derive._derive)."""
    lower = now - timedelta(days=HISTORY_DAYS)
    guess = contact_role(row)
    base = ContactFacts(
        contact_id=row["contact_id"],
        tenant_mode=tenant.mode,
        stage=row["stage"],
        score=row["score"] or 0.0,
        role=guess.role if guess else None,
        attributes=row["attributes"],
        tags=frozenset(row["tags"]),
        events=tuple(e for e in events if lower <= e.occurred_at <= now),
        account=account_facts(account) if account else None,
        created_at=row["created_at"],
    )
    return segment_facts(
        base,
        behaviour=row["behaviour"],
        features=row["features"],
        account_stage=account["stage"] if account else None,
        risk_flags=[f["flag"] for f in account["risk_flags"]] if account else [],
    )


def pending(conn: Connection, tenant_id: str) -> bool:
    """A segment of the tenant is building and no job of the tenant builds it: the job ended
    as it was saved (or failed): queue another."""
    return (
        conn.execute(
            "SELECT 1 FROM segments s WHERE s.tenant_id = %s AND s.build_status = 'building' "
            "AND s.disabled_at IS NULL AND NOT EXISTS (SELECT 1 FROM jobs j "
            "WHERE j.tenant_id = s.tenant_id AND j.kind = %s "
            "AND j.status IN ('queued', 'running')) LIMIT 1",
            (tenant_id, BACKFILL_JOB),
        ).fetchone()
        is not None
    )


JOBS = (JobKind(BACKFILL_JOB, "segment", run_backfill),)
