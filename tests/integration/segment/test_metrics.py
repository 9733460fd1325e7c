"""The stage-change counter (the dashboard's "stage changes per minute") moves with the
transitions the segment consumer writes, by tenant, model and stage entered."""

from __future__ import annotations

import psycopg
from prometheus_client import REGISTRY

from services.segment.consumer import apply_batch
from services.segment.topics import Topics
from shared.db import create_pool
from shared.migrations import migrate_service
from tests.integration.segment.test_consumer import JOURNEY, TENANTS


def counted() -> dict[tuple[str, str, str, str], float]:
    (family,) = [m for m in REGISTRY.collect() if m.name == "siyu_segment_stage_changes"]
    return {
        (s.labels["tenant"], s.labels["subject"], s.labels["model"], s.labels["to_stage"]): s.value
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_every_stored_transition_is_counted_once(stack, schema):
    migrate_service(stack.dsn, "segment", schema=schema)
    pool = create_pool(stack.dsn, name="segment-test", schema=schema, max_size=2)
    before = counted()
    try:
        with pool.connection() as conn, conn.transaction():
            apply_batch(conn, TENANTS, JOURNEY, Topics.with_prefix("t."))
    finally:
        pool.close()
    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}") as conn:
        stored = conn.execute(
            "SELECT tenant_id, subject_kind, model, to_stage, count(*) FROM stage_history "
            "GROUP BY 1, 2, 3, 4"
        ).fetchall()
    assert stored  # the journey moves its people and their account through stages
    moved = {k: v - before.get(k, 0.0) for k, v in counted().items()}
    assert {k: v for k, v in moved.items() if v} == {tuple(r[:4]): r[4] for r in stored}
