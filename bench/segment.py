"""Segment consumer throughput vs the raw kafka-python consume rate of the same topic; recompute.

Both read the same touchpoints from the same broker in the same run: the raw consumer only
polls; the segment consumer resolves identities, stores each event once, derives role, score,
stage, behaviour and segments, and queues profiles and stage changes (published after commit).
Targets: >= 50% of the raw rate; recompute of 1M contacts < 60 s (extrapolated from this run's
contacts); memory flat over the run.
"""

from __future__ import annotations

import os
import random
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from kafka import KafkaConsumer

from bench import report
from services.segment.consumer import build_runner
from services.segment.derive import load_history, refresh_contacts
from services.segment.segments import recompute, save_segment
from services.segment.topics import Topics
from shared.config import Settings
from shared.db import create_pool
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOUCHPOINTS, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

EVENTS = int(os.environ.get("BENCH_SEGMENT_EVENTS", "20000"))
CONTACTS = int(os.environ.get("BENCH_SEGMENT_CONTACTS", "4000"))
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
    seg_rate = EVENTS / elapsed

    topics = Topics.with_prefix("")
    now = datetime.now(UTC)
    t0 = time.perf_counter()

    def evaluate(conn, tenant, rows) -> int:
        refresh_contacts(conn, tenant, rows, topics=topics, now=now)
        return len(rows)

    contacts = recompute(pool.connection, acme, evaluate=evaluate)
    recompute_s = time.perf_counter() - t0

    # Baseline: the same walk reading each batch's rows and events, deriving nothing.
    t0 = time.perf_counter()

    def read_only(conn, tenant, rows) -> int:
        load_history(conn, tenant.id, rows, now)
        return len(rows)

    recompute(pool.connection, acme, evaluate=read_only)
    read_s = time.perf_counter() - t0
    pool.close()

    per_million = recompute_s / contacts * 1_000_000 if contacts else float("nan")
    read_per_million = read_s / contacts * 1_000_000 if contacts else float("nan")
    setup = f"{os.cpu_count()} cores, {EVENTS:,} touchpoints, {CONTACTS:,} contacts"
    print(f"## Segment consumer ({setup})\n")
    print("| consumer | events/s |")
    print("|---|---:|")
    print(f"| raw kafka-python poll (baseline) | {raw:,.0f} |")
    print(f"| siyu segment (resolve, store once, derive, segments, outbox) | {seg_rate:,.0f} |")
    report.add("segment", "Segment consume", "siyu segment", seg_rate, "raw kafka-python poll",
               raw, "events/s")  # fmt: skip
    report.add("segment", "Recompute 1M contacts (extrapolated)", "siyu recompute", per_million,
               "reading the same rows and events", read_per_million, "s")  # fmt: skip
    print(f"\nratio segment/raw: {seg_rate / raw:.1%} (target >= 50%)")
    print(f"recompute: {contacts:,} contacts in {recompute_s:.1f} s -> {per_million:,.0f} s per 1M "
          f"contacts, extrapolated (target < 60 s); reading the same rows and events without "
          f"deriving: {read_per_million:,.0f} s per 1M")  # fmt: skip
    print(f"consumer process RSS: start {memory[0]:.0f} MB, max {max(memory):.0f} MB, "
          f"end {memory[-1]:.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
