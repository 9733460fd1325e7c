"""Segment consumer and recompute, each beside a floor measured in the same run.

Consumer: the segment consumer resolves identities, stores each event once, derives role, score,
stage, behaviour and segments, and queues profiles and stage changes (published after commit).
Its floor consumes the same touchpoints from the same broker with kafka-python, decodes them and
stores each event once in PostgreSQL with the same writes' shape: one INSERT of the batch's
events into a table like ``segment.events`` (ON CONFLICT DO NOTHING) and one upsert of the
batch's contacts into a table like ``segment.contacts``, one transaction per batch, offsets
committed after it. The raw poll rate (no decoding, no storing) is shown beside them.
Target: the consumer >= 25% of its floor.

Recompute: `siyu segment recompute`'s walk on every core (services/segment/recompute.py, one
process per partition) against its floor: the same processes reading the same rows and events
batch by batch, deriving and writing nothing. Median of ``BENCH_RECOMPUTE_RUNS`` runs each;
process start-up is shown apart (a constant per run, not per contact). Targets: <= 1.5x the
floor; 1M contacts < 60 s (extrapolated from this run's contacts). Memory flat over the run.

`python -m bench.segment` runs this part alone (prints its section; bench/REPORT.md is written by
`make bench`).
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from kafka import KafkaConsumer
from psycopg import sql
from psycopg.types.json import Jsonb

from bench import report
from services.segment.consumer import build_runner
from services.segment.derive import load_history
from services.segment.recompute import Recomputed, Walk
from services.segment.recompute import run as recompute
from services.segment.segments import save_segment
from shared.config import Settings
from shared.db import columns, create_pool
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.envelope import Identity, Touchpoint, decode_touchpoint, make_event_id
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOUCHPOINTS, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

EVENTS = int(os.environ.get("BENCH_SEGMENT_EVENTS", "20000"))
CONTACTS = int(os.environ.get("BENCH_SEGMENT_CONTACTS", "4000"))
RECOMPUTE_RUNS = int(os.environ.get("BENCH_RECOMPUTE_RUNS", "3"))
WORKERS = os.cpu_count() or 1
FLOOR_SCHEMA = "bench_floor"
FAST = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 60000}
TYPES = (
    ["oa.click"] * 6 + ["link.clicked"] * 4 + ["oa.message"] * 2
    + ["biz.content.downloaded"] * 2 + ["biz.webinar.attended", "biz.order.paid", "oa.subscribe"]
)  # fmt: skip
COMPANIES = [f"基准测试{i:03d}制造有限公司" for i in range(200)]
TITLES = ["IT经理", "采购经理", "总经理", "财务总监", "生产经理", "法务经理", "Engineer", "CTO"]


def touchpoints(n: int, contacts: int, seed: int = 7) -> list[Touchpoint]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    start = datetime(2026, 9, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        c = rng.randrange(contacts)
        type_ = "biz.contact.updated" if i < contacts else rng.choice(TYPES)
        source = {"oa": "wechat_oa", "link": "link", "biz": "api"}[type_.split(".")[0]]
        attrs: dict = {}
        identity = Identity(openid=f"oBench{c:07d}", crm_id=f"C{c:07d}" if c % 3 == 0 else None)
        if type_ == "biz.contact.updated":
            company = COMPANIES[c % len(COMPANIES)]
            attrs = {"name": f"联系人{c}", "title": rng.choice(TITLES), "company": company}
            identity = Identity(openid=f"oBench{c:07d}", crm_id=f"C{c:07d}", account_key=company)
        elif type_ == "biz.order.paid":
            attrs = {"amount": float(rng.randrange(100, 100000)), "currency": "CNY"}
        elif type_ == "oa.message":
            attrs = {"msg_type": "text", "content": "请问有案例吗"}
        at = start + timedelta(minutes=i)
        out.append(
            Touchpoint(
                event_id=make_event_id("acme", source, f"bench-{i}"),
                tenant_id="acme",
                source=source,
                type=type_,
                occurred_at=at,
                received_at=at,
                identity=identity,
                attributes=attrs,
            )
        )
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_rate(kafka: KafkaSettings, n: int) -> float:
    consumer = KafkaConsumer(
        kafka.topic(TOUCHPOINTS), bootstrap_servers=kafka.bootstrap, group_id="bench-raw",
        auto_offset_reset="earliest", enable_auto_commit=False, **FAST,
    )  # fmt: skip
    got, started = 0, None
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=kafka.max_batch)
        if batch and started is None:
            started = time.perf_counter()  # group join excluded, as for the segment consumer
        got += sum(len(v) for v in batch.values())
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return got / elapsed if elapsed else 0.0


def floor_rate(kafka: KafkaSettings, dsn: str, n: int) -> float:
    """Poll + decode + store each event once, the consumer's writes' shape, one transaction per
    batch (see the module's docstring)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        floor = sql.Identifier(FLOOR_SCHEMA)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(floor))
        for table in ("events", "contacts"):
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                    floor, sql.Identifier(table), sql.Identifier("segment"), sql.Identifier(table)
                )
            )
    consumer = KafkaConsumer(
        kafka.topic(TOUCHPOINTS), bootstrap_servers=kafka.bootstrap, group_id="bench-floor",
        auto_offset_reset="earliest", enable_auto_commit=False, **FAST,
    )  # fmt: skip
    got, started = 0, None
    deadline = time.monotonic() + 300
    with psycopg.connect(dsn, options=f"-c search_path={FLOOR_SCHEMA}") as conn:
        while got < n and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=kafka.max_batch)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()  # group join excluded, as for the segment consumer
            touchpoints = [decode_touchpoint(m.value) for ms in batch.values() for m in ms]
            with conn.transaction():
                store_floor(conn, touchpoints)
            consumer.commit()
            got += len(touchpoints)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return got / elapsed if elapsed else 0.0


