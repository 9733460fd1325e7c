"""The funnel report of a 1M-contact tenant through the admin API, latency and memory.

A B2C tenant (bloom, AARRR) gets 1,000,000 contacts and their stage history (1 to 4 transitions
each along the funnel, 1% with the duplicate rows a merge leaves), written by ``generate_series``
in SQL (January to November 2026). ``GET /api/v1/reports/funnel`` is then called through the real
admin app in this process (its default period, the last 90 days ending at ``to``, here
2026-11-30 so that the period holds the generated history whenever the bench runs; a 30-day
window; and all time, asked for explicitly), beside floors measured in the same run: the bare
``GROUP BY stage`` of the same contacts (latency) and ``GET /contacts?limit=1`` (memory). Memory
is the Python allocations' peak during one request (tracemalloc) and the growth of the process's
peak RSS over all the requests. Targets: p95 < 500 ms (the default period and the window), < 50 MB
extra memory.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from services.outreach.tokens import create_token, seed_tenants
from shared.api import create_api_app
from shared.config import Settings
from shared.db import autocommit, create_pool
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from siyu.api import blueprints

CONTACTS = int(os.environ.get("BENCH_FUNNEL_CONTACTS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_FUNNEL_REQUESTS", "10"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGES = ["acquisition", "activation", "retention", "revenue"]  # AARRR's first four

# Contact i moved 1 + i % 4 times along the funnel, a day or more apart; every 100th has the
# rows a merge leaves (its own "first" transition and a repeat), which the chain walk skips.
HISTORY = """
INSERT INTO stage_history (tenant_id, subject_kind, subject_id, model, from_stage, to_stage,
                           cause, changed_at)
SELECT 'bloom', 'contact', 'c' || lpad(i::text, 8, '0'), 'aarrr',
       CASE WHEN k > 1 THEN (%(stages)s::text[])[k - 1] END, (%(stages)s::text[])[k], 'bench',
       %(t0)s::timestamptz + make_interval(days => (i %% 300) + 3 * k, hours => i %% 24)
  FROM generate_series(1, %(n)s) AS i, generate_series(1, 1 + i %% 4) AS k
UNION ALL
SELECT 'bloom', 'contact', 'c' || lpad(i::text, 8, '0'), 'aarrr', NULL, 'acquisition', 'merge',
       %(t0)s::timestamptz + make_interval(days => (i %% 300) + 4)
  FROM generate_series(100, %(n)s, 100) AS i
"""
CONTACTS_SQL = """
INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, stage, stage_since,
                      first_channel)
SELECT 'bloom', 'c' || lpad(i::text, 8, '0'), %(t0)s, %(t0)s,
       CASE WHEN i %% 50 = 0 THEN NULL ELSE (%(stages)s::text[])[1 + i %% 4] END,
       CASE WHEN i %% 50 = 0 THEN NULL
            ELSE %(t0)s::timestamptz
                 + make_interval(days => (i %% 300) + 3 * (1 + i %% 4), hours => i %% 24) END,
       -- a third came through no channel code; the rest spread over four channels
       (ARRAY[NULL, NULL, NULL, 'expo', 'ad', 'store', 'article', NULL, 'expo'])[1 + i %% 9]
  FROM generate_series(1, %(n)s) AS i
"""
SMALL = """
INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, stage, stage_since)
SELECT 'acme', 'a' || i, %(t0)s, %(t0)s, 'awareness', %(t0)s FROM generate_series(1, 100) AS i
"""


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the process's peak RSS so far
            return int(line.split()[1]) / 1024
    return float("nan")


def _p95(samples: list[float]) -> float:
    """Nearest rank: the smallest sample at or above 95% of them (never an extrapolation)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _traced_peak_mb(call) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1024 / 1024
    finally:
        tracemalloc.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-funnel-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        try:
            return run(postgres.dsn, Path(tmp))
        finally:
            postgres.stop()


