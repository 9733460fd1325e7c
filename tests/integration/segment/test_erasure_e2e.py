"""Erasure of a person end to end (docs/privacy.md), through the real entry points on the
session's PostgreSQL and broker: ingest's app (webhook, business events), the segment consumer,
the admin API app (DELETE /api/v1/contacts/<id>; its process drains the segment outbox),
outreach's consumer and ingest's erasure consumer.

After the erasure the person is gone from the API and from the three schemas, their profile is
tombstoned on siyu.profiles.v1, their key is destroyed so the raw payloads still on the
touchpoints topic cannot be read, and a replay of those touchpoints (re-produced to the topic,
and read again by a fresh consumer group) does not bring them back. Another person of the same
tenant, and another tenant, are untouched.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from services.ingest import erasures as ingest_erasures
from services.ingest.shredding import PREFIX, PersonKeys, subject_of
from services.outreach import worker
from services.outreach.tokens import create_token
from shared.config import Settings
from shared.db import create_pool
from shared.envelope import decode_touchpoint
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.topics import PROFILES, TOUCHPOINTS
from shared.migrations import migrate_service
from shared.privacy import identity_hash
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import SEGMENT_OUTBOX, create_app
from tests.integration.ingest.conftest import build
from tests.integration.segment.test_consumer import Segment
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

DEADLINE_S = 30.0
NOW = int(time.time()) - 600
ERASED = "wmErased01"  # the person erased (WeCom external contact + CRM id)
KEPT = "oKeptOpenid01"  # another follower of the same tenant


def added(external: str, at: int) -> str:
    return (
        f"<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{at}</CreateTime><MsgType>event</MsgType>"
        "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
        f"<UserID>zhangwei</UserID><ExternalUserID>{external}</ExternalUserID>"
        "<State>expo</State></xml>"
    )


def subscribed(openid: str, at: int) -> str:
    return (
        f"<xml><ToUserName>gh_acme</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{at}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )


class World:
    def __init__(self, stack, kafka, schema, monkeypatch):
        for key, value in {"ACME_OA_SECRET": "x", "ACME_WECOM_SECRET": "y"}.items():
            monkeypatch.setenv(key, value)
        self.dsn, self.kafka = stack.dsn, kafka
        self.out, self.seg, self.ing = schema, f"{schema}_seg", f"{schema}_ing"
        self.ingest = build(stack, kafka, self.ing)
        self.segment = Segment(stack, kafka, self.seg)
        migrate_service(stack.dsn, "outreach", schema=self.out)
        self.settings = Settings(
            database_url=stack.dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH
        )
        self.pool = create_pool(stack.dsn, name="erasure-api", schema=self.out, max_size=4)
        schemas = {"outreach": self.out, "segment": self.seg, "ingest": self.ing}
        self.app = create_app(self.settings, pool=self.pool,
                              schema_for=lambda s: schemas.get(s, s), token_cache_ttl_s=0)  # fmt: skip
        self.client = self.app.test_client()
        self.tokens = {}
        with self.pool.connection() as conn:
            for tenant, role in (("acme", "admin"), ("acme", "operator"), ("bloom", "admin")):
                _, self.tokens[(tenant, role)] = create_token(
                    conn, tenant_id=tenant, role=role, name=f"{tenant}-{role}"
                )
        self.ingest_pool = create_pool(stack.dsn, name="erasure-ing", schema=self.ing, max_size=2)
        self.keys = PersonKeys(self.ingest_pool, ttl_s=0)
        self.threads = [
            RunnerThread(self.segment.runner("erasure-e2e")).__enter__(),
            RunnerThread(worker.build_runner(self.settings, self.pool)).__enter__(),
            RunnerThread(ingest_erasures.build_runner(self.settings, self.ingest_pool)).__enter__(),
        ]

    def close(self):
        try:
            for thread in self.threads:
                thread.stop()
        finally:
            drainer = self.app.extensions[SEGMENT_OUTBOX]
            drainer.stop()
            drainer.pool.close()
            self.ingest.deps.publisher.close()
            self.ingest.deps.publisher.pool.close()
            self.ingest_pool.close()
            self.segment.pool.close()
            self.pool.close()
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for name in (self.seg, self.ing):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def call(self, method: str, path: str, who=("acme", "admin"), **kw):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    def rows(self, schema: str, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.dsn, options=f"-c search_path={schema}") as conn:
            return conn.execute(query, params).fetchall()

    def contact_of(self, kind: str, value: str) -> str | None:
        found = self.rows(
            self.seg,
            "SELECT contact_id FROM identities WHERE kind = %s AND value = %s",
            kind,
            value,
        )
        return found[0][0] if found else None

    def in_audience(self, contact_id: str) -> bool:
        return bool(self.rows(self.out, "SELECT 1 FROM audience WHERE contact_id = %s", contact_id))

    def biz(self, key: str, identity: dict, minutes: int, **attributes):
        at = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=minutes)
        body = {"idempotency_key": key, "type": "biz.contact.updated",
                "occurred_at": at.isoformat(), "identity": identity, "attributes": attributes}  # fmt: skip
        response = self.ingest.client.post(
            "/api/v1/events", json=body, headers={"Authorization": f"Bearer {self.ingest.token}"}
        )
        assert response.status_code == 200, response.json


def sent_to(world, contact: str) -> None:
    """Two triggered runs for the contact (one done with a sent delivery, one pending with a
    pending delivery), exposures, and a customer group they are a member of, as outreach's
    worker would have written them."""
    with psycopg.connect(world.dsn, options=f"-c search_path={world.out}") as conn:
        for run_status, status in (("done", "sent"), ("pending", "pending")):
            (run,) = conn.execute(
                "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, subject_kind, "
                "subject_id, due_at, status) VALUES ('acme', 'welcome', %s, 'contact', %s, "
                "now(), %s) RETURNING run_id",
                (f"event:stage_entered:awareness:contact:{contact}:{status}", contact, run_status),
            ).fetchone()
            conn.execute(
                "INSERT INTO deliveries (tenant_id, run_id, campaign_id, recipient_kind, "
                "recipient_id, channel, address, status) VALUES ('acme', %s, 'welcome', "
                "'contact', %s, 'wecom_single', %s, %s)",
                (run, contact, ERASED, status),
            )
        conn.execute(
            "INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at) "
            "SELECT 'acme', 'contact', %s, 'wecom_single', delivery_id, now() FROM deliveries",
            (contact,),
        )
        conn.execute(
            "INSERT INTO groups (tenant_id, chat_id, owner, members, synced_at) "
            "VALUES ('acme', 'wrGroup', 'zhangwei', %s, now())",
            ([ERASED, "wmOther"],),
        )


def caught_up(kafka, group: str, topic: str) -> bool:
    """The group has committed the end of every partition of the topic."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=kafka.group(group), enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        return all((consumer.committed(tp) or 0) >= end for tp, end in ends.items())
    finally:
        consumer.close()