def store_floor(conn: psycopg.Connection, touchpoints: list[Touchpoint]) -> None:
    events = [(t.tenant_id, t.event_id, t.key, t.type, t.occurred_at, Jsonb(t.attributes))
              for t in touchpoints]  # fmt: skip
    conn.execute(
        "INSERT INTO events (tenant_id, event_id, contact_id, type, occurred_at, attributes) "
        "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::timestamptz[], %b::jsonb[]) ON CONFLICT DO NOTHING",
        columns(events),
    )
    seen: dict[tuple[str, str], list] = defaultdict(lambda: [0, None, None])
    for t in touchpoints:
        c = seen[(t.tenant_id, t.key)]
        c[0] += 1
        c[1] = min(c[1] or t.occurred_at, t.occurred_at)
        c[2] = max(c[2] or t.occurred_at, t.occurred_at)
    conn.execute(
        "INSERT INTO contacts (tenant_id, contact_id, events_count, created_at, last_event_at) "
        "SELECT * FROM unnest(%b::text[], %b::text[], %b::int[], %b::timestamptz[], "
        "%b::timestamptz[]) ON CONFLICT (tenant_id, contact_id) DO UPDATE SET "
        "events_count = contacts.events_count + EXCLUDED.events_count, "
        "created_at = LEAST(contacts.created_at, EXCLUDED.created_at), "
        "last_event_at = GREATEST(contacts.last_event_at, EXCLUDED.last_event_at)",
        columns([(*key, *c) for key, c in seen.items()]),
    )


def read_batch(conn, tenant, rows, now, topics) -> int:
    """The recompute floor's batch: read the rows' events as deriving does; derive nothing."""
    load_history(conn, tenant.id, rows, now)
    return len(rows)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-seg-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port()).start()
        try:
            return run(postgres.dsn, broker.bootstrap)
        finally:
            broker.stop()
            postgres.stop()


