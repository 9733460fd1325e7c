"""What the funnel summaries' triggers (segment migration 0012) add to writing stage_history.

10,000 rows inserted with the triggers and without (``ALTER TABLE ... DISABLE TRIGGER USER``),
twice each, alternating, into a history of 100,000 subjects: one row per statement and
transaction (the worst case: a subject's next transition), then 100 rows per statement (the
consumer writes a flush's transitions in one statement). Prints microseconds per row.

    python -m bench.funnel_trigger
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg

from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.migrations import migrate_service

ROWS = 10_000
SUBJECTS = 100_000
BATCH = 100
STAGES = ["acquisition", "activation", "retention", "revenue"]
INSERT = """INSERT INTO stage_history (tenant_id, subject_kind, subject_id, model, from_stage,
    to_stage, cause, changed_at) VALUES ('bloom', 'contact', %s, 'aarrr', %s, %s, %s, now())"""
INSERT_MANY = """INSERT INTO stage_history (tenant_id, subject_kind, subject_id, model,
    from_stage, to_stage, cause, changed_at)
SELECT 'bloom', 'contact', 'c' || (%(first)s + i), 'aarrr', 'acquisition', 'activation',
       %(cause)s, now()
  FROM generate_series(1, %(n)s) AS i"""


def _single(conn: psycopg.Connection, cause: str) -> float:
    t0 = time.perf_counter()
    for i in range(ROWS):
        j, k = i % 5000, i // 5000 + 1  # 5,000 subjects, two transitions each
        with conn.transaction():
            conn.execute(INSERT, (f"c{j}", STAGES[k - 1], STAGES[k], cause))
    return (time.perf_counter() - t0) / ROWS * 1e6


def _batched(conn: psycopg.Connection, cause: str, first: int) -> float:
    t0 = time.perf_counter()
    for b in range(ROWS // BATCH):
        with conn.transaction():
            conn.execute(INSERT_MANY, {"first": first + b * BATCH, "cause": cause, "n": BATCH})
    return (time.perf_counter() - t0) / ROWS * 1e6


def run(dsn: str) -> None:
    migrate_service(dsn, "segment")
    with psycopg.connect(dsn, options="-c search_path=segment", autocommit=True) as conn:
        conn.execute(
            INSERT_MANY.replace("'acquisition', 'activation'", "NULL, 'acquisition'"),
            {"first": 0, "cause": "setup", "n": SUBJECTS},
        )
        conn.execute("ANALYZE")
        results: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for n, state in enumerate(("with", "without", "with", "without")):
            switch = "ENABLE" if state == "with" else "DISABLE"
            conn.execute(f"ALTER TABLE stage_history {switch} TRIGGER USER")
            first = SUBJECTS + 10 * n * ROWS  # new subjects for the batches
            results[state].append((_single(conn, state), _batched(conn, state, first)))
    print("| triggers | 1 row per statement, us/row | 100 rows per statement, us/row |")
    print("|---|---:|---:|")
    for state, runs in results.items():
        single = ", ".join(f"{s:,.0f}" for s, _ in runs)
        batched = ", ".join(f"{b:,.0f}" for _, b in runs)
        print(f"| {state} | {single} | {batched} |")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-trigger-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        try:
            run(postgres.dsn)
        finally:
            postgres.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
