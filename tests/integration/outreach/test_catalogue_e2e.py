"""A tenant's own lifecycle model and its segments reach outreach on siyu.catalogue.v1, and
campaigns are checked against them: through the real entry points, on the session's PostgreSQL
and broker.

The admin API app (segment and outreach routes; its process drains the segment outbox on a
timer), the segment consumer's start-up announcement (``announce_catalogues``) and the outreach
worker's consumer (``worker.build_runner``). ``loyal`` is a B2C tenant whose lifecycle_model names
its custom model ``loyalty``, ``forge`` a B2B tenant whose model ``pipeline`` says which of its
stages are still evaluating (the no-discount guard); every wait polls up to a deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from kafka import KafkaProducer

from services.outreach import projection, worker
from services.outreach.tokens import create_token
from services.segment.consumer import announce_catalogues
from shared import messages
from shared.config import Settings
from shared.db import create_pool
from shared.kafka.topics import CATALOGUE, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from siyu.api import SEGMENT_OUTBOX, create_app
from tests.integration.api.conftest import finished_job
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

DEADLINE_S = 20.0
LOYALTY = {
    "title": "Loyalty",
    "stages": [
        {"name": "follower", "title": "Follower", "when": {"event": ["oa.subscribe", "oa.scan"]}},
        {"name": "engaged", "when": {"event": ["oa.click", "biz.content.downloaded"]}},
        {"name": "buyer", "title": "Buyer", "when": {"event": "biz.order.paid"}},
    ],
    "side_stages": [{"name": "dormant"}],
}
TEA_LOVERS = {
    "segment_id": "tea-lovers",
    "name": "Tea lovers",
    "rule": {"attribute": "stage", "equals": "buyer"},
}
LOYALTY_STAGES = ["follower", "engaged", "buyer", "dormant"]


class Stack:
    """The API app and outreach's consumer over private schemas and topics."""

    def __init__(self, stack, schema, kafka, tmp_path):
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(
            DEMO_TENANTS_PATH.read_text(encoding="utf-8")
            + "\n  - id: loyal\n    name: Loyal Tea\n    mode: b2c\n"
            "    lifecycle_model: loyalty\n    timezone: Asia/Shanghai\n"
            "\n  - id: forge\n    name: Forge Machines\n    mode: b2b\n"
            "    lifecycle_model: pipeline\n    timezone: Asia/Shanghai\n",
            encoding="utf-8",
        )
        self.dsn, self.schema, self.seg = stack.dsn, schema, f"{schema}_seg"
        self.kafka = kafka
        self.tenants = load_tenants(tenants_file)
        migrate_service(stack.dsn, "outreach", schema=schema)
        migrate_service(stack.dsn, "segment", schema=self.seg)
        ensure_topics(kafka)
        self.settings = Settings(database_url=stack.dsn, kafka=kafka, tenants_path=tenants_file)
        self.pool = create_pool(stack.dsn, name="catalogue-test", schema=schema, max_size=4)
        self.seg_pool = create_pool(stack.dsn, name="catalogue-seg", schema=self.seg, max_size=2)
        schemas = {"outreach": schema, "segment": self.seg}
        self.app = create_app(
            self.settings,
            pool=self.pool,
            schema_for=lambda s: schemas.get(s, s),
            token_cache_ttl_s=0,
        )
        self.client = self.app.test_client()
        self.tokens = {}
        with self.pool.connection() as conn:
            for role in ("operator", "admin"):
                _, self.tokens[role] = create_token(conn, tenant_id="loyal", role=role, name=role)
                _, self.tokens[f"forge-{role}"] = create_token(
                    conn, tenant_id="forge", role=role, name=role
                )
        self.consumer = RunnerThread(worker.build_runner(self.settings, self.pool)).__enter__()

    def close(self):
        try:
            self.consumer.stop()
        finally:
            drainer = self.app.extensions[SEGMENT_OUTBOX]
            drainer.stop()
            drainer.pool.close()
            self.seg_pool.close()
            self.pool.close()
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.seg}" CASCADE')

    def call(self, method: str, path: str, who: str = "operator", **kw):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    def catalogue(self, tenant: str = "loyal") -> dict | None:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM catalogue WHERE tenant_id = %s", (tenant,)
            ).fetchone()

    def wait_for_catalogue(self, predicate, message: str, tenant: str = "loyal") -> dict:
        return wait_until(
            lambda: (row := self.catalogue(tenant)) is not None and predicate(row) and row,
            timeout=DEADLINE_S,
            message=message,
        )

    def item(self) -> str:
        body = {"title": "新茶上市", "format": "article", "payloads": {"wecom": {"text": "新茶"}}}
        response = self.call("POST", "/content", json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["content_id"]

    def campaign(self, item: str, audience: dict):
        body = {"name": "新茶", "channel": "wecom_single", "audience": audience,
                "content": {"item": item}, "trigger": {"schedule": {"cron": "0 10 * * TUE"}}}  # fmt: skip
        return self.call("POST", "/campaigns", json=body)


@pytest.fixture
def world(stack, schema, kafka, tmp_path):
    built = Stack(stack, schema, kafka, tmp_path)
    yield built
    built.close()


def refused(response, field: str, value: str) -> tuple[str, list[str]]:
    """The 400's message for ``field`` (naming ``value``) and the valid values it lists."""
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request", error
    (message,) = error["details"][field]
    assert repr(value) in message, message
    return message, error["details"]["valid"][field]


def test_custom_stages_and_segments_are_checked_against_the_catalogue_segment_publishes(world):
    item = world.item()

    # Nothing from segment yet: a custom model's stage and a segment cannot be checked.
    message, valid = refused(world.campaign(item, {"stages": ["buyer"]}), "audience.stages[0]",
                             "buyer")  # fmt: skip
    assert "has not published this tenant's catalogue" in message
    assert valid == []
    message, _ = refused(world.campaign(item, {"segments": ["tea-lovers"]}),
                         "audience.segments[0]", "tea-lovers")  # fmt: skip
    assert "siyu segment consume" in message

    # The segment consumer starts: every tenant's catalogue. loyalty is not defined yet, so
    # segment stages loyal with its mode's default, and that is what outreach checks against.
    announce_catalogues(world.settings, world.seg_pool, world.tenants)
    for tenant in ("acme", "bloom"):
        world.wait_for_catalogue(lambda row: True, f"{tenant}'s catalogue", tenant)
    world.wait_for_catalogue(lambda row: row["model"] == "aarrr", "loyal's default model")
    message, _ = refused(world.campaign(item, {"stages": ["buyer"]}), "audience.stages[0]", "buyer")
    assert message.startswith("Unknown stage of the aarrr model")

    # Admins define the model and a segment through segment's routes; the API process's outbox
    # publishes the catalogue, outreach's consumer stores it.
    put = world.call("PUT", "/lifecycle/loyalty", "admin", json=LOYALTY)
    assert put.status_code == 201, put.get_json()
    created = world.call("POST", "/segments", "admin", json=TEA_LOVERS)
    assert created.status_code == 201, created.get_json()
    row = world.wait_for_catalogue(
        lambda row: row["model"] == "loyalty" and row["segments"], "loyalty and tea-lovers"
    )
    assert list(row["stages"]) + list(row["side_stages"]) == LOYALTY_STAGES
    assert row["segments"] == [{"segment_id": "tea-lovers", "name": "Tea lovers"}]

    message, valid = refused(world.campaign(item, {"stages": ["buyr"]}), "audience.stages[0]",
                             "buyr")  # fmt: skip
    assert valid == LOYALTY_STAGES
    assert "Did you mean 'buyer'?" in message
    message, valid = refused(
        world.campaign(item, {"stages": ["buyer"], "exclude": {"segments": ["tea-lover"]}}),
        "audience.exclude.segments[0]", "tea-lover",
    )  # fmt: skip
    assert valid == ["tea-lovers"]
    assert "Did you mean 'tea-lovers'?" in message

    good = world.campaign(item, {"stages": ["buyer", "dormant"], "segments": ["tea-lovers"]})
    assert good.status_code == 201, good.get_json()

    # A deleted segment leaves the catalogue; naming it again is refused.
    assert world.call("DELETE", "/segments/tea-lovers", "admin").status_code == 204
    world.wait_for_catalogue(lambda row: row["segments"] == [], "tea-lovers deleted")
    refused(world.campaign(item, {"segments": ["tea-lovers"]}), "audience.segments[0]",
            "tea-lovers")  # fmt: skip


def test_redelivered_and_replayed_catalogues_leave_the_newest_in_place(world):
    put = world.call("PUT", "/lifecycle/loyalty", "admin", json=LOYALTY)
    assert put.status_code == 201, put.get_json()
    assert world.call("POST", "/segments", "admin", json=TEA_LOVERS).status_code == 201
    newest = world.wait_for_catalogue(lambda row: row["segments"], "tea-lovers")
    topic = world.kafka.topic(CATALOGUE)
    records = read_topic(world.kafka, topic, expected=2)
    values = [messages.decode(messages.CATALOGUE, r.value) for r in records]
    assert [len(v["segments"]) for v in values] == [0, 1]  # the model, then the segment

    # Every catalogue again, newest first (an out-of-order replay), then the newest once more
    # (a redelivery), then a marker of another tenant in the same partition: once the marker is
    # stored, everything sent before it was applied.
    producer = KafkaProducer(bootstrap_servers=world.kafka.bootstrap, acks="all")
    try:
        for record in [*reversed(records), records[-1]]:
            producer.send(topic, key=record.key, value=record.value, partition=record.partition)
        marker = {"tenant_id": "marker", "model": {"name": "aarrr", "builtin": True,
                  "stages": ["acquisition"], "side_stages": []}, "segments": [],
                  "published_at": datetime.now(UTC)}  # fmt: skip
        producer.send(topic, key=b"marker", partition=records[-1].partition,
                      value=messages.encode(messages.CATALOGUE, marker))  # fmt: skip
        producer.flush(10)
    finally:
        producer.close()
    world.wait_for_catalogue(lambda row: True, "the marker", "marker")

    after = world.catalogue()
    assert {k: after[k] for k in after if k != "received_at"} == {
        k: newest[k] for k in newest if k != "received_at"
    }
    assert after["segments"] == [{"segment_id": "tea-lovers", "name": "Tea lovers"}]
    item = world.item()
    assert world.campaign(item, {"segments": ["tea-lovers"]}).status_code == 201


PIPELINE = {
    "title": "Pipeline",
    "stages": [
        {"name": "lead", "when": {"event": "biz.lead.created"}},
        {"name": "demo", "when": {"event": "biz.demo.requested"}, "flags": ["evaluating"]},
        {"name": "customer", "when": {"event": "biz.order.paid"}},
    ],
    "side_stages": [{"name": "churned", "flags": ["lapsed"]}],
}
UNFLAGGED = {
    **PIPELINE,
    "stages": [{k: v for k, v in s.items() if k != "flags"} for s in PIPELINE["stages"]],
    "side_stages": [{"name": "churned"}],
}


def forge_profile(contact_id: str, ext: str, stage: str, account_stage: str | None = None):
    now = datetime.now(UTC)
    return {
        "schema": "profile/1", "tenant_id": "forge", "contact_id": contact_id, "mode": "b2b",
        "identities": {"external_userid": [ext]}, "model": "pipeline", "stage": stage,
        "role": None, "account_id": "acct1" if account_stage else None,
        "account_stage": account_stage, "risk_flags": [], "score": 10.0, "tags": [],
        "segments": [], "behaviour": [], "wecom_contact": True, "oa_follower": None,
        "oa_last_message_at": None, "updated_at": now,
    }  # fmt: skip


def test_the_no_discount_guard_keeps_promotions_from_the_stages_the_model_flags(world):
    # forge's own model flags its stage `demo` evaluating; the catalogue carries the flags.
    put = world.call("PUT", "/lifecycle/pipeline", "forge-admin", json=PIPELINE)
    assert put.status_code == 201, put.get_json()
    flags = {"demo": ["evaluating"], "churned": ["lapsed"]}
    world.wait_for_catalogue(
        lambda row: row["model"] == "pipeline" and row["stage_flags"] == flags,
        "pipeline with its flags",
        "forge",
    )
    profiles = [forge_profile("c_demo", "wmDemo", "demo"),
                forge_profile("c_lead", "wmLead", "lead", account_stage="demo"),
                forge_profile("c_customer", "wmCustomer", "customer")]  # fmt: skip
    with world.pool.connection() as conn, conn.transaction():
        projection.apply_profiles(conn, profiles, datetime.now(UTC))
    promo = {"title": "年终大促", "format": "promotion", "payloads": {"wecom": {"text": "8折"}}}
    created = world.call("POST", "/content", "forge-operator", json=promo)
    assert created.status_code == 201, created.get_json()
    body = {"name": "大促", "channel": "wecom_single",
            "audience": {"stages": ["lead", "demo", "customer"]},
            "content": {"item": created.get_json()["content_id"]},
            "trigger": {"schedule": {"cron": "0 10 * * TUE"}},
            "allow_b2b_promotion": True}  # fmt: skip
    campaign = world.call("POST", "/campaigns", "forge-admin", json=body)
    assert campaign.status_code == 201, campaign.get_json()
    campaign_id = campaign.get_json()["campaign_id"]

    def preview() -> dict:
        queued = world.call("POST", f"/campaigns/{campaign_id}/preview", "forge-operator")
        assert queued.status_code == 202, queued.get_json()
        return finished_job(world, queued, "forge-operator")["result"]

    # The buyer at demo, and the one whose account is at demo, are still evaluating.
    result = preview()
    assert result["excluded"] == {"no_discount_comparing": 2}
    assert result["to_send"] == 1

    # The same model without flags: the tenant's default blocks every B2B promotion...
    put = world.call("PUT", "/lifecycle/pipeline", "forge-admin", json=UNFLAGGED)
    assert put.status_code == 200, put.get_json()
    world.wait_for_catalogue(lambda row: row["stage_flags"] == {}, "pipeline unflagged", "forge")
    assert preview()["excluded"] == {"no_discount_unflagged_model": 3}

    # ...unless the admin names the stages to treat as evaluating, from the model's own.
    def settings(value):
        return world.call("PUT", "/settings/outreach", "forge-admin",
                          json={"guard_unflagged_model": value})  # fmt: skip

    message, valid = refused(settings(["dmo"]), "guard_unflagged_model[0]", "dmo")
    assert valid == ["lead", "demo", "customer", "churned"]
    assert "Did you mean 'demo'?" in message
    assert settings(["demo"]).status_code == 200
    assert preview()["excluded"] == {"no_discount_comparing": 2}
    assert settings("allow").status_code == 200
    assert preview()["excluded"] == {}
