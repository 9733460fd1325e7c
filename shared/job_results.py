"""Background job results that name a person are dropped when that person is erased.

A finished dry run or preview (shared/jobs.py) keeps sample rows, with contact ids and names,
until it expires; erasure (docs/privacy.md) must not leave them there for that long. Kept apart
from shared/jobs.py so that consumers can call it without loading the runner and its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence


def forget_results(conn, tenant_id: str, contact_ids: Sequence[str]) -> int:
    """Delete the tenant's finished jobs (in the current schema's ``jobs`` table) whose result
    names any of ``contact_ids``; the caller re-runs them if still wanted. A queued or running
    job is left alone: it reads the contacts when it runs, after the erasure."""
    if not contact_ids:
        return 0
    return conn.execute(
        "DELETE FROM jobs WHERE tenant_id = %s AND status IN ('done', 'failed') "
        "AND result IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS c "
        "WHERE strpos(result::text, '\"' || c || '\"') > 0)",
        (tenant_id, list(contact_ids)),
    ).rowcount
