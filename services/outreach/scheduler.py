"""The one active scheduler: turns campaign schedules into due runs.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection: whichever
worker holds it schedules; if that worker dies its connection closes, the lock is released and
another worker takes over within a tick. Runs are unique per (campaign, due time), so even two
schedulers (a network partition that leaves a zombie connection) cannot create a run twice.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import psycopg
import structlog
from psycopg import Connection

from services.outreach.schedule import latest_due, next_due

log = structlog.get_logger("siyu.outreach")

LOCK_KEY = 0x5159_4F55_5452  # "SIYOUTR": the scheduler's advisory lock


class Leadership:
    """Holds (or tries to take) the scheduler lock on its own connection."""

    def __init__(self, dsn: str, schema: str):
        self.dsn, self.schema = dsn, schema
        self._conn: Connection | None = None
        self._leader = False

    def held(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, options=f"-c search_path={self.schema}"
                )
                self._leader = False
            if not self._leader:
                self._leader = bool(
                    self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
                )
                if self._leader:
                    log.info("outreach_scheduler_leader")
            else:
                self._conn.execute("SELECT 1")  # still connected, so still holding the lock
            return self._leader
        except psycopg.Error as exc:
            log.warning("outreach_scheduler_lock_lost", error=str(exc)[:200])
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn, self._leader = None, False


def materialise(conn: Connection, now: datetime) -> int:
    """Create the due run of every active scheduled campaign; end campaigns whose schedule is
    over. Returns runs created."""
    created = 0
    campaigns = conn.execute(
        "SELECT c.tenant_id, c.campaign_id, c.trigger, c.launched_at, c.scheduled_until, "
        "COALESCE(t.timezone, 'Asia/Shanghai') AS timezone FROM campaigns c "
        "LEFT JOIN tenants t ON t.tenant_id = c.tenant_id "
        "WHERE c.status = 'active' AND c.trigger ? 'schedule' FOR UPDATE OF c SKIP LOCKED"
    ).fetchall()
    for c in campaigns:
        schedule = _parsed(c["trigger"]["schedule"])
        after = c["scheduled_until"] or c["launched_at"]
        due, missed = latest_due(schedule, c["timezone"], after, now)
        if due is not None:
            steps = conn.execute(
                "SELECT count(*) AS n FROM campaign_runs "
                "WHERE tenant_id = %s AND campaign_id = %s AND trigger_key LIKE 'at:%%'",
                (c["tenant_id"], c["campaign_id"]),
            ).fetchone()["n"]
            row = conn.execute(
                "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, step, due_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING run_id",
                (c["tenant_id"], c["campaign_id"], f"at:{due.isoformat()}", steps, due),
            ).fetchone()
            conn.execute(
                "UPDATE campaigns SET scheduled_until = %s "
                "WHERE tenant_id = %s AND campaign_id = %s",
                (due, c["tenant_id"], c["campaign_id"]),
            )
            if row is not None:
                created += 1
                log.info("campaign_run_scheduled", tenant_id=c["tenant_id"],
                         campaign_id=c["campaign_id"], run_id=row["run_id"], due_at=due.isoformat(),
                         skipped=missed - 1)  # fmt: skip
        elif next_due(schedule, c["timezone"], max(after, now)) is None:
            conn.execute(
                "UPDATE campaigns SET status = 'ended', updated_at = %s "
                "WHERE tenant_id = %s AND campaign_id = %s",
                (now, c["tenant_id"], c["campaign_id"]),
            )
            log.info("campaign_ended", tenant_id=c["tenant_id"], campaign_id=c["campaign_id"])
    return created


def _parsed(schedule: dict) -> dict:
    """The stored schedule (JSON) with its start/end as datetimes."""
    out = dict(schedule)
    for key in ("start", "end"):
        if isinstance(out.get(key), str):
            out[key] = datetime.fromisoformat(out[key])
    return out