@pytest.fixture
def world(stack, kafka, schema, monkeypatch):
    built = World(stack, kafka, schema, monkeypatch)
    yield built
    built.close()


def test_an_erased_person_is_gone_everywhere_and_a_replay_does_not_bring_them_back(world):
    # A WeCom contact the CRM knows by name, and another follower of the same tenant.
    assert world.ingest.wecom_post(added(ERASED, NOW)).status_code == 200
    world.biz("crm-1", {"external_userid": ERASED, "crm_id": "CRM-1"}, 1, name="李雷", title="CTO",
              company="苏州精工机械有限公司")  # fmt: skip
    assert world.ingest.oa_post(subscribed(KEPT, NOW)).status_code == 200
    contact = wait_until(lambda: world.contact_of("crm_id", "CRM-1"), DEADLINE_S, message="contact")
    kept = wait_until(lambda: world.contact_of("openid", KEPT), DEADLINE_S, message="kept")
    wait_until(lambda: world.call("GET", f"/contacts/{contact}").get_json().get("name") == "李雷",
               DEADLINE_S, message="the CRM name on the contact")  # fmt: skip
    wait_until(lambda: world.in_audience(contact) and world.in_audience(kept), DEADLINE_S,
               message="both in outreach's audience")  # fmt: skip

    # What ingest published: the raw payloads of the person are sealed with their key.
    touchpoints = world.kafka.topic(TOUCHPOINTS)
    records = read_topic(world.kafka, touchpoints, expected=3)
    envelopes = [decode_touchpoint(r.value) for r in records]
    theirs = [tp for tp in envelopes if tp.identity.external_userid == ERASED]
    assert len(theirs) == 2
    assert all(tp.raw.startswith(PREFIX) for tp in theirs)
    assert all("李雷" not in tp.raw and ERASED not in tp.raw for tp in theirs)
    assert "李雷" in world.keys.open(next(tp for tp in theirs if tp.source == "api"))
    assert ERASED in world.keys.open(next(tp for tp in theirs if tp.source == "wecom"))

    # Refused: no token, a role below admin, no reason, an unknown id, another tenant's contact.
    path = f"/contacts/{contact}"
    assert world.call("DELETE", f"{path}?reason=x", who=None).status_code == 401
    assert world.call("DELETE", f"{path}?reason=x", who=("acme", "operator")).status_code == 403
    no_reason = world.call("DELETE", path)
    assert no_reason.status_code == 400
    assert "reason" in no_reason.get_json()["error"]["details"]
    assert world.call("DELETE", "/contacts/c_nobody?reason=x").status_code == 404
    assert world.call("DELETE", f"{path}?reason=x", who=("bloom", "admin")).status_code == 404
    assert world.call("GET", path).status_code == 200  # none of those erased anything

    sent_to(world, contact)  # outreach's record of what it sent them
    # A tracked link in a message sent to them, as outreach signs it (ingest's link secret).
    old_link = world.ingest.deps.links.sign(
        tenant_id="acme", url="https://acme.cn/wp", identity_kind="external_userid",
        identity_value=ERASED, content_id="cnt_1", campaign_id="welcome", contact_id=contact,
    )  # fmt: skip
    # A finished dry run whose samples name the person (results are kept for a day).
    world.rows(world.seg, "INSERT INTO jobs (job_id, tenant_id, kind, subject, params, status, "
               "result, expires_at) VALUES ('j_dry', 'acme', 'dry_run', 'aisceas', '{}', 'done', "
               "%s, now() + interval '1 day') RETURNING job_id",
               json.dumps({"sample": [{"contact_id": contact, "name": "李雷"}]}))  # fmt: skip
    erased = world.call("DELETE", path, json={"reason": "PIPL request #42"})
    assert erased.status_code == 200, erased.get_json()
    assert erased.get_json()["status"] == "erased"
    assert erased.get_json()["identities"] == 2
    again = world.call("DELETE", f"{path}?reason=again")
    assert again.status_code == 200
    assert again.get_json()["status"] == "already_erased"

    # Gone from the API and the segment schema; the audit log says who, when and why.
    gone = world.call("GET", path)
    assert gone.status_code == 404
    assert "was erased" in gone.get_json()["error"]["message"]
    listed = world.call("GET", "/contacts?limit=100").get_json()["items"]
    assert [c["contact_id"] for c in listed] == [kept]
    for table, column in (("contacts", "contact_id"), ("identities", "contact_id"),
                          ("events", "contact_id"), ("segment_members", "contact_id"),
                          ("stage_history", "subject_id")):  # fmt: skip
        assert world.rows(world.seg, f"SELECT 1 FROM {table} WHERE {column} = %s", contact) == []
    assert world.rows(world.seg, "SELECT count(*) FROM erased_identities")[0][0] == 2
    assert world.rows(world.seg, "SELECT job_id FROM jobs") == []  # its samples named them
    assert world.rows(world.seg, "SELECT count(*) FROM contacts")[0][0] == 1
    # Their company stays (a company is not a person), with no trace of them as a member.
    assert world.rows(world.seg, "SELECT members, roles_engaged FROM accounts") == [(0, [])]
    (audited,) = world.rows(world.out, "SELECT details FROM audit_log "
                            "WHERE action = 'contact.erase' AND target = %s", contact)  # fmt: skip
    assert audited[0]["reason"] == "PIPL request #42"

    # Outreach forgets them; the profile topic ends with a tombstone for their key.
    wait_until(lambda: not world.in_audience(contact), DEADLINE_S, message="audience row deleted")
    assert world.in_audience(kept)
    wait_until(lambda: not world.rows(world.out, "SELECT 1 FROM exposures"), DEADLINE_S,
               message="exposures deleted")  # fmt: skip
    assert world.rows(world.out, "SELECT members FROM groups") == [(["wmOther"],)]
    deliveries = world.rows(world.out, "SELECT recipient_id, address, status, reason "
                            "FROM deliveries ORDER BY delivery_id")  # fmt: skip
    assert [(r[0].startswith("erased:"), r[1], r[2]) for r in deliveries] == [
        (True, None, "sent"), (True, None, "excluded")]  # fmt: skip
    assert deliveries[1][3] == "erased"
    runs = world.rows(world.out, "SELECT subject_id, trigger_key, status FROM campaign_runs "
                      "ORDER BY run_id")  # fmt: skip
    assert [status for *_, status in runs] == ["done", "cancelled"]
    assert all(s.startswith("erased:") and contact not in t for s, t, _ in runs)
    profiles = read_topic(world.kafka, world.kafka.topic(PROFILES), expected=3)
    theirs_profiles = [r for r in profiles if r.key == f"acme:{contact}".encode()]
    assert theirs_profiles
    assert theirs_profiles[-1].value is None

    # Ingest destroys the key: the raw payloads still on the topic cannot be read any more.
    hashes = [
        identity_hash("acme", "external_userid", ERASED),
        identity_hash("acme", "crm_id", "CRM-1"),
    ]
    wait_until(lambda: not world.rows(world.ing, "SELECT 1 FROM person_keys "
                                      "WHERE identity_hash = ANY(%s)", hashes),
               DEADLINE_S, message="keys destroyed")  # fmt: skip
    assert all(world.keys.open(tp) is None for tp in theirs)
    kept_tp = next(tp for tp in envelopes if tp.identity.openid == KEPT)
    assert KEPT in world.keys.open(kept_tp)  # the other person's key is untouched
    assert subject_of(kept_tp) is not None

    # Replay: the old touchpoints are produced again, and a fresh group reads the topic from the
    # start. A marker (a new follower) shows both have been read: the person stays erased, and
    # so does a click on a link sent to them before the erasure.
    producer = create_producer(world.kafka, client_id="erasure-replay")
    try:
        publish(producer, [Record(touchpoints, r.key.decode(), r.value) for r in records])
    finally:
        producer.close()
    # And they open the old message again: a click received now, on a link issued before.
    assert world.ingest.client.get(f"/r/{old_link}").status_code == 302
    with RunnerThread(world.segment.runner("erasure-replay")):
        assert world.ingest.oa_post(subscribed("oMarker01", NOW + 60)).status_code == 200
        marker = wait_until(lambda: world.contact_of("openid", "oMarker01"), DEADLINE_S,
                            message="the marker after the replay")  # fmt: skip
        wait_until(lambda: world.in_audience(marker), DEADLINE_S, message="marker in audience")
        wait_until(lambda: caught_up(world.kafka, "erasure-replay", touchpoints), DEADLINE_S,
                   interval=0.5, message="the replay group at the end of the topic")  # fmt: skip
    assert world.contact_of("crm_id", "CRM-1") is None
    assert world.contact_of("external_userid", ERASED) is None
    assert world.call("GET", path).status_code == 404
    assert not world.in_audience(contact)

    # The person adds the company again after the erasure: a new person (docs/privacy.md).
    later = int(time.time())
    assert world.ingest.wecom_post(added(ERASED, later)).status_code == 200
    wait_until(lambda: world.contact_of("external_userid", ERASED), DEADLINE_S,
               message="the person, back as new")  # fmt: skip
    fresh = world.call("GET", f"/contacts/{world.contact_of('external_userid', ERASED)}")
    assert fresh.status_code == 200
    assert fresh.get_json()["name"] is None


