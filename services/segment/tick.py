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
from datetime import UTC, datetime, timedelta

import structlog
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from services.segment import store
from services.segment.derive import refresh_accounts, refresh_contacts
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
            contacts = _isolated(_contacts_batch, "contacts", pool, tenant, topics, now, batch)
            accounts = _isolated(_accounts_batch, "accounts", pool, tenant, topics, now, batch)
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


POSTPONE = timedelta(hours=1)  # a row whose derivation fails is tried again this much later


def _isolated(run, table: str, pool, tenant: Tenant, topics: Topics, now: datetime, batch: int):
    """A batch; if it fails, its rows one at a time, each failing one postponed (logged): one
    row whose rules raise must not hold back the rest of the tick, nor the other tenants."""
    try:
        return run(pool, tenant, topics, now, batch)
    except Exception as exc:
        log.warning("segment_tick_batch_failed", tenant_id=tenant.id, table=table,
                    error=type(exc).__name__)  # fmt: skip
    done = 0
    ids = _due_ids(pool, tenant.id, table, now, batch)
    for subject_id in ids:
        try:
            done += run(pool, tenant, topics, now, 1, only=subject_id)
        except Exception as exc:
            log.error("segment_tick_row_failed", tenant_id=tenant.id, table=table,
                      subject_id=subject_id, error=type(exc).__name__,
                      retry_in=str(POSTPONE))  # fmt: skip
            _postpone(pool, tenant.id, table, subject_id, now + POSTPONE)
            done += 1
    return done


_KEYS = {"contacts": "contact_id", "accounts": "account_id"}


def _due(
    conn: Connection,
    table: str,
    tenant_id: str,
    now: datetime,
    limit: int,
    *,
    only: str | None = None,
    whole: bool = False,
    claim: bool = True,
) -> list[dict]:
    """The rows of ``table`` due at ``now``, soonest first: the whole rows or their keys;
    claimed (locked, skipping rows others hold) unless ``claim`` is false; ``only`` one key."""
    key = sql.Identifier(_KEYS[table])
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE tenant_id = %s AND due_at <= %s "
        "AND (%s::text IS NULL OR {key} = %s) ORDER BY due_at LIMIT %s{claim}"
    ).format(
        columns=sql.SQL("*") if whole else key,
        table=sql.Identifier(table),
        key=key,
        claim=sql.SQL(" FOR UPDATE SKIP LOCKED" if claim else ""),
    )
    return conn.execute(query, (tenant_id, now, only, only, limit)).fetchall()


def _due_ids(pool, tenant_id: str, table: str, now: datetime, batch: int) -> list[str]:
    with pool.connection() as conn:
        return [r[_KEYS[table]] for r in _due(conn, table, tenant_id, now, batch, claim=False)]


def _postpone(pool, tenant_id: str, table: str, subject_id: str, until: datetime) -> None:
    query = sql.SQL("UPDATE {table} SET due_at = %s WHERE tenant_id = %s AND {key} = %s").format(
        key=sql.Identifier(_KEYS[table]), table=sql.Identifier(table)
    )
    with pool.connection() as conn:
        conn.execute(query, (until, tenant_id, subject_id))


def _manual(conn: Connection, tenant_id: str, kind: str, rows: list[dict], newest) -> dict:
    """{subject: (stage, since)} of the rows whose stage staff set after their newest evidence
    (``newest(row)``): a manual stage stands until new evidence, time alone does not move it."""
    last = {
        r["subject_id"]: r
        for r in conn.execute(
            "SELECT DISTINCT ON (subject_id) subject_id, actor, changed_at FROM stage_history "
            "WHERE tenant_id = %s AND subject_kind = %s AND subject_id = ANY(%s) "
            "ORDER BY subject_id, changed_at DESC, id DESC",
            (tenant_id, kind, [r["id"] for r in rows]),
        )
    }
    return {
        r["id"]: (r["stage"], r["stage_since"])
        for r in rows
        if (h := last.get(r["id"])) and h["actor"] is not None and h["changed_at"] >= newest(r)
    }


def _contacts_batch(
    pool: ConnectionPool,
    tenant: Tenant,
    topics: Topics,
    now: datetime,
    batch: int,
    only: str | None = None,
) -> int:
    with pool.connection() as conn, conn.transaction():
        rows = _due(conn, "contacts", tenant.id, now, batch, only=only, whole=True)
        if not rows:
            return 0
        rows.sort(key=lambda r: r["contact_id"])
        before = {r["contact_id"]: r["stage"] for r in rows}
        _derive_contacts(conn, tenant, rows, topics, now)
        _members_moved(conn, tenant.id, before, now)
        return len(rows)


def _derive_contacts(conn: Connection, tenant: Tenant, rows: list[dict], topics, now) -> None:
    """Locked contact rows derived at ``now``; a stage staff set stays as it is."""
    manual = _manual(conn, tenant.id, "contact", [{**r, "id": r["contact_id"]} for r in rows],
                     lambda r: r["last_event_at"])  # fmt: skip
    refresh_contacts(conn, tenant, rows, topics=topics, now=now, moved_by=TIME, settled=manual)


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
    pool: ConnectionPool,
    tenant: Tenant,
    topics: Topics,
    now: datetime,
    batch: int,
    only: str | None = None,
) -> int:
    with pool.connection() as conn, conn.transaction():
        due = [r["account_id"] for r in _due(conn, "accounts", tenant.id, now, batch, only=only)]
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
        rows = conn.execute(
            "SELECT a.account_id AS id, a.stage, a.stage_since, max(c.last_event_at) AS newest "
            "FROM accounts a JOIN contacts c USING (tenant_id, account_id) "
            "WHERE a.tenant_id = %s AND a.account_id = ANY(%s) GROUP BY a.tenant_id, a.account_id",
            (tenant.id, ready),
        ).fetchall()
        manual = _manual(conn, tenant.id, "account", rows, lambda r: r["newest"])
        changed = refresh_accounts(conn, tenant, ready, event_ids={}, topics=topics, now=now,
                                   moved_by=TIME, settled=manual)  # fmt: skip
        # Only the members locked above: one that joined since is the consumer's to derive.
        members = [r for r in store.members(conn, tenant.id, changed) if r["contact_id"] in locked]
        _derive_contacts(conn, tenant, members, topics, now)
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
