"""Business events, tracked links and the broker-down path, end to end into the real broker."""

from __future__ import annotations

import json
import secrets
import time

import psycopg
import pytest
from psycopg import sql

from services.ingest.publisher import OutboxReplayer
from services.ingest.wiring import INGEST_PRODUCER
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.kafka.producer import create_producer
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import ensure_topics
from tests.integration.ingest.conftest import build
from tests.kafka_helpers import read_topic, wait_until


def event(key: str, type_: str = "biz.order.paid", **attributes) -> dict:
    attributes = attributes or {"amount": 1999.0, "currency": "CNY"}
    return {
        "idempotency_key": key,
        "type": type_,
        "occurred_at": "2026-11-24T09:30:00+08:00",
        "identity": {"crm_id": "C-1", "account_key": "苏州精工机械"},
        "attributes": attributes,
    }


def post(ingest, body, token: str | None = "default", content_type="application/json"):  # noqa: S107
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {ingest.token if token == 'default' else token}"
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return ingest.client.post("/api/v1/events", data=data, headers=headers)


def test_batch_is_accepted_and_in_kafka(ingest):
    batch = {"events": [event("o-1"), event("o-2"), event("t-1", "biz.trial.started", plan="pro")]}
    response = post(ingest, batch)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 3
    assert response.json["stored"] == "kafka"
    records = [json.loads(r.value) for r in read_topic(ingest.kafka, ingest.topic, 3)]
    assert sorted(r["type"] for r in records) == [
        "biz.order.paid",
        "biz.order.paid",
        "biz.trial.started",
    ]
    ids = {e["idempotency_key"]: e["event_id"] for e in response.json["events"]}
    paid = next(r for r in records if r["event_id"] == ids["o-1"])
    assert paid["source"] == "api"
    assert paid["attributes"]["amount"] == 1999.0
    assert paid["identity"]["account_key"] == "苏州精工机械"
    assert {r.key.decode() for r in read_topic(ingest.kafka, ingest.topic, 3)} == {"acme:C-1"}


def test_same_idempotency_key_gives_the_same_event_id(ingest):
    first = post(ingest, event("dup-1")).json["events"][0]["event_id"]
    again = post(ingest, event("dup-1")).json["events"][0]["event_id"]
    assert first == again


@pytest.mark.parametrize(
    ("body", "token", "content_type", "status", "code"),
    [
        ({"events": [event("a")]}, None, "application/json", 401, "missing_token"),
        ({"events": [event("a")]}, "siyu_ev_forged", "application/json", 401, "bad_token"),
        ({"events": [event("a")]}, "default", "text/plain", 415, "unsupported_media_type"),
        ("{not json", "default", "application/json", 400, "malformed_body"),
        ([1, 2], "default", "application/json", 400, "invalid_events"),
        ({"events": []}, "default", "application/json", 400, "invalid_events"),
        ({"events": [event(f"k{i}") for i in range(501)]}, "default", "application/json", 400,
         "invalid_events"),
    ],
)  # fmt: skip
def test_refused_requests_produce_nothing(ingest, body, token, content_type, status, code):
    response = post(ingest, body, token, content_type)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_per_item_errors_and_nothing_accepted(ingest):
    bad_amount = event("b1", amount=-5)
    bad_type = event("b2", "biz.teleport")
    no_identity = {**event("b3"), "identity": {}}
    naive_time = {**event("b4"), "occurred_at": "2026-11-24 09:30"}
    batch = {"events": [event("ok"), bad_amount, bad_type, no_identity, naive_time]}
    response = post(ingest, batch)
    assert response.status_code == 400
    errors = response.json["error"]["details"]["events"]
    assert set(errors) == {"1", "2", "3", "4"}
    assert "amount" in errors["1"]["attributes"]
    assert "type" in errors["2"]
    assert "identity" in errors["3"]
    assert "occurred_at" in errors["4"]
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_oversize_batch_is_413(ingest):
    huge = {"events": [event("h", note="x" * 10_000) for _ in range(300)]}
    assert post(ingest, huge).status_code == 413


