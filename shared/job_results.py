"""Background job results that name a person are dropped when that person is erased.

A finished dry run or preview (shared/jobs.py) keeps sample rows, with contact ids and names,
until it expires; erasure (docs/privacy.md) must not leave them there for that long. A job
running at the time of the erasure read the contacts before it, so its samples may name the
person too: it is queued again, which makes its runner's ``finish`` record nothing (the
status/attempts guard) and runs it afresh after the erasure. Kept apart from shared/jobs.py so
that consumers can call it without loading the runner and its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence


def forget_results(conn, tenant_id: str, contact_ids: Sequence[str]) -> int:
    """Delete the tenant's finished jobs (in the current schema's ``jobs`` table) whose result
    names any of ``contact_ids`` (the caller re-runs them if still wanted), and queue the
    tenant's running jobs again; returns how many jobs were deleted or requeued. A queued job
    is left alone: it reads the contacts when it runs, after the erasure."""
    if not contact_ids:
        return 0
    # The lock claim() takes: a job claimed concurrently is running once we look (and requeued),
    # or claimed after the erasure commits (and reads without the person).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.jobs'))")
    deleted = conn.execute(
        "DELETE FROM jobs WHERE tenant_id = %s AND status IN ('done', 'failed') "
        "AND result IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS c "
        "WHERE strpos(result::text, '\"' || c || '\"') > 0)",
        (tenant_id, list(contact_ids)),
    ).rowcount
    # Which contacts a running job will sample is unknown until it finishes: all of the
    # tenant's go again. Its attempts stay, so the old runner's finish() and heartbeats match
    # neither the queued row nor its next run (which counts one more attempt).
    requeued = conn.execute(
        "UPDATE jobs SET status = 'queued', progress = 0, started_at = NULL, "
        "heartbeat_at = NULL WHERE tenant_id = %s AND status = 'running'",
        (tenant_id,),
    ).rowcount
    return deleted + requeued