def test_siyu_contact_erase_erases_audits_and_queues_the_announcements(own_database, monkeypatch):
    from click.testing import CliRunner
    from psycopg.rows import dict_row

    from services.segment.consumer import apply_batch
    from services.segment.topics import Topics
    from shared.envelope import Identity, Touchpoint
    from shared.tenants import load_tenants
    from siyu.cli import main as siyu

    at = datetime.fromtimestamp(NOW, UTC)
    tp = Touchpoint(event_id="e" * 32, tenant_id="acme", source="api", type="biz.contact.updated",
                    occurred_at=at, received_at=at, identity=Identity(crm_id="CRM-9"),
                    attributes={"name": "韩梅梅"})  # fmt: skip
    with psycopg.connect(
        own_database, options="-c search_path=segment", row_factory=dict_row
    ) as conn:
        apply_batch(conn, load_tenants(DEMO_TENANTS_PATH), [tp], Topics.with_prefix(""))
        contact = conn.execute("SELECT contact_id FROM contacts").fetchone()["contact_id"]
        conn.execute("DELETE FROM outbox")  # what the consumer would have published
    monkeypatch.setenv("SIYU_DATABASE_URL", own_database)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    erase = ["contact", "erase", "--tenant", "acme", "--contact", contact]

    missing = CliRunner().invoke(siyu, [*erase[:-1], "c_nobody", "--reason", "ticket 7"])
    assert missing.exit_code == 1
    assert "no contact 'c_nobody'" in missing.output
    done = CliRunner().invoke(siyu, [*erase, "--reason", "ticket 7"])
    assert done.exit_code == 0, done.output
    assert f"{contact}: erased" in done.output
    assert "(1 identities)" in done.output
    again = CliRunner().invoke(siyu, [*erase, "--reason", "ticket 7"])
    assert again.exit_code == 0
    assert "already_erased" in again.output

    with psycopg.connect(own_database) as conn:
        assert conn.execute("SELECT count(*) FROM segment.contacts").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM segment.identities").fetchone()[0] == 0
        queued = conn.execute(
            "SELECT topic, key, value IS NULL FROM segment.outbox ORDER BY id"
        ).fetchall()
        assert queued == [
            ("siyu.profiles.v1", f"acme:{contact}", True),  # the tombstone
            ("siyu.erasures.v1", f"acme:{contact}", False),
        ]
        actor, details = conn.execute(
            "SELECT actor, details FROM outreach.audit_log WHERE action = 'contact.erase'"
        ).fetchone()
    assert actor.startswith("cli:")
    assert details["reason"] == "ticket 7"
    assert details["via"] == "cli"
    assert details["identities"] == 1


