"""Chaos, bounded in time: real processes killed and servers restarted under traffic.

(a) the broker is killed and restarted while webhooks arrive; (b) a segment consumer is
SIGKILLed mid-batch and another takes over; (c) PostgreSQL restarts under the consumer;
(d) the outreach worker is SIGKILLed mid-run and another takes over. After recovery: every
accepted event is in Kafka exactly once, the segment state equals a clean replay, no delivery
went out twice, and nothing was dropped without an entry in the DLQ.

The dev broker keeps its data in memory (shared/kafka/tansu.py): a killed broker comes back empty. So (a)
checks what Siyu owns, ingest's durability: events accepted before the kill were read from the
old broker, events accepted during and after it reach the new one through the outbox, each once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bench.segment import touchpoints as realistic_touchpoints
from services.ingest.publisher import OutboxReplayer
from services.segment.consumer import build_runner as segment_runner
from shared.config import Settings
from shared.db import create_pool
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.kafka import tansu
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOUCHPOINTS, TOUCHPOINTS_DLQ, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from tests.fake_wecom import FakeWeCom
from tests.integration.ingest.conftest import build as build_ingest
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

pytestmark = [pytest.mark.timeout(240)]

TENANTS = load_tenants(DEMO_TENANTS_PATH)
SIYU = str(Path(sys.executable).with_name("siyu"))


@pytest.fixture
def database(own_database):
    return own_database


def env_for(dsn: str, kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    return {
        **os.environ, **DEMO_SECRETS,
        "SIYU_DATABASE_URL": dsn, "SIYU_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SIYU_TOPIC_PREFIX": kafka.topic_prefix, "SIYU_KAFKA_PARTITIONS": str(kafka.partitions),
        **tansu.DEV_TIMINGS_ENV, "SIYU_KAFKA_MAX_BATCH": "200",
        "SIYU_WECOM_ENRICH": "0", "SIYU_LOG_LEVEL": "WARNING",
        # The time tick stands still: a replay is compared with what the event log alone gives.
        "SIYU_SEGMENT_TICK_S": "86400",
        "SIYU_TENANTS": str(DEMO_TENANTS_PATH), **extra,
    }  # fmt: skip


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen([SIYU, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def count(dsn: str, query: str, *params) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def segment_state(dsn: str, schema: str = "segment") -> dict[str, list[tuple]]:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        return {
            "contacts": q("SELECT contact_id, created_at, last_event_at, name, title, account_id, "
                          "events_count, role, stage, round(score::numeric, 6) FROM contacts "
                          "ORDER BY 1"),
            "identities": q("SELECT kind, value, contact_id FROM identities ORDER BY 1, 2"),
            "events": q("SELECT event_id, contact_id, type FROM events ORDER BY 1, 2"),
            # Stages and their history are settled in event time, whatever the batching
            # (docs/domain.md "Event time and replay").
            "accounts": q("SELECT account_id, name, stage, stage_since, roles_engaged, members, "
                          "risk_flags::text FROM accounts ORDER BY 1"),
            "segments": q("SELECT segment_id, contact_id FROM segment_members ORDER BY 1, 2"),
            "stage_history": q("SELECT subject_kind, subject_id, model, from_stage, to_stage, "
                               "cause, event_id, changed_at, actor FROM stage_history "
                               "ORDER BY 1, 2, 8, 7, 5"),
        }  # fmt: skip


def replay_state(dsn: str, kafka: KafkaSettings, expected_events: int) -> dict:
    """The segment state a clean consumer builds from offset 0 into an empty schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS replay CASCADE")
    migrate_service(dsn, "segment", schema="replay")
    pool = create_pool(dsn, name="replay", schema="replay", max_size=2)
    settings = Settings(database_url=dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH)
    try:
        with RunnerThread(segment_runner(settings, pool, TENANTS, group=f"replay-{time.time()}")):
            # A batch's derived writes commit in the transaction of its events (segment
            # consumer.process), so the last event counted means its batch is whole.
            wait_until(lambda: count(dsn, "SELECT count(*) FROM replay.events") >= expected_events,
                       timeout=90, message="the replay to catch up")  # fmt: skip
    finally:
        pool.close()
    return segment_state(dsn, "replay")


