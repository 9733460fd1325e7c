"""The funnel in SQL against the pure function (the oracle) on generated histories.

Histories are random but shaped like real ones: mostly chains, with what merges leave behind
(duplicate "first" transitions, rows that do not continue the chain, equal timestamps), subjects
without history, unknown and missing stages, history of subjects out of scope. Every generated
table is reported by the SQL exactly as ``funnel_report`` reports it, with and without a window,
for the model in use and for another one, with weekly buckets in zones east and west of UTC
(New York's clocks change on 2026-03-08, inside the generated month).
"""

from __future__ import annotations

import dataclasses
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from services.segment.funnel import Current, FunnelSpec, Move, assemble, funnel_report
from services.segment.funnel_query import funnel_tallies
from shared.migrations import apply, discover, migrate_service, migrations_dir
from tests.kafka_helpers import wait_until

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SPEC = FunnelSpec(
    name="mini",
    title="Mini",
    stages=(("attention", "Attention"), ("interest", "Interest"), ("action", "Action")),
    side_stages=(("lapsed", "Lapsed"),),
)
STAGES = ["attention", "interest", "action", "lapsed"]
SCOPE = (
    "SELECT contact_id AS subject_id, stage, stage_since FROM contacts WHERE tenant_id = %(tenant)s"
)


def generate(rng: random.Random, subjects: int) -> tuple[list[Current], list[Move]]:
    current, moves = [], []
    seq = 0
    for i in range(subjects):
        sid = f"s{i:03d}"
        at = T0 + timedelta(hours=rng.randrange(0, 24 * 30))
        stage = None
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 6])):
            roll = rng.random()
            if roll < 0.7:  # the chain goes on
                to = rng.choice([s for s in STAGES if s != stage])
                frm = stage
            elif roll < 0.8:  # a merged history's own "first" transition
                to, frm = rng.choice(STAGES), None
            elif roll < 0.9:  # a row that does not continue the chain
                to, frm = rng.choice([*STAGES, "legacy_stage"]), rng.choice(STAGES)
            else:  # the same stage again
                to, frm = stage or "attention", stage
            if rng.random() > 0.15:  # else: same time as the previous row, id breaks the tie
                at += timedelta(hours=rng.randrange(1, 24 * 10), seconds=rng.randrange(60))
            seq += 1
            moves.append(Move(sid, frm, to, at, seq))
            if frm == stage or stage is None:
                stage = to
        kind = rng.random()
        if kind < 0.1:
            current.append(Current(sid, None))
        elif kind < 0.15:
            current.append(Current(sid, "legacy_stage", at))
        elif kind < 0.2:
            continue  # history of a subject out of scope
        else:
            since = None if rng.random() < 0.05 else at
            current.append(Current(sid, stage or rng.choice(STAGES), since))
    return current, moves


@pytest.fixture
def conn(stack, schema):
    migrate_service(stack.dsn, "segment", schema=schema)
    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}") as conn:
        conn.row_factory = psycopg.rows.dict_row
        yield conn


def load(conn, current: list[Current], moves: list[Move]) -> None:
    conn.execute("DELETE FROM contacts")
    conn.execute("DELETE FROM stage_history")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, stage, "
            "stage_since) VALUES ('acme', %s, %s, %s, %s, %s)",
            [(c.subject_id, T0, T0, c.stage, c.since) for c in current],
        )
        cur.executemany(
            "INSERT INTO stage_history (id, tenant_id, subject_kind, subject_id, model, "
            "from_stage, to_stage, cause, changed_at) "
            "VALUES (%s, 'acme', 'contact', %s, 'mini', %s, %s, 'test', %s)",
            [(m.seq, m.subject_id, m.from_stage, m.to_stage, m.changed_at) for m in moves],
        )
        # Another tenant's and another model's rows are never counted.
        cur.execute(
            "INSERT INTO stage_history (id, tenant_id, subject_kind, subject_id, model, to_stage, "
            "cause, changed_at) VALUES (-1, 'other', 'contact', 's000', 'mini', 'action', 't', %s), "
            "(-2, 'acme', 'contact', 's000', 'other', 'action', 't', %s)",
            (T0, T0),
        )


WINDOWS = [
    {},
    {"since": T0 + timedelta(days=10), "until": T0 + timedelta(days=40)},
    {"since": T0 + timedelta(days=20)},
    {"until": T0 + timedelta(days=15)},
]


ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"), UTC]


@pytest.mark.parametrize("seed", range(6))
def test_sql_funnel_equals_the_pure_function(conn, seed):
    rng = random.Random(seed)
    current, moves = generate(rng, subjects=60)
    load(conn, current, moves)
    check(conn, current, moves)


def test_sql_funnel_of_an_empty_tenant(conn):
    load(conn, [], [])
    tallies = funnel_tallies(
        conn, SPEC, SCOPE, {"tenant": "acme"}, kind="contact", active=True, tz=UTC
    )
    assert assemble(SPEC, tallies) == funnel_report(SPEC, [], [])