def run(dsn: str, tmp: Path) -> int:
    migrate_service(dsn, "outreach")
    migrate_service(dsn, "segment")
    seg = create_pool(dsn, name="bench-funnel-seg", schema="segment", max_size=1)
    t0 = time.perf_counter()
    with seg.connection() as conn, conn.transaction():
        conn.execute(CONTACTS_SQL, {"n": CONTACTS, "t0": T0, "stages": STAGES})
        conn.execute(HISTORY, {"n": CONTACTS, "t0": T0, "stages": STAGES})
        conn.execute(SMALL, {"t0": T0})
    with seg.connection() as conn:
        conn.execute("ANALYZE contacts")
        conn.execute("ANALYZE stage_history")
        history = conn.execute("SELECT count(*) AS n FROM stage_history").fetchone()["n"]
    with autocommit(seg) as conn:  # the summaries its triggers wrote (migration 0012)
        conn.execute("VACUUM ANALYZE funnel_subjects")
        conn.execute("VACUUM ANALYZE funnel_stays")
    setup_s = time.perf_counter() - t0

    tenants = load_tenants(DEMO_TENANTS_PATH)
    pool = create_pool(dsn, name="bench-funnel", schema="outreach", max_size=4)
    with pool.connection() as conn:
        seed_tenants(conn, tenants)
        bloom = create_token(conn, tenant_id="bloom", role="viewer", name="bench")[1]
    tenants_file = tmp / "tenants.yaml"
    tenants_file.write_text(DEMO_TENANTS_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    settings = Settings.from_env({"SIYU_DATABASE_URL": dsn, "SIYU_TENANTS": str(tenants_file)})
    app = create_api_app("siyu.api_bench", pool=pool, blueprints=blueprints(), settings=settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {bloom}"}

    def get(path: str, **query):
        def call():
            response = client.get(f"/api/v1{path}", headers=headers, query_string=query)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return response.get_json()

        return call

    default = get("/reports/funnel", to="2026-11-30")
    window = get("/reports/funnel", **{"from": "2026-06-01", "to": "2026-06-30"})
    all_time = get("/reports/funnel", **{"from": "2025-12-31", "to": "2026-11-30"})
    # The cut by first source channel (docs/domain.md "Channel codes"): 2/9 of the contacts.
    by_channel = get("/reports/funnel", to="2026-11-30", source_channel="expo")
    one_contact = get("/contacts", limit=1)
    body = default()  # warm-up, and a check that the tenant is the one generated
    assert body["total"] == CONTACTS, body["total"]
    assert body["period"]["from"] == "2026-09-02", body["period"]
    window()
    all_time()
    assert by_channel()["total"] == sum(1 for i in range(1, CONTACTS + 1) if i % 9 in (3, 8))
    one_contact()

    def floor():
        with seg.connection() as conn:
            conn.execute(
                "SELECT stage, count(*) FROM contacts WHERE tenant_id = 'bloom' GROUP BY stage"
            ).fetchall()

    floor()
    rss_before = _rss_mb()
    floor_ms = _timed(floor, REQUESTS)
    default_ms = _timed(default, REQUESTS)
    window_ms = _timed(window, REQUESTS)
    all_ms = _timed(all_time, REQUESTS)
    channel_ms = _timed(by_channel, REQUESTS)
    rss_growth = _rss_mb() - rss_before
    funnel_peak = _traced_peak_mb(default)
    window_peak = _traced_peak_mb(window)
    all_peak = _traced_peak_mb(all_time)
    channel_peak = _traced_peak_mb(by_channel)
    contact_peak = _traced_peak_mb(one_contact)
    seg.close()
    pool.close()

    p95_default, p95_window, p95_floor = _p95(default_ms), _p95(window_ms), _p95(floor_ms)
    p95_all = _p95(all_ms)
    scale = f"{CONTACTS / 1e6:g}M contacts"
    report.add("funnel", f"Funnel p95, {scale}", "GET /reports/funnel (90 days)", p95_default,
               "GROUP BY stage of the contacts", p95_floor, "ms")  # fmt: skip
    report.add("funnel", f"Funnel memory, {scale}", "GET /reports/funnel", funnel_peak,
               "GET /contacts?limit=1", contact_peak, "MB")  # fmt: skip
    ok_time = p95_default < 500 and p95_window < 500 and _p95(channel_ms) < 500
    ok_memory = max(funnel_peak, window_peak, all_peak, channel_peak, rss_growth) < 50
    print(f"## Funnel report ({os.cpu_count()} cores, {CONTACTS:,} contacts, {history:,} "
          f"stage_history rows; setup {setup_s:.1f} s; {REQUESTS} requests each)\n")  # fmt: skip
    print("| request | p50 ms | p95 ms | max ms | Python peak MB (tracemalloc) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| GROUP BY stage of the same contacts, bare SQL (floor) | "
        f"{statistics.median(floor_ms):,.0f} | {p95_floor:,.0f} | {max(floor_ms):,.0f} | - |"
    )
    for label, ms, peak in (
        ("GET /reports/funnel (default: 90 days to 2026-11-30)", default_ms, funnel_peak),
        ("GET /reports/funnel (30-day window)", window_ms, window_peak),
        ("GET /reports/funnel (all time, explicit from/to)", all_ms, all_peak),
        ("GET /reports/funnel?source_channel=expo (90 days)", channel_ms, channel_peak),
    ):
        print(
            f"| {label} | {statistics.median(ms):,.0f} | {_p95(ms):,.0f} | {max(ms):,.0f} | "
            f"{peak:.2f} |"
        )
    print(f"| GET /contacts?limit=1 (memory floor) | - | - | - | {contact_peak:.2f} |")
    print(
        f"\nfunnel p95 {p95_default:,.0f} ms for 90 days ({p95_default / p95_floor:.1f}x the "
        f"bare GROUP BY), {p95_window:,.0f} ms for 30 days ({p95_window / p95_floor:.1f}x); "
        f"target < 500 ms ({'met' if ok_time else 'NOT met'}); all time {p95_all:,.0f} ms "
        f"({p95_all / p95_floor:.1f}x)"
    )
    print(f"process peak RSS grew {rss_growth:.1f} MB over the {5 * REQUESTS} requests; "
          f"target < 50 MB extra ({'met' if ok_memory else 'NOT met'})\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