def test_b_sigkill_a_segment_consumer_mid_batch(database, kafka, tmp_path):
    tps = realistic_touchpoints(3000, 400, seed=11)
    ensure_topics(kafka)
    producer = create_producer(kafka, client_id="chaos")
    publish(producer, [Record(kafka.topic(TOUCHPOINTS), t.key, t.to_json()) for t in tps])
    producer.close()
    env = env_for(database, kafka)
    first = spawn(["segment", "consume", "--metrics-port", str(free_port())], env,
                  tmp_path / "consumer-1.log")  # fmt: skip
    try:
        wait_until(lambda: count(database, "SELECT count(*) FROM segment.events") > 300,
                   timeout=60, message="the first consumer to be well into the topic")  # fmt: skip
        first.send_signal(signal.SIGKILL)  # mid-batch: its transaction dies, uncommitted
        first.wait(10)
        applied = count(database, "SELECT count(*) FROM segment.events")
        assert applied < len(tps), "the kill came too late to mean anything"
        second = spawn(["segment", "consume", "--metrics-port", str(free_port())], env,
                       tmp_path / "consumer-2.log")  # fmt: skip
        try:
            # Records a partition re-delivers precede its last record: all counted, none left.
            wait_until(lambda: count(database, "SELECT count(*) FROM segment.events") >= len(tps),
                       timeout=120, message="the second consumer to finish")  # fmt: skip
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    # Each event once, counts exact, nothing in the DLQ, and the state a clean replay builds.
    assert count(database, "SELECT count(DISTINCT event_id) FROM segment.events") == len(tps)
    assert count(database, "SELECT sum(events_count) FROM segment.contacts") == len(tps)
    assert read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 0, timeout=1) == []
    assert_same_state(segment_state(database), replay_state(database, kafka, len(tps)))


def assert_same_state(live: dict, replay: dict) -> None:
    for key in live:
        if live[key] != replay[key]:
            live_rows, replay_rows = set(map(repr, live[key])), set(map(repr, replay[key]))
            only_live = sorted(live_rows - replay_rows)[:5]
            only_replay = sorted(replay_rows - live_rows)[:5]
            raise AssertionError(f"{key} differ: live {only_live} replay {only_replay}")


def test_c_postgres_restarts_under_the_consumer(kafka, tmp_path):
    postgres = EmbeddedPostgres(tmp_path / "own-pg", port=free_port()).start()
    try:
        migrate_service(postgres.dsn, "segment")
        tps = realistic_touchpoints(2000, 300, seed=12)
        ensure_topics(kafka)
        producer = create_producer(kafka, client_id="chaos")
        publish(producer, [Record(kafka.topic(TOUCHPOINTS), t.key, t.to_json()) for t in tps])
        producer.close()
        pool = create_pool(postgres.dsn, name="chaos", schema="segment", max_size=2, timeout=3)
        settings = Settings(database_url=postgres.dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH)
        with RunnerThread(segment_runner(settings, pool, TENANTS, group="chaos-pg")):
            wait_until(lambda: count(postgres.dsn, "SELECT count(*) FROM segment.events") > 200,
                       timeout=60)  # fmt: skip
            postgres.stop()  # fast shutdown: open transactions are rolled back
            # Lets time pass (not a wait for a state): the consumer meets a dead database for
            # a while, and must wait, not skip.
            time.sleep(2.0)
            postgres.start()
            wait_until(lambda: _count_or_zero(postgres.dsn) >= len(tps), timeout=120,
                       message="the consumer to finish after the restart")  # fmt: skip
        pool.close()
        assert count(postgres.dsn, "SELECT count(DISTINCT event_id) FROM segment.events") == len(
            tps
        )
        assert count(postgres.dsn, "SELECT sum(events_count) FROM segment.contacts") == len(tps)
        assert read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 0, timeout=1) == []
        assert_same_state(segment_state(postgres.dsn), replay_state(postgres.dsn, kafka, len(tps)))
    finally:
        postgres.stop()


def _count_or_zero(dsn: str) -> int:
    try:
        return count(dsn, "SELECT count(*) FROM segment.events")
    except psycopg.OperationalError:
        return 0


def test_a_broker_killed_and_restarted_under_webhook_traffic(stack, schema, unique, tmp_path,
                                                            monkeypatch):  # fmt: skip
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    broker = EmbeddedBroker(tmp_path / "own-broker", port=free_port()).start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"c{unique}.", partitions=3,
                          **tansu.GROUP_TIMINGS)  # fmt: skip
    ingest = build_ingest(stack, kafka, schema)
    topic = kafka.topic(TOUCHPOINTS)
    accepted: list[str] = []
    publisher = ingest.deps.publisher
    real_publish = publisher.publish

    def recording(touchpoints):  # observe what ingest accepted (answered 200 for)
        stored = real_publish(touchpoints)
        accepted.extend(tp.event_id for tp in touchpoints)
        return stored

    publisher.publish = recording
    sent = {"n": 0}

    def traffic(n: int) -> list[int]:
        statuses = []
        for _ in range(n):
            i = sent["n"] = sent["n"] + 1
            body = {"events": [{"idempotency_key": f"chaos-{i}",
                                "type": "biz.lead.created" if i % 2 else "biz.order.paid",
                                "occurred_at": "2026-11-24T09:30:00+08:00",
                                "identity": {"crm_id": f"C-{i % 50}"},
                                "attributes": {} if i % 2 else {"amount": 10.0,
                                                                "currency": "CNY"}}]}  # fmt: skip
            response = ingest.client.post(
                "/api/v1/events", json=body, headers={"Authorization": f"Bearer {ingest.token}"}
            )
            statuses.append(response.status_code)
            assert response.status_code == 200, response.get_data(as_text=True)
        return statuses

    try:
        assert set(traffic(40)) == {200}
        before = [json.loads(r.value)["event_id"] for r in read_topic(kafka, topic, len(accepted))]
        assert sorted(before) == sorted(accepted)
        broker.kill()  # SIGKILL: no goodbye to the producer
        during = traffic(25)
        assert set(during) == {200}  # the outbox took them
        broker.start()  # empty, as after a loss of the in-memory data
        tansu.after_restart(kafka)
        after = traffic(25)
        assert set(after) == {200}
        replayer = OutboxReplayer(publisher)
        wait_until(lambda: replayer.replay_once() or replayer.depth() == 0, timeout=60)
        on_new = [json.loads(r.value)["event_id"]
                  for r in read_topic(kafka, topic, len(accepted) - len(before))]  # fmt: skip
        seen = Counter(before + on_new)
        assert set(seen) == set(accepted)
        assert len(set(accepted)) == 90
        assert max(seen.values()) == 1  # none twice: an outboxed event is not also produced
    finally:
        publisher.publish = real_publish
        publisher.close()
        publisher.pool.close()
        broker.stop()


