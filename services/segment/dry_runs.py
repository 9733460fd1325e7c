"""A dry run of a lifecycle model: who would move, from where to where, and why, without writing.

The background job (shared/jobs.py) that POST /lifecycle/<name>/dry-run queues (api_lifecycle.py);
it evaluates the tenant's contacts as derive.py would, in batches, in one read-only snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

from services.segment import store
from services.segment.derive import HISTORY_DAYS, HISTORY_LIMIT, account_facts, contact_role
from services.segment.facts import ContactFacts
from services.segment.lifecycle.grammar import ModelError, load_model
from services.segment.lifecycle.model import LifecycleModel
from services.segment.scoring import score
from shared.jobs import JobFailed, JobKind, Progress

DRY_RUN_BATCH = 500
DRY_RUN_SAMPLE = 20
# Above this many contacts a dry run evaluates a deterministic sample of this many (issue 14:
# a tenant of 300k contacts took seconds and GBs).
DRY_RUN_SAMPLE_ABOVE = 20_000
DRY_RUN_JOB = "lifecycle.dry_run"


def _contact_facts(mode: str, row: dict, events, account_row, now: datetime) -> ContactFacts:
    """The facts derive.py gives the rules for a contact at ``now`` (see derive._derive)."""
    seen = tuple(e for e in events if e.occurred_at <= now)
    guess = contact_role(row)
    return ContactFacts(
        contact_id=row["contact_id"],
        tenant_mode=mode,
        stage=row["stage"],
        score=score(seen, now),
        role=guess.role if guess else None,
        attributes=row["attributes"],
        tags=frozenset(row["tags"]),
        events=seen,
        account=account_facts(account_row) if account_row else None,
        created_at=row["created_at"],
    )


def _batches(conn, tenant_id: str, population: int) -> Iterator[list[dict]]:
    """The tenant's contacts in batches: all of them, or above DRY_RUN_SAMPLE_ABOVE a
    deterministic sample of that many (by a hash of the id: the same contacts every time)."""
    if population > DRY_RUN_SAMPLE_ABOVE:
        ids = store.sample_contact_ids(conn, tenant_id, DRY_RUN_SAMPLE_ABOVE)
        for i in range(0, len(ids), DRY_RUN_BATCH):
            yield store.contacts(conn, tenant_id, ids[i : i + DRY_RUN_BATCH])
        return
    after = ""
    while True:
        rows = store.contacts_after(conn, tenant_id, after, DRY_RUN_BATCH)
        if not rows:
            return
        after = rows[-1]["contact_id"]
        yield rows


def dry_run(conn, tenant_id: str, mode: str, model: LifecycleModel, now: datetime,
            progress: Progress = lambda fraction: None) -> dict:  # fmt: skip
    """The tenant's contacts (or a sample of a big tenant's) evaluated with ``model`` at
    ``now``, in batches. Reads only (the caller's transaction is read-only): who would move,
    from where to where, and why."""
    pairs: Counter[tuple[str | None, str]] = Counter()
    sample: list[dict] = []
    evaluated = 0
    since = now - timedelta(days=HISTORY_DAYS)
    population = store.contact_count(conn, tenant_id)
    sampled = population > DRY_RUN_SAMPLE_ABOVE
    for rows in _batches(conn, tenant_id, population):
        evaluated += len(rows)
        history = store.contact_events(
            conn, tenant_id, [r["contact_id"] for r in rows], since, HISTORY_LIMIT
        )
        accounts = store.accounts_of(conn, tenant_id, rows)
        for row in rows:
            facts = _contact_facts(
                mode, row, history[row["contact_id"]], accounts.get(row["account_id"]), now
            )
            moves = model.settle(facts, now)
            if not moves:
                continue
            pairs[(row["stage"], moves[-1].to_stage)] += 1
            if len(sample) < DRY_RUN_SAMPLE:
                sample.append(
                    {
                        "contact_id": row["contact_id"],
                        "name": row["name"],
                        "from": row["stage"],
                        "to": moves[-1].to_stage,
                        "cause": "; then ".join(m.cause for m in moves),
                        "path": [m.to_stage for m in moves],
                    }
                )
        progress(evaluated / max(1, min(population, DRY_RUN_SAMPLE_ABOVE)))
    moves_out = [
        {"from": a, "to": b, "count": n}
        for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1]))
    ]
    return {
        "model": model.name,
        "now": now,
        "evaluated": evaluated,
        "moving": sum(pairs.values()),
        "moves": moves_out,
        "sample": sample,
        "sampled": sampled,
        "population": population,
        "sample_size": evaluated if sampled else None,
    }


def _run_dry_run(conn, job: dict, progress: Progress) -> dict:
    """The background job (shared/jobs.py) of a dry run: the model document and the tenant's
    mode as they were when it was asked for."""
    # Read-only and one snapshot for every batch: a dry run can neither write nor block.
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    params = job["params"]
    try:
        model = load_model(params["document"])
    except ModelError as exc:  # checked when queued; a built-in pack changed since
        raise JobFailed(f"invalid model: {exc.message}") from None
    now = datetime.fromisoformat(params["now"])
    return dry_run(conn, job["tenant_id"], params["mode"], model, now, progress)


JOBS = (JobKind(DRY_RUN_JOB, "segment", _run_dry_run),)
