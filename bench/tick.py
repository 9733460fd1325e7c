"""The time tick (services/segment/tick.py) over 1M contacts: what a tick costs when nothing is
due, and how fast it re-derives what is.

Two demo tenants: bloom (B2C) gets 1,000,000 contacts and acme (B2B) 100,000 contacts in 10,000
accounts, written by ``generate_series``, every one due some time in the next 30 days. A tick at
an instant before any of them is due must read nothing: target < 1 s on 2 cores. Its floor,
measured in the same run, is the bare minimum a tick does: one indexed probe per tenant and
subject kind. Then 1% of bloom's contacts (10,000) are made due and one tick re-derives them
(their stages, scores, segments, profiles queued in the outbox), beside the floor of reading the
same rows.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from bench import report
from services.segment.tick import tick
from services.segment.topics import Topics
from shared.db import autocommit, create_pool
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.logging import configure_logging
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

CONTACTS = int(os.environ.get("BENCH_TICK_CONTACTS", "1000000"))
TICKS = int(os.environ.get("BENCH_TICK_RUNS", "20"))
NOW = datetime(2026, 11, 1, tzinfo=UTC)

B2C = """
INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, score, score_at, due_at)
SELECT 'bloom', 'c' || lpad(i::text, 8, '0'), %(t)s - interval '30 days', %(t)s, 10, %(t)s,
       %(t)s + make_interval(secs => 60 + i %% (30 * 86400))
  FROM generate_series(1, %(n)s) AS i
"""
B2B_ACCOUNTS = """
INSERT INTO accounts (tenant_id, account_id, name, created_at, members, due_at)
SELECT 'acme', 'acct-' || i, 'Account ' || i, %(t)s - interval '30 days', 10,
       %(t)s + make_interval(secs => 60 + i %% (30 * 86400))
  FROM generate_series(1, %(n)s / 100) AS i
"""
B2B = """
INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, account_id, due_at)
SELECT 'acme', 'a' || lpad(i::text, 8, '0'), %(t)s - interval '30 days', %(t)s,
       'acct-' || (1 + i %% (%(n)s / 100)), %(t)s + make_interval(secs => 60 + i %% (30 * 86400))
  FROM generate_series(1, %(n)s / 10) AS i
"""


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-tick-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        try:
            return run(postgres.dsn)
        finally:
            postgres.stop()


def run(dsn: str) -> int:
    migrate_service(dsn, "segment")
    pool = create_pool(dsn, name="bench-tick", schema="segment", max_size=2)
    started = time.perf_counter()
    with pool.connection() as conn, conn.transaction():
        params = {"n": CONTACTS, "t": NOW}
        conn.execute(B2C, params)
        conn.execute(B2B_ACCOUNTS, params)
        conn.execute(B2B, params)
    with autocommit(pool) as conn:
        conn.execute("VACUUM ANALYZE contacts")
        conn.execute("VACUUM ANALYZE accounts")
    setup_s = time.perf_counter() - started
    tenants = load_tenants(DEMO_TENANTS_PATH).tenants
    topics = Topics.with_prefix("bench.")

    def idle_tick() -> float:
        t0 = time.perf_counter()
        done = tick(pool, tenants, topics, NOW)
        assert not done, done  # nothing is due before the first instant generated
        return (time.perf_counter() - t0) * 1000

    def floor() -> float:
        t0 = time.perf_counter()
        for tenant in tenants:
            for table in ("contacts", "accounts"):
                with pool.connection() as conn:
                    query = sql.SQL(
                        "SELECT 1 FROM {} WHERE tenant_id = %s AND due_at <= %s "
                        "ORDER BY due_at LIMIT 1"
                    ).format(sql.Identifier(table))
                    conn.execute(query, (tenant.id, NOW)).fetchall()
        return (time.perf_counter() - t0) * 1000

    idle_tick(), floor()  # warm-up
    idle_ms = [idle_tick() for _ in range(TICKS)]
    floor_ms = [floor() for _ in range(TICKS)]

    due_n = CONTACTS // 100
    with pool.connection() as conn:
        conn.execute(
            "UPDATE contacts SET due_at = %s WHERE tenant_id = 'bloom' "
            "AND contact_id <= 'c' || lpad(%s::text, 8, '0')",
            (NOW - timedelta(seconds=1), due_n),
        )
    t0 = time.perf_counter()
    with pool.connection() as conn:
        conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = 'bloom' AND due_at <= %s", (NOW,)
        ).fetchall()
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = tick(pool, tenants, topics, NOW)
    busy_s = time.perf_counter() - t0
    assert done.contacts == due_n, done
    pool.close()

    p95_idle, p95_floor = _p95(idle_ms), _p95(floor_ms)
    scale = f"{(CONTACTS + CONTACTS // 10) / 1e6:g}M contacts"
    report.add("segment", f"Time tick, {scale}, nothing due", "siyu segment tick", p95_idle,
               "one indexed probe per tenant and kind", p95_floor, "ms")  # fmt: skip
    print(f"## Time tick ({os.cpu_count()} cores, {CONTACTS:,} B2C + {CONTACTS // 10:,} B2B "
          f"contacts in {CONTACTS // 100:,} accounts; setup {setup_s:.1f} s; "
          f"{TICKS} ticks)\n")  # fmt: skip
    print("| tick with nothing due | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for label, ms in (("indexed probes, bare SQL (floor)", floor_ms), ("siyu tick", idle_ms)):
        print(f"| {label} | {statistics.median(ms):,.1f} | {_p95(ms):,.1f} | {max(ms):,.1f} |")
    ok = p95_idle < 1000
    print(f"\ntick with nothing due: p95 {p95_idle:,.1f} ms (target < 1,000 ms"
          f"{'' if ok else ', NOT met'})")  # fmt: skip
    print(f"tick with {due_n:,} contacts due: {busy_s:.2f} s ({due_n / busy_s:,.0f} contacts/s); "
          f"reading the same rows: {read_s:.2f} s\n")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    configure_logging("WARNING")
    sys.exit(main())
