"""The segment consumer against the real broker and Postgres: identities, idempotency, replay."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import psycopg.rows

from services.segment.apply import apply_touchpoints
from services.segment.consumer import build_runner
from shared import messages
from shared.config import Settings
from shared.db import create_pool
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.topics import TOUCHPOINTS, TOUCHPOINTS_DLQ, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TENANTS = load_tenants(DEMO_TENANTS_PATH)


def tp(n: int, type_: str, *, minutes: int = 0, tenant: str = "acme", **ids) -> Touchpoint:
    attributes = ids.pop("attributes", {})
    source = {"oa": "wechat_oa", "wecom": "wecom", "biz": "api", "link": "link"}[
        type_.split(".")[0]
    ]
    return Touchpoint(
        event_id=make_event_id(tenant, source, f"e{n}"),
        tenant_id=tenant,
        source=source,
        type=type_,
        occurred_at=T0 + timedelta(minutes=minutes),
        received_at=T0 + timedelta(minutes=minutes),
        identity=Identity(**ids),
        attributes=attributes,
    )


# One B2B buyer seen three ways, joined by a unionid; one colleague; a group they both join.
JOURNEY = [
    tp(1, "oa.subscribe", openid="oLi"),
    tp(2, "wecom.contact.added", minutes=5, external_userid="wmLi", staff_userid="zhangwei"),
    tp(3, "biz.contact.updated", minutes=10, crm_id="C-7", unionid="uLi",
       account_key="苏州精工机械有限公司",
       attributes={"name": "李工", "title": "IT经理", "company": "苏州精工机械有限公司"}),
    tp(4, "oa.click", minutes=20, openid="oLi", unionid="uLi", attributes={"event_key": "WP"}),
    tp(5, "biz.trial.started", minutes=30, unionid="uLi", external_userid="wmLi",
       account_key="苏州精工机械 有限公司"),
    tp(6, "biz.contact.updated", minutes=40, crm_id="C-8", account_key="苏州精工机械有限公司",
       attributes={"name": "王总", "title": "总经理", "company": "苏州精工机械有限公司"}),
    tp(7, "wecom.chat.member_joined", minutes=50, chat_id="wrGroup", staff_userid="zhangwei",
       attributes={"members": ["wmLi", "wmNew"], "join_scene": 3}),
]  # fmt: skip


class Segment:
    def __init__(self, stack, kafka, schema):
        self.dsn = stack.dsn
        self.schema = schema
        self.kafka = kafka
        migrate_service(stack.dsn, "segment", schema=schema)
        ensure_topics(kafka)
        self.settings = Settings(
            database_url=stack.dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH
        )
        self.pool = create_pool(stack.dsn, name="segment-test", schema=schema, max_size=4)

    def runner(self, group: str):
        return build_runner(self.settings, self.pool, TENANTS, group=group)

    def rows(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.dsn, options=f"-c search_path={self.schema}") as conn:
            return conn.execute(query, params).fetchall()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT count(*) FROM {table}")[0][0]

    def state(self) -> dict[str, list[tuple]]:
        """Everything derived from the topic, in a stable order (no serial ids, no clocks)."""
        return {
            "contacts": self.rows(
                "SELECT contact_id, created_at, last_event_at, name, title, corp_name, account_id, "
                "events_count, tags, attributes::text, role, stage, round(score::numeric, 6) "
                "FROM contacts ORDER BY 1"
            ),
            "identities": self.rows("SELECT kind, value, contact_id FROM identities ORDER BY 1, 2"),
            "events": self.rows("SELECT event_id, contact_id, type FROM events ORDER BY 1, 2"),
            "accounts": self.rows(
                "SELECT account_id, name, created_at, stage, roles_engaged, members, "
                "risk_flags::text FROM accounts ORDER BY 1"
            ),
        }


def send(kafka, touchpoints) -> None:
    producer = create_producer(kafka, client_id="segment-test")
    try:
        publish(
            producer, [Record(kafka.topic(TOUCHPOINTS), t.key, t.to_json()) for t in touchpoints]
        )
    finally:
        producer.close()


def test_one_person_seen_through_many_ids_is_one_contact(segment, kafka):
    send(kafka, JOURNEY)
    with RunnerThread(segment.runner("g1")):
        wait_until(lambda: segment.count("events") == 8, message="8 contact-events applied")

    li = segment.rows("SELECT contact_id FROM identities WHERE value = 'uLi'")[0][0]
    kinds = segment.rows("SELECT kind, value FROM identities WHERE contact_id = %s ORDER BY 1", li)
    assert kinds == [
        ("crm_id", "C-7"),
        ("external_userid", "wmLi"),
        ("openid", "oLi"),
        ("unionid", "uLi"),
    ]
    (contact,) = segment.rows(
        "SELECT name, title, account_id, events_count FROM contacts WHERE contact_id = %s", li
    )
    assert contact == ("李工", "IT经理", segment.rows("SELECT account_id FROM accounts")[0][0], 6)
    # Both spellings of the company are one account, with both people attached.
    assert segment.count("accounts") == 1
    assert segment.rows("SELECT count(*) FROM contacts WHERE account_id IS NOT NULL")[0][0] == 2
    # Group members become contacts too (wmNew is a stranger so far).
    assert segment.count("contacts") == 3
    assert segment.count("contact_merges") >= 1

    # Derived: roles from titles, stages from evidence, the account's committee and flags.
    (li_derived,) = segment.rows(
        "SELECT role, stage, score FROM contacts WHERE contact_id = %s", li
    )
    assert li_derived[0] == "technical"
    assert li_derived[1] == "examination"
    assert li_derived[2] > 0
    boss = segment.rows("SELECT role FROM contacts WHERE name = '王总'")
    assert boss == [("decision_maker",)]
    (account,) = segment.rows("SELECT stage, roles_engaged, members, risk_flags FROM accounts")
    assert account[0] == "examination"
    # 王总 is only a CRM record: a staff edit is not his engagement (docs/domain.md "Activity").
    assert account[1] == ["technical"]
    assert account[2] == 2
    assert [f["flag"] for f in account[3]] == ["new"]
    moves = segment.rows(
        "SELECT to_stage, cause FROM stage_history WHERE subject_id = %s ORDER BY changed_at, id",
        li,
    )
    assert moves[-1][0] == "examination"
    assert "biz.trial.started" in moves[-1][1]
    # Stage changes and profiles went out through the outbox.
    assert segment.count("outbox") == 0
    # Read through the contracts' schemas: the consumer serialises without them (speed).
    changes = [
        messages.decode(messages.STAGE_CHANGE, r.value)
        for r in read_topic(kafka, kafka.topic("siyu.stage-changes.v1"), 3)
    ]
    assert {(c["subject"], c["to_stage"]) for c in changes} >= {
        ("contact", "examination"),
        ("account", "examination"),
    }
    profiles = {
        r.key.decode(): messages.decode(messages.PROFILE, r.value)
        for r in read_topic(kafka, kafka.topic("siyu.profiles.v1"), 5)
    }
    li_profile = profiles[f"acme:{li}"]
    assert li_profile["stage"] == "examination"
    assert li_profile["role"] == "technical"
    assert li_profile["identities"]["unionid"] == ["uLi"]
    tombstones = [p for p in profiles.values() if p.get("merged_into")]
    assert tombstones
    assert all(t["merged_into"] == li for t in tombstones)


def test_redelivery_and_duplicates_never_double_count(segment, kafka):
    send(kafka, JOURNEY + JOURNEY[:3])  # WeChat retries and our own replays
    with RunnerThread(segment.runner("g1")):
        wait_until(lambda: segment.count("events") == 8)
    before = segment.state()
    # A second consumer group reads everything again into the same schema: nothing changes.
    with RunnerThread(segment.runner("g2")):
        wait_until(lambda: _group_caught_up(kafka, "g2", len(JOURNEY) + 3), timeout=30)
    assert segment.state() == before


def test_replay_into_an_empty_schema_rebuilds_identical_state(stack, kafka, segment, unique):
    send(kafka, JOURNEY)
    with RunnerThread(segment.runner("live")):
        wait_until(lambda: segment.count("events") == 8)
    live = segment.state()

    replay = Segment(stack, kafka, f"t_{unique}_replay")
    try:
        with RunnerThread(replay.runner("replay-from-zero")):
            wait_until(lambda: replay.count("events") == 8)
        assert replay.state() == live
    finally:
        replay.pool.close()
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "t_{unique}_replay" CASCADE')


def test_two_consumers_applying_the_same_batch_at_once_count_each_event_once(segment):
    """During a rebalance the old and the new owner of a partition can both be applying the
    same records: the second waits on the first's rows and must then count nothing."""
    batch = JOURNEY[:5]
    with psycopg.connect(segment.dsn, options=f"-c search_path={segment.schema}") as first:
        first.row_factory = psycopg.rows.dict_row
        with first.transaction():
            apply_touchpoints(first, "acme", batch)

            def second() -> None:
                with psycopg.connect(
                    segment.dsn, options=f"-c search_path={segment.schema}"
                ) as conn:
                    conn.row_factory = psycopg.rows.dict_row
                    with conn.transaction():
                        apply_touchpoints(conn, "acme", batch)

            racer = threading.Thread(target=second)
            racer.start()
            racer.join(1.0)
            assert racer.is_alive(), "the second writer should wait for the first's commit"
        racer.join(10)
    assert not racer.is_alive()
    (total,) = segment.rows("SELECT sum(events_count) FROM contacts")[0]
    assert total == segment.count("events") == 5


def test_unknown_tenant_goes_to_the_dlq(segment, kafka):
    stranger = tp(99, "oa.subscribe", tenant="nobody", openid="oX")
    send(kafka, [stranger, JOURNEY[0]])
    with RunnerThread(segment.runner("g1")):
        wait_until(lambda: segment.count("events") == 1)
        (dead,) = read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 1)
    letter = json.loads(dead.value)
    assert letter["envelope"]["tenant_id"] == "nobody"
    assert "unknown tenant" in letter["error"]["message"]


def _group_caught_up(kafka, group: str, total: int) -> bool:
    from kafka import KafkaConsumer, TopicPartition

    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=kafka.group(group))
    try:
        topic = kafka.topic(TOUCHPOINTS)
        committed = [
            probe.committed(TopicPartition(topic, p)) or 0 for p in range(kafka.partitions)
        ]
        return sum(committed) >= total
    finally:
        probe.close()
