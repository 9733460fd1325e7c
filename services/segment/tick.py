"""The time tick: re-derive the contacts and accounts whose due instant has passed
(docs/architecture.md "Time-driven evaluation").

Each derivation stores when time alone may next change it (``due_at``, services/segment/due.py).
The tick re-derives exactly those rows, at the wall clock, through the same derive code and the
same outbox as touchpoints: stage changes (``moved_by`` "time") and profiles are published as for
events. A contact with nothing due is never read.

Every segment consumer runs the tick on a timer (``Ticker``); no leader is needed: rows are
claimed with ``FOR UPDATE SKIP LOCKED``, so replicas share the work, and the tick never waits for
a lock (it skips a contact or an account the consumer is deriving; the consumer derives it anyway
and stores its next due instant). Never waiting also means the tick cannot deadlock with a batch
that locks in another order. Tenants take turns batch by batch: one tenant's backlog does not
hold up the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from psycopg import Connection
from psycopg_pool import ConnectionPool

from services.segment.derive import refresh_accounts, refresh_contacts, refresh_members
from services.segment.metrics import TICK_DERIVED
from services.segment.topics import Topics
from shared.tenants import Tenant

log = structlog.get_logger("siyu.segment.tick")

TIME = "time"


@dataclass
class TickResult:
    contacts: int = 0
    accounts: int = 0

    def __bool__(self) -> bool:
        return bool(self.contacts or self.accounts)


def tick(
    pool: ConnectionPool,
    tenants: Iterable[Tenant],
    topics: Topics,
    now: datetime,
    *,
    batch: int = 500,
    after_batch: Callable[[], object] = lambda: None,
) -> TickResult:
    """Re-derive everything due at ``now``, tenant after tenant one batch at a time, until
    nothing is due. Each re-derived row is due after ``now`` (or never), so this ends.
    ``after_batch`` runs after each committed batch (the consumer drains its outbox there)."""
    done = TickResult()
    active = list(tenants)
    while active:
        still = []
        for tenant in active:
            contacts = _contacts_batch(pool, tenant, topics, now, batch)
            accounts = _accounts_batch(pool, tenant, topics, now, batch)
            if contacts or accounts:
                after_batch()
                done.contacts += contacts
                done.accounts += accounts
                TICK_DERIVED.labels(tenant.id, "contact").inc(contacts)
                TICK_DERIVED.labels(tenant.id, "account").inc(accounts)
            if contacts == batch or accounts == batch:
                still.append(tenant)
        active = still
    return done


def _contacts_batch(
    pool: ConnectionPool, tenant: Tenant, topics: Topics, now: datetime, batch: int
) -> int:
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = %s AND due_at <= %s "
            "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (tenant.id, now, batch),
        ).fetchall()
        if not rows:
            return 0
        rows.sort(key=lambda r: r["contact_id"])
        before = {r["contact_id"]: r["stage"] for r in rows}
        refresh_contacts(conn, tenant, rows, topics=topics, now=now, moved_by=TIME)
        _members_moved(conn, tenant.id, before, now)
        return len(rows)


def _members_moved(conn: Connection, tenant_id: str, before: dict[str, str | None], now) -> None:
    """A member whose stage time moved may move its account (an account reaches the stages its
    members reach): the account is due now, unless the consumer holds it (and refreshes it)."""
    conn.execute(
        "UPDATE accounts SET due_at = %(now)s WHERE account_id IN ("
        "  SELECT a.account_id FROM accounts a JOIN contacts c USING (tenant_id, account_id) "
        "  JOIN unnest(%(ids)s::text[], %(stages)s::text[]) AS b(id, stage) ON b.id = c.contact_id"
        "  WHERE a.tenant_id = %(tenant)s AND c.tenant_id = %(tenant)s"
        "    AND c.stage IS DISTINCT FROM b.stage"
        "  FOR UPDATE OF a SKIP LOCKED) AND tenant_id = %(tenant)s",
        {"now": now, "tenant": tenant_id, "ids": list(before), "stages": list(before.values())},
    )


def _accounts_batch(
    pool: ConnectionPool, tenant: Tenant, topics: Topics, now: datetime, batch: int
) -> int:
    with pool.connection() as conn, conn.transaction():
        due = [
            r["account_id"]
            for r in conn.execute(
                "SELECT account_id FROM accounts WHERE tenant_id = %s AND due_at <= %s "
                "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (tenant.id, now, batch),
            )
        ]
        if not due:
            return 0
        # The members too, without waiting: an account with a member the consumer holds stays due
        # (that batch refreshes it). Accounts merged away or without members are due no more.
        locked = {
            r["contact_id"]
            for r in conn.execute(
                "SELECT contact_id FROM contacts WHERE tenant_id = %s AND account_id = ANY(%s) "
                "FOR UPDATE SKIP LOCKED",
                (tenant.id, due),
            )
        }
        members: dict[str, list[str]] = {}
        for r in conn.execute(
            "SELECT contact_id, account_id FROM contacts WHERE tenant_id = %s "
            "AND account_id = ANY(%s)",
            (tenant.id, due),
        ):
            members.setdefault(r["account_id"], []).append(r["contact_id"])
        ready = sorted(a for a, ids in members.items() if locked.issuperset(ids))
        busy = set(members) - set(ready)
        conn.execute(
            "UPDATE accounts SET due_at = NULL WHERE tenant_id = %s AND account_id = ANY(%s) "
            "AND (merged_into IS NOT NULL OR account_id <> ALL(%s))",
            (tenant.id, due, list(members)),
        )
        changed = refresh_accounts(
            conn, tenant, ready, event_ids={}, topics=topics, now=now, moved_by=TIME
        )
        refresh_members(conn, tenant, changed, topics=topics, now=now, moved_by=TIME)
        return len(due) - len(busy)


class Ticker:
    """Runs ``tick`` every ``interval_s`` on a daemon thread (the segment consumer's)."""

    def __init__(
        self,
        pool: ConnectionPool,
        tenants: Callable[[], Iterable[Tenant]],
        topics: Topics,
        *,
        interval_s: float,
        after_batch: Callable[[], object] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.pool, self.tenants, self.topics = pool, tenants, topics
        self.interval_s, self.after_batch, self.clock = interval_s, after_batch, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> TickResult:
        try:
            done = tick(self.pool, self.tenants(), self.topics, self.clock(),
                        after_batch=self.after_batch)  # fmt: skip
        except Exception as exc:  # the database is away: the next tick retries
            log.warning("segment_tick_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return TickResult()
        if done:
            log.info("segment_tick", contacts=done.contacts, accounts=done.accounts)
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def start(self) -> Ticker:
        self._thread = threading.Thread(target=self._loop, name="segment-tick", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