def test_an_answer_to_a_request_made_before_the_erasure_does_not_bring_the_person_back(
    stack, schema
):
    """WeCom enrichment in flight during an erasure: its answer is fetched after the erasure,
    but answers a request made before it, so it is dropped like a replay. A contact added
    again after the erasure is a new person, enriched as usual."""
    from psycopg.rows import dict_row

    from services.segment.consumer import apply_batch
    from services.segment.enrichment import enriched_touchpoint
    from services.segment.erasure import erase_contact
    from services.segment.topics import Topics
    from shared.envelope import Identity, Touchpoint
    from shared.tenants import load_tenants

    tenants, topics = load_tenants(DEMO_TENANTS_PATH), Topics.with_prefix("")
    acme = tenants.get("acme")
    migrate_service(stack.dsn, "segment", schema=schema)
    before = datetime.now(UTC) - timedelta(minutes=5)
    detail = {"external_contact": {"external_userid": ERASED, "name": "李雷", "type": 1},
              "follow_user": [{"userid": "zhangwei", "createtime": 1}]}  # fmt: skip

    def added_at(at: datetime, event_id: str) -> Touchpoint:
        return Touchpoint(event_id=event_id, tenant_id="acme", source="wecom",
                          type="wecom.contact.added", occurred_at=at, received_at=at,
                          identity=Identity(external_userid=ERASED, staff_userid="zhangwei"))  # fmt: skip

    def names(conn) -> list:
        return [r["name"] for r in conn.execute("SELECT name FROM contacts").fetchall()]

    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}", row_factory=dict_row,
                         autocommit=True) as conn:  # fmt: skip
        apply_batch(conn, tenants, [added_at(before, "a" * 32)], topics)
        (row,) = conn.execute("SELECT contact_id FROM contacts").fetchall()
        with conn.transaction():
            erase_contact(conn, acme, row["contact_id"], actor="t", reason="r", topics=topics)
        late = enriched_touchpoint("acme", ERASED, detail, fetched_at=datetime.now(UTC),
                                   answers=before)  # fmt: skip
        apply_batch(conn, tenants, [late], topics)
        assert names(conn) == []

        again = datetime.now(UTC)
        apply_batch(conn, tenants, [added_at(again, "b" * 32)], topics)
        fresh = enriched_touchpoint("acme", ERASED, detail, fetched_at=datetime.now(UTC),
                                    answers=again)  # fmt: skip
        apply_batch(conn, tenants, [fresh], topics)
        assert names(conn) == ["李雷"]


