"""The one active scheduler: turns campaign schedules into due runs.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection: whichever
worker holds it schedules; if that worker dies its connection closes, the lock is released and
another worker takes over within a tick. Runs are unique per (campaign, due time), so even two
schedulers (a network partition that leaves a zombie connection) cannot create a run twice.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import psycopg
import structlog
from marshmallow import ValidationError
from psycopg import Connection
from psycopg_pool import ConnectionPool

from services.outreach import group_tasks, store
from services.outreach.model import outreach_settings
from services.outreach.schedule import (
    latest_due,
    next_due,
    parsed_schedule,
    stored_frequency_error,
)
from shared.api.audit import SYSTEM_ACTOR, audit

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


def materialise(pool: ConnectionPool, now: datetime) -> int:
    """Create the due run of every active scheduled campaign; end campaigns whose schedule is
    over. Returns runs created.

    No lock is held while a schedule is evaluated, and none spans two campaigns: the campaigns
    are read without locks, each is evaluated, then written in a short transaction of its own
    that locks that one row (SKIP LOCKED: a campaign being paused waits for the next tick) and
    only if the campaign did not change meanwhile. One tenant's schedule can thus never make
    another tenant's pause wait (issue 14, finding 1)."""
    with pool.connection() as conn:
        campaigns = store.scheduled_campaigns(conn)
    created = 0
    for c in campaigns:
        try:
            created += _materialise_one(pool, c, now)
        except (ValueError, TypeError, OverflowError) as exc:
            # A schedule stored before the checks (ScheduleError), or one that no longer
            # evaluates (a time zone gone): that campaign waits, the others are scheduled.
            log.warning("campaign_schedule_skipped", tenant_id=c["tenant_id"],
                        campaign_id=c["campaign_id"], reason=str(exc)[:200])  # fmt: skip
    return created


def _minimum(settings: dict | None) -> timedelta:
    try:
        minutes = outreach_settings(settings)["min_schedule_interval_minutes"]
    except ValidationError:  # settings stored before a check: the default minimum
        minutes = outreach_settings(None)["min_schedule_interval_minutes"]
    return timedelta(minutes=minutes)


def _materialise_one(pool: ConnectionPool, c: dict, now: datetime) -> int:
    # Saving and launching refuse a schedule faster than the tenant's minimum; one saved before
    # that check (or before the tenant raised its minimum) is paused here, never fired.
    too_frequent = stored_frequency_error(c["trigger"]["schedule"], _minimum(c["settings"]))
    if too_frequent:
        return _pause_too_frequent(pool, c, now, too_frequent)
    schedule = parsed_schedule(c["trigger"]["schedule"])
    # scheduled_until: the slots up to it were materialised or skipped (launch and resume set
    # it to that moment: slots missed while paused are not sent, docs/security.md "Schedules").
    after = c["scheduled_until"] or c["launched_at"]
    due, missed = latest_due(schedule, c["timezone"], after, now)
    ended = due is None and next_due(schedule, c["timezone"], max(after, now)) is None
    if due is None and not ended:
        return 0
    with pool.connection() as conn, conn.transaction():
        if not store.lock_unchanged(conn, c):
            return 0  # paused, changed or being changed: the next tick sees it anew
        if ended:
            store.end_campaign(conn, c["tenant_id"], c["campaign_id"], now)
            log.info("campaign_ended", tenant_id=c["tenant_id"], campaign_id=c["campaign_id"])
            return 0
        row = store.schedule_run(conn, c["tenant_id"], c["campaign_id"], due)
    if row is None:
        return 0
    log.info("campaign_run_scheduled", tenant_id=c["tenant_id"], campaign_id=c["campaign_id"],
             run_id=row["run_id"], due_at=due.isoformat(), skipped=missed - 1)  # fmt: skip
    return 1


def _pause_too_frequent(pool: ConnectionPool, c: dict, now: datetime, why: str) -> int:
    """Pause the campaign (visible in its status, the reason in the audit log) unless it
    changed meanwhile; its operator changes the schedule and launches it again."""
    with pool.connection() as conn, conn.transaction():
        paused = store.pause_unchanged(conn, c, now)
        if paused:
            audit(conn, SYSTEM_ACTOR, c["tenant_id"], "campaign.pause", c["campaign_id"],
                  {"from": "active", "to": "paused", "reason": "schedule_too_frequent",
                   "message": why})  # fmt: skip
            group_tasks.request_cancel(conn, c["tenant_id"], c["campaign_id"], "campaign paused")
    if paused:
        log.warning("campaign_schedule_too_frequent", tenant_id=c["tenant_id"],
                    campaign_id=c["campaign_id"], reason=why)  # fmt: skip
    return 0