def test_d_sigkill_the_outreach_worker_mid_run(database, kafka, tmp_path, monkeypatch):
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    ensure_topics(kafka)
    fake = FakeWeCom(TENANTS, DEMO_SECRETS, contacts=120).start()
    fake.delays["message/template/send"] = 0.15  # each send takes a while: the kill lands mid-run
    app_id = TENANTS.get("acme").wechat_oa[0].app_id
    openids = sorted(o for o in fake.state.followers[app_id])[:40]
    now = datetime.now(UTC)
    # Exactly one run in the test's lifetime: the missed slot of a minute ago, the next one an
    # hour away (an every-minute cron made a second run whenever a slow machine crossed a minute).
    hourly_slot_a_minute_ago = f"{(now - timedelta(minutes=1)).minute} * * * *"
    with psycopg.connect(database, options="-c search_path=outreach") as conn:
        conn.execute("INSERT INTO tenants (tenant_id, name, mode, lifecycle_model) VALUES "
                     "('acme', 'ACME', 'b2c', 'aarrr')")  # fmt: skip
        for i, openid in enumerate(openids):
            conn.execute(
                "INSERT INTO audience (tenant_id, contact_id, mode, segments, openids, "
                "oa_follower, updated_at) VALUES ('acme', %s, 'b2c', '{all}', %s, true, %s)",
                (f"c{i:03d}", [openid], now),
            )
        conn.execute(
            "INSERT INTO content (tenant_id, content_id, title, format, promotional, payloads) "
            "VALUES ('acme', 'cnt_1', '新品', 'service_notice', false, %s)",
            (Jsonb({"oa_template": {"template_id": "TPL", "data": {"first": {"value": "新品"}}}}),),
        )
        conn.execute(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, "
            "content, trigger, launched_at) VALUES ('acme', 'cmp_chaos', 'chaos', 'oa_template', "
            "'active', %s, %s, %s, %s)",
            (Jsonb({"segments": ["all"]}), Jsonb({"item": "cnt_1"}),
             Jsonb({"schedule": {"cron": hourly_slot_a_minute_ago}}), now - timedelta(minutes=2)),
        )  # fmt: skip
    env = env_for(database, kafka, SIYU_WECOM_API_BASE=fake.base_url,
                  SIYU_WECHAT_API_BASE=fake.oa_base_url, SIYU_OUTREACH_LEASE_S="3",
                  SIYU_WECOM_RATE="1000")  # fmt: skip

    def sent() -> int:
        with fake.state.lock:
            return sum(1 for m in fake.state.mailbox.sent if m.kind == "template")

    first = spawn(["outreach", "worker", "--metrics-port", str(free_port())], env,
                  tmp_path / "worker-1.log")  # fmt: skip
    try:
        wait_until(lambda: sent() >= 8, timeout=60, message="the first worker to be sending")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert sent() < len(openids), "the kill came too late to mean anything"
        second = spawn(["outreach", "worker", "--metrics-port", str(free_port())], env,
                       tmp_path / "worker-2.log")  # fmt: skip
        try:
            wait_until(lambda: count(database, "SELECT count(*) FROM outreach.campaign_runs "
                                     "WHERE status = 'done'") >= 1, timeout=120,
                       message="the second worker to finish the run")  # fmt: skip
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        fake.stop()
    with fake.state.lock:
        received = Counter(m.targets[0] for m in fake.state.mailbox.sent if m.kind == "template")
    assert set(received) == set(openids)
    assert max(received.values()) == 1  # the interrupted send was repeated under its dedupe key
    with psycopg.connect(database) as conn:
        statuses = Counter(r[0] for r in conn.execute(
            "SELECT status FROM outreach.deliveries WHERE campaign_id = 'cmp_chaos'"))  # fmt: skip
    assert statuses == {"sent": len(openids)}
