"""What a tenant's overview reads beside the funnel report (docs/console.md "Overview"): the
latest stage changes of its subjects, the accounts whose risk flags ask for action and the
contacts recently lost (docs/domain.md "Lost customers"). Tables
unqualified (the caller's search_path is the segment schema: api_common.segment_connection)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from services.segment.api_people_common import ACCOUNT_ITEM_COLUMNS

# One ordered index read per kind (stage_history_time: tenant, kind, model, changed_at), merged.
_CHANGES = """
SELECT h.*, COALESCE(c.name, a.name) AS subject_name FROM (
    (SELECT id, subject_kind, subject_id, from_stage, to_stage, cause, event_id, changed_at,
            actor, moved_by
       FROM stage_history WHERE tenant_id = %(t)s AND subject_kind = 'contact'
        AND model = %(model)s ORDER BY changed_at DESC, id DESC LIMIT %(n)s)
    UNION ALL
    (SELECT id, subject_kind, subject_id, from_stage, to_stage, cause, event_id, changed_at,
            actor, moved_by
       FROM stage_history WHERE tenant_id = %(t)s AND subject_kind = 'account'
        AND model = %(model)s ORDER BY changed_at DESC, id DESC LIMIT %(n)s)
) h
LEFT JOIN contacts c ON h.subject_kind = 'contact' AND c.tenant_id = %(t)s
      AND c.contact_id = h.subject_id
LEFT JOIN accounts a ON h.subject_kind = 'account' AND a.tenant_id = %(t)s
      AND a.account_id = h.subject_id
ORDER BY h.changed_at DESC, h.id DESC LIMIT %(n)s
"""


def recent_stage_changes(conn, tenant: str, model: str, *, limit: int = 20) -> list[dict]:
    """The tenant's last ``limit`` stage changes (contacts and accounts) under ``model``, newest
    first, with the subject's name, what moved it (``moved_by``, ``actor``) and the cause."""
    return conn.execute(_CHANGES, {"t": tenant, "model": model, "n": limit}).fetchall()


def risk_account_rows(conn, tenant: str, flags: Sequence[str], *, limit: int = 20) -> list[dict]:
    """The tenant's accounts holding any of ``flags`` (ACCOUNT_ITEM_COLUMNS, plus ``flagged_at``:
    the latest start among those flags), newest first."""
    return conn.execute(
        sql.SQL(
            "SELECT {}, f.flagged_at FROM accounts a "
            "CROSS JOIN LATERAL (SELECT max((x->>'since')::timestamptz) AS flagged_at, "
            "  count(*) AS n FROM jsonb_array_elements(a.risk_flags) x "
            "  WHERE x->>'flag' = ANY(%(flags)s::text[])) f "
            "WHERE a.tenant_id = %(t)s AND a.merged_into IS NULL AND f.n > 0 "
            "ORDER BY f.flagged_at DESC NULLS LAST, a.account_id LIMIT %(n)s"
        ).format(ACCOUNT_ITEM_COLUMNS),
        {"t": tenant, "flags": list(flags), "n": limit},
    ).fetchall()


def recent_losses(conn, tenant: str, *, limit: int = 10) -> list[dict]:
    """The tenant's lost contacts (``contacts.lost``), newest loss first: id, name, account,
    the loss (reason, staff_userid, event_id) and ``lost_at``."""
    return conn.execute(
        "SELECT contact_id, name, account_id, lost, lost_at "
        "FROM contacts WHERE tenant_id = %s AND lost_at IS NOT NULL "
        "ORDER BY lost_at DESC, contact_id LIMIT %s",
        (tenant, limit),
    ).fetchall()