def test_a_click_on_a_link_issued_before_the_erasure_does_not_bring_the_person_back(stack, schema):
    """Tracked links name their recipient (shared/links.py): a click after the erasure on a link
    sent before it is the erased person's (dropped, like a replay), not a new person. Back as
    new (they follow again), a link sent to them afterwards counts; an old one still does not.
    Signed as outreach signs, opened and turned into the click as ingest does."""
    from psycopg.rows import dict_row

    from services.ingest.links import click_touchpoint
    from services.segment.consumer import apply_batch
    from services.segment.erasure import erase_contact
    from services.segment.topics import Topics
    from shared.envelope import Identity, Touchpoint
    from shared.links import LinkSigner
    from shared.tenants import load_tenants

    tenants, topics = load_tenants(DEMO_TENANTS_PATH), Topics.with_prefix("")
    migrate_service(stack.dsn, "segment", schema=schema)
    openid = "oErasedReader01"
    before = datetime.now(UTC) - timedelta(minutes=5)

    def link(issued: datetime) -> str:
        signer = LinkSigner("test-link-secret-0123456789", tenants, clock=lambda: issued)
        return signer.sign(tenant_id="acme", url="https://acme.cn/wp", identity_kind="openid",
                           identity_value=openid, content_id="cnt_1", campaign_id="cmp_1")  # fmt: skip

    def click(token: str) -> Touchpoint:
        payload = LinkSigner("test-link-secret-0123456789", tenants).load(token)
        return click_touchpoint(token, payload, received_at=datetime.now(UTC), user_agent="t")

    def followed(at: datetime, event_id: str) -> Touchpoint:
        return Touchpoint(event_id=event_id, tenant_id="acme", source="wechat_oa",
                          type="oa.subscribe", occurred_at=at, received_at=at,
                          identity=Identity(openid=openid))  # fmt: skip

    def clicks(conn) -> list:
        return conn.execute("SELECT contact_id FROM events WHERE type = 'link.clicked'").fetchall()

    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}", row_factory=dict_row,
                         autocommit=True) as conn:  # fmt: skip
        apply_batch(conn, tenants, [followed(before, "a" * 32)], topics)
        old_link = link(before + timedelta(seconds=30))  # sent to them before the erasure
        (row,) = conn.execute("SELECT contact_id FROM contacts").fetchall()
        with conn.transaction():
            erased = erase_contact(conn, tenants.get("acme"), row["contact_id"], actor="t",
                                   reason="r", topics=topics)  # fmt: skip

        apply_batch(conn, tenants, [click(old_link)], topics)  # received after the erasure
        assert conn.execute("SELECT contact_id FROM contacts").fetchall() == []
        assert conn.execute("SELECT 1 FROM identities").fetchall() == []

        # They follow again: a new person. A link sent now counts; the old one still does not.
        again = erased.erased_at + timedelta(seconds=5)
        apply_batch(conn, tenants, [followed(again, "b" * 32)], topics)
        apply_batch(conn, tenants, [click(old_link)], topics)
        assert clicks(conn) == []
        apply_batch(conn, tenants, [click(link(again + timedelta(seconds=5)))], topics)
        assert [r["contact_id"] for r in clicks(conn)] == [row["contact_id"]]