def check(conn, current: list[Current], moves: list[Move]) -> None:
    in_scope = {c.subject_id for c in current}
    scoped_moves = [m for m in moves if m.subject_id in in_scope]
    for w, window in enumerate(WINDOWS):
        for active in (True, False):
            tz = ZONES[(w + active) % len(ZONES)]
            expected = funnel_report(
                SPEC, current if active else None, scoped_moves, tz=tz, **window
            )
            tallies = funnel_tallies(
                conn, SPEC, SCOPE, {"tenant": "acme"}, kind="contact", active=active, tz=tz,
                **window,
            )  # fmt: skip
            assert assemble(SPEC, tallies, tz=tz, **window) == expected, (window, active, tz)


@pytest.mark.parametrize("seed", range(3))
def test_summaries_follow_merges_erasure_and_rewrites(conn, seed):
    """The summaries are kept by triggers on stage_history: whatever writes it, merges (a
    history re-keyed onto the survivor), erasure (deleted), rows rewritten, one statement
    touching many subjects, the report stays the oracle's."""
    rng = random.Random(100 + seed)
    current, moves = generate(rng, subjects=60)
    load(conn, current, moves)
    check(conn, current, moves)
    subjects = sorted({m.subject_id for m in moves})
    # Merges: each source's history onto its survivor, the source contact deleted.
    for source, target in zip(subjects[0:10], subjects[10:20], strict=True):
        conn.execute(
            "UPDATE stage_history SET subject_id = %s WHERE tenant_id = 'acme' "
            "AND subject_kind = 'contact' AND subject_id = %s",
            (target, source),
        )
        conn.execute("DELETE FROM contacts WHERE contact_id = %s", (source,))
        moves = [
            dataclasses.replace(m, subject_id=target) if m.subject_id == source else m
            for m in moves
        ]
        current = [c for c in current if c.subject_id != source]
    # Erasure: one statement deletes several subjects' histories.
    erased = subjects[20:26]
    conn.execute(
        "DELETE FROM stage_history WHERE tenant_id = 'acme' AND subject_id = ANY(%s)", (erased,)
    )
    moves = [m for m in moves if m.subject_id not in erased]
    # A row rewritten in place (its stage and time), and a new transition.
    victim = next(m for m in moves if m.subject_id in subjects[26:])
    later = victim.changed_at + timedelta(days=3)
    conn.execute(
        "UPDATE stage_history SET to_stage = 'action', changed_at = %s WHERE id = %s",
        (later, victim.seq),
    )
    moves = [
        Move(m.subject_id, m.from_stage, "action", later, m.seq) if m.seq == victim.seq else m
        for m in moves
    ]
    conn.execute(
        "INSERT INTO stage_history (id, tenant_id, subject_kind, subject_id, model, from_stage, "
        "to_stage, cause, changed_at) VALUES (10000, 'acme', 'contact', %s, 'mini', NULL, "
        "'interest', 'test', %s)",
        (subjects[-1], T0 + timedelta(days=12)),
    )
    moves.append(Move(subjects[-1], None, "interest", T0 + timedelta(days=12), 10000))
    check(conn, current, moves)
    # Every subject erased: nothing left behind.
    conn.execute("DELETE FROM stage_history")
    assert conn.execute("SELECT count(*) AS n FROM funnel_subjects").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM funnel_stays").fetchone()["n"] == 0


def test_migration_backfills_the_summaries(stack, schema):
    """Migration 0012 summarises the history written before it."""
    migrations = discover(migrations_dir("segment"))
    apply(stack.dsn, schema, [m for m in migrations if m.version < 12])
    rng = random.Random(7)
    current, moves = generate(rng, subjects=60)
    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}") as conn:
        conn.row_factory = psycopg.rows.dict_row
        load(conn, current, moves)
        conn.commit()
        apply(stack.dsn, schema, migrations)
        check(conn, current, moves)


def test_concurrent_writers_of_one_subject_leave_its_whole_history(stack, schema, conn):
    """Two transactions writing the same subject's history at once: the second one's trigger
    waits for the first (the summary row is the subject's lock), then sees both rows."""
    load(conn, [Current("s1", "interest", T0 + timedelta(days=2))], [])
    conn.commit()
    first = Move("s1", None, "attention", T0 + timedelta(days=1), 1)
    second = Move("s1", "attention", "interest", T0 + timedelta(days=2), 2)
    insert = (
        "INSERT INTO stage_history (id, tenant_id, subject_kind, subject_id, model, from_stage, "
        "to_stage, cause, changed_at) VALUES (%s, 'acme', 'contact', %s, 'mini', %s, %s, 't', %s)"
    )
    options = f"-c search_path={schema}"
    with psycopg.connect(stack.dsn, options=options) as one:
        one.execute(insert, (first.seq, "s1", first.from_stage, first.to_stage, first.changed_at))

        def other():
            with psycopg.connect(stack.dsn, options=options) as two:
                two.execute(
                    insert,
                    (second.seq, "s1", second.from_stage, second.to_stage, second.changed_at),
                )

        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(other)

            def other_waits_for_the_lock():
                waiting = conn.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO stage_history%%'"
                ).fetchone()["n"]
                conn.commit()
                return waiting

            wait_until(other_waits_for_the_lock, timeout=10, interval=0.05,
                       message="the other writer to wait for this one's lock")  # fmt: skip
            one.commit()
            done.result(timeout=30)
    check(conn, [Current("s1", "interest", T0 + timedelta(days=2))], [first, second])
    stays = conn.execute("SELECT stage, duration FROM funnel_stays").fetchall()
    assert stays == [{"stage": "attention", "duration": timedelta(days=1)}]