def test_tracked_link_records_a_click_and_redirects(ingest):
    token = ingest.deps.links.sign(
        tenant_id="acme", url="https://acme.cn/whitepaper.pdf", identity_kind="external_userid",
        identity_value="wmExt1", content_id="wp-2026", campaign_id="c-7",
    )  # fmt: skip
    response = ingest.client.get(f"/r/{token}", headers={"User-Agent": "MicroMessenger"})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://acme.cn/whitepaper.pdf"
    (record,) = read_topic(ingest.kafka, ingest.topic, 1)
    click = json.loads(record.value)
    assert click["type"] == "link.clicked"
    assert click["source"] == "link"
    assert click["identity"]["external_userid"] == "wmExt1"
    assert click["attributes"]["content_id"] == "wp-2026"


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: "x" + t, lambda t: "nope"])
def test_tampered_links_are_404_with_no_event(ingest, mangle):
    token = ingest.deps.links.sign(
        tenant_id="acme", url="https://acme.cn/", identity_kind="openid", identity_value="o1"
    )
    assert ingest.client.get(f"/r/{mangle(token)}").status_code == 404
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_broker_down_events_wait_in_the_outbox_then_replay(stack, kafka, schema, monkeypatch):
    monkeypatch.setenv("ACME_OA_SECRET", "x")
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", topic_prefix=kafka.topic_prefix)
    down = build(
        stack, kafka, schema,
        producer_factory=lambda: create_producer(dead, client_id="down", **INGEST_PRODUCER),
    )  # fmt: skip
    response = post(down, {"events": [event("out-1"), event("out-2")]})
    assert response.status_code == 200
    assert response.json["stored"] == "outbox"
    with psycopg.connect(stack.dsn) as conn:
        count = sql.SQL("SELECT count(*) FROM {}.outbox").format(sql.Identifier(schema))
        assert conn.execute(count).fetchone()[0] == 2
    assert read_topic(kafka, kafka.topic("siyu.touchpoints.v1"), 0, timeout=1) == []

    # The broker is back: the replayer publishes and empties the outbox.
    down.deps.publisher._producer_factory = lambda: create_producer(kafka, client_id="up")
    down.deps.publisher._producer = None
    replayer = OutboxReplayer(down.deps.publisher)
    assert replayer.replay_once() == 2
    assert replayer.depth() == 0
    records = [
        json.loads(r.value) for r in read_topic(kafka, kafka.topic("siyu.touchpoints.v1"), 2)
    ]
    assert sorted(r["event_id"] for r in records) == sorted(
        e["event_id"] for e in response.json["events"]
    )
    down.deps.publisher.close()
    down.deps.publisher.pool.close()


def test_broker_and_database_down_is_503_so_wechat_retries(stack, kafka, schema, monkeypatch):
    monkeypatch.setenv("ACME_OA_SECRET", "x")
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")
    down = build(
        stack, kafka, schema,
        producer_factory=lambda: create_producer(dead, client_id="down", **INGEST_PRODUCER),
    )  # fmt: skip
    token = down.token
    down.deps.publisher.pool.close()  # the outbox is unreachable too
    response = post(down, event("lost-1"), token)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable"
    subscribe = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    webhook = down.oa_post(subscribe)
    assert webhook.status_code == 503  # not 200: WeChat will retry


def test_stopping_the_real_broker_loses_nothing(stack, schema, unique, tmp_path, monkeypatch):
    """Stop a running broker mid-traffic: webhooks still get 200 (outbox), then replay on return."""
    monkeypatch.setenv("ACME_OA_SECRET", "x")
    broker = EmbeddedBroker(tmp_path / "own-broker", port=free_port()).start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"t{unique}.", partitions=3)
    ingest = build(stack, kafka, schema)
    topic = kafka.topic("siyu.touchpoints.v1")
    try:
        before = post(ingest, event("before-stop"))
        assert before.json["stored"] == "kafka"
        broker.stop()
        during = [post(ingest, event(f"during-{i}")) for i in range(3)]
        assert [r.status_code for r in during] == [200, 200, 200]
        assert {r.json["stored"] for r in during} == {"outbox"}

        broker.start()  # in-memory broker: it comes back empty, as after a data loss
        ensure_topics(kafka)
        replayer = OutboxReplayer(ingest.deps.publisher)
        wait_until(lambda: replayer.replay_once() or replayer.depth() == 0, timeout=30)
        assert replayer.depth() == 0
        ids = {json.loads(r.value)["event_id"] for r in read_topic(kafka, topic, 3)}
        assert ids == {r.json["events"][0]["event_id"] for r in during}
    finally:
        ingest.deps.publisher.close()
        ingest.deps.publisher.pool.close()
        broker.stop()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda e: {**e, "attributes": {"note": "a\u0000b"}},
        lambda e: {**e, "attributes": {"a\u0000": 1}},
        lambda e: {**e, "identity": {"crm_id": "C\u00001"}},
        lambda e: {**e, "idempotency_key": "k\u0000"},
    ],
)
def test_nul_characters_are_refused_not_passed_on(ingest, mangle):
    """PostgreSQL cannot store U+0000 (text or jsonb): accepting it would poison the consumers."""
    response = post(ingest, {"events": [mangle(event("nul"))]})
    assert response.status_code == 400
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def _reply(openid: str, text: str) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_acme]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]>"
            f"</MsgType><Content><![CDATA[{text}]]></Content><MsgId>{secrets.randbelow(10**12)}"
            "</MsgId></xml>")  # fmt: skip