def run(dsn: str, bootstrap: str) -> int:
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=6, **FAST)
    migrate_service(dsn, "segment")
    ensure_topics(kafka)
    tenants = load_tenants(DEMO_TENANTS_PATH)
    acme = tenants.get("acme")
    pool = create_pool(dsn, name="bench-segment", schema="segment", max_size=4)
    with pool.connection() as conn:
        save_segment(conn, "acme", "tech-examining", "tech", {
            "all": [{"attribute": "role", "equals": "technical"}, {"stage_at_least": "examination"}]
        })  # fmt: skip
        save_segment(conn, "acme", "engaged", "engaged", {"score": {"gte": 20}})

    producer = create_producer(kafka, client_id="bench")
    records = [
        Record(kafka.topic(TOUCHPOINTS), t.key, t.to_json()) for t in touchpoints(EVENTS, CONTACTS)
    ]
    for i in range(0, len(records), 2000):
        publish(producer, records[i : i + 2000], timeout=60)
    producer.close()

    raw = raw_rate(kafka, EVENTS)
    floor = floor_rate(kafka, dsn, EVENTS)

    settings = Settings(database_url=dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH)
    runner = build_runner(settings, pool, tenants, group="bench-segment")
    thread = threading.Thread(target=runner.run, daemon=True)
    memory = [rss_mb()]
    thread.start()
    started = None
    with psycopg.connect(dsn) as conn:
        while True:
            n = conn.execute("SELECT count(*) FROM segment.events").fetchone()[0]
            if n and started is None:
                started = time.perf_counter()
            if n >= EVENTS:
                break
            time.sleep(0.25)
            memory.append(rss_mb())
    elapsed = time.perf_counter() - started
    runner.stop()
    thread.join(30)
    pool.close()
    seg_rate = EVENTS / elapsed

    # Recompute and its floor, alternated, each on every core; one worker once, for the speed-up.
    now = datetime.now(UTC)
    walk = Walk(settings, acme.id, workers=WORKERS, now=now)
    derived: list[Recomputed] = []
    read: list[Recomputed] = []
    for _ in range(RECOMPUTE_RUNS):
        derived.append(recompute(walk))
        read.append(recompute(Walk(settings, acme.id, workers=WORKERS, now=now,
                                   evaluate=read_batch)))  # fmt: skip
    single = recompute(Walk(settings, acme.id, workers=1, now=now))
    contacts = derived[0].contacts
    recompute_s = statistics.median(r.walk_s for r in derived)
    read_s = statistics.median(r.walk_s for r in read)
    startup_s = statistics.median(r.startup_s for r in derived)

    def per_million(seconds: float) -> float:
        return seconds / contacts * 1_000_000 if contacts else float("nan")

    setup = f"{os.cpu_count()} cores, {EVENTS:,} touchpoints, {CONTACTS:,} contacts"
    print(f"## Segment consumer ({setup})\n")
    print("| consumer | events/s |")
    print("|---|---:|")
    print(f"| raw kafka-python poll | {raw:,.0f} |")
    print(f"| poll + decode + store each event once, same writes' shape (floor) | {floor:,.0f} |")
    print(f"| siyu segment (resolve, store once, derive, segments, outbox) | {seg_rate:,.0f} |")
    report.add("segment", "Segment consume (target >= 25% of the floor)", "siyu segment",
               seg_rate, "poll + store each event once", floor, "events/s")  # fmt: skip
    report.add("segment", "Recompute 1M contacts, extrapolated (target <= 150% of the floor)",
               f"siyu recompute, {WORKERS} workers", per_million(recompute_s),
               f"reading the same rows and events, {WORKERS} workers", per_million(read_s),
               "s")  # fmt: skip
    print(f"\nratio segment/floor: {seg_rate / floor:.1%} (target >= 25%); "
          f"segment/raw poll: {seg_rate / raw:.1%}")  # fmt: skip
    print(f"\n| recompute, {contacts:,} contacts (median of {RECOMPUTE_RUNS}) | walk s | "
          "per 1M contacts, extrapolated |")  # fmt: skip
    print("|---|---:|---:|")
    print(f"| floor: read the same rows and events, {WORKERS} workers | {read_s:.2f} | "
          f"{per_million(read_s):,.0f} s |")  # fmt: skip
    print(f"| siyu recompute, {WORKERS} workers | {recompute_s:.2f} | "
          f"{per_million(recompute_s):,.0f} s |")  # fmt: skip
    print(f"| siyu recompute, 1 worker (in process) | {single.walk_s:.2f} | "
          f"{per_million(single.walk_s):,.0f} s |")  # fmt: skip
    print(f"\nratio recompute/floor: {recompute_s / read_s:.2f}x (target <= 1.5x); 1M contacts: "
          f"{per_million(recompute_s):,.0f} s (target < 60 s); {WORKERS} workers vs 1: "
          f"{single.walk_s / recompute_s:.2f}x faster; starting the workers: {startup_s:.1f} s "
          "per run (not in the walk times)")  # fmt: skip
    print(f"consumer process RSS: start {memory[0]:.0f} MB, max {max(memory):.0f} MB, "
          f"end {memory[-1]:.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