def test_signals_go_beside_their_touchpoints_through_a_stopped_broker(
    stack, schema, unique, tmp_path, monkeypatch
):
    """A click and an OA reply while the broker is stopped: the outbox holds each touchpoint
    and its signal (both or neither), the replay publishes both, and the signal never carries
    the message's text (shared/signals.py)."""
    monkeypatch.setenv("ACME_OA_SECRET", "x")
    broker = EmbeddedBroker(tmp_path / "own-broker", port=free_port()).start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"t{unique}.", partitions=3)
    ingest = build(stack, kafka, schema)
    touchpoints, signals = kafka.topic("siyu.touchpoints.v1"), kafka.topic("siyu.signals.v1")
    token = ingest.deps.links.sign(
        tenant_id="acme", url="https://acme.cn/", identity_kind="openid", identity_value="oSig1",
        content_id="wp", campaign_id="c-1", contact_id="ct_1",
    )  # fmt: skip
    try:
        assert ingest.oa_post(_reply("oSig0", "早")).status_code == 200  # broker up: both topics
        assert [json.loads(r.value)["type"] for r in read_topic(kafka, signals, 1)] == [
            "oa.message"
        ]
        broker.stop()
        assert ingest.client.get(f"/r/{token}").status_code == 302
        assert ingest.oa_post(_reply("oSig1", "我的手机号 13800000000")).status_code == 200
        assert post(ingest, event("paid-1")).json["stored"] == "outbox"  # no signal of its own
        with psycopg.connect(stack.dsn) as conn:
            rows = conn.execute(sql.SQL("SELECT topic, event_id FROM {}.outbox ORDER BY id").format(
                sql.Identifier(schema))).fetchall()  # fmt: skip
        topics = [t for t, _ in rows]
        assert topics.count(touchpoints) == 3 and topics.count(signals) == 2
        by_event: dict[str, set[str]] = {}
        for topic, event_id in rows:
            by_event.setdefault(event_id, set()).add(topic)
        assert sorted(len(t) for t in by_event.values()) == [1, 2, 2]

        broker.start()  # in-memory broker: it comes back empty
        ensure_topics(kafka)
        replayer = OutboxReplayer(ingest.deps.publisher)
        wait_until(lambda: replayer.replay_once() or replayer.depth() == 0, timeout=30)
        assert replayer.depth() == 0
        published = [json.loads(r.value) for r in read_topic(kafka, signals, 2)]
        assert sorted(s["type"] for s in published) == ["link.clicked", "oa.message"]
        click = next(s for s in published if s["type"] == "link.clicked")
        assert click["attributes"] == {
            "campaign_id": "c-1",
            "content_id": "wp",
            "contact_id": "ct_1",
        }
        reply = next(s for s in published if s["type"] == "oa.message")
        assert reply["attributes"] == {"msg_type": "text"}
        assert reply["identity"]["openid"] == "oSig1"
        assert all("13800000000" not in r.value.decode() for r in read_topic(kafka, signals, 2))
        assert {e for e, t in by_event.items() if signals in t} == {
            s["event_id"] for s in published
        }
        assert len(read_topic(kafka, touchpoints, 3)) == 3
    finally:
        ingest.deps.publisher.close()
        ingest.deps.publisher.pool.close()
        broker.stop()
