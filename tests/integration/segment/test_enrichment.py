"""WeCom contact enrichment: queue in the consumer's transaction, fetch beside it, publish,
apply the detail like any touchpoint (real Postgres and broker; WeCom is the fake API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.segment import enrichment
from services.segment.enrichment import Enricher, enriched_touchpoint
from shared.kafka.topics import TOUCHPOINTS
from tests.fake_wecom import FakeWeCom
from tests.integration.segment.test_consumer import TENANTS, Segment, send, tp
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

CORP = "ww1234567890abcdef"  # acme's corp in the demo tenants
SECRET = "acme-wecom-secret-for-tests"
LI, WANG, GONE = "wmLiGong0001", "wmWangZong01", "wmGone000001"


def _tag(group: str, name: str) -> dict:
    return {"group_name": group, "tag_name": name, "type": 1, "tag_id": f"et-{group}-{name}"}


LI_FOLLOW = [
    {"userid": "zhangwei", "remark": "李工-精工", "createtime": 1790000000, "add_way": 1,
     "state": "expo2026", "remark_mobiles": ["13800000000"],
     "tags": [_tag("角色", "技术"), _tag("行业", "机械")]},
    {"userid": "lina", "remark": "", "createtime": 1790000500, "add_way": 3,
     "tags": [_tag("意向", "高")]},
]  # fmt: skip
WANG_FOLLOW = [{"userid": "zhangwei", "createtime": 1790000100, "tags": []}]


@pytest.fixture
def double(monkeypatch):
    """The fake WeCom API (sandbox.fake_wechat) with two contacts of ours."""
    monkeypatch.setenv("ACME_WECOM_SECRET", SECRET)
    d = FakeWeCom(TENANTS, {"ACME_WECOM_SECRET": SECRET})
    d.add_contact(CORP, LI, LI_FOLLOW, name="李工", type=2, unionid="uLi", position="采购经理",
                  corp_name="苏州精工机械有限公司")  # fmt: skip
    d.add_contact(CORP, WANG, WANG_FOLLOW, name="王总", type=2, position="财务总监",
                  corp_name="苏州精工机械有限公司")  # fmt: skip
    with d:
        yield d


@pytest.fixture
def enricher(segment, kafka, double, monkeypatch):
    monkeypatch.delenv("BLOOM_WECOM_SECRET", raising=False)
    e = Enricher(segment.pool, TENANTS, kafka, api_base=double.base_url, rate=1000, max_attempts=2)
    yield e
    e.stop()


def queue(segment) -> dict[str, dict]:
    rows = segment.rows(
        "SELECT external_userid, attempts, next_attempt_at, last_error, requested_at "
        "FROM enrichment_queue ORDER BY 1"
    )
    keys = ("attempts", "next_attempt_at", "last_error", "requested_at")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def make_due(segment) -> None:
    with psycopg.connect(segment.dsn, options=f"-c search_path={segment.schema}") as conn:
        conn.execute(
            "UPDATE enrichment_queue SET next_attempt_at = now() WHERE next_attempt_at IS NOT NULL"
        )


def enqueue(segment, external_userid: str, at: datetime) -> None:
    with segment.pool.connection() as conn, conn.transaction():
        enrichment.enqueue(conn, "acme", external_userid, at, delay=timedelta(0))


def test_added_contact_is_enriched_merged_tagged_and_given_a_role(
    stack, kafka, segment, enricher, double, unique
):
    assert sorted(enricher.clients) == ["acme"]  # bloom has no secret here: skipped
    journey = [
        tp(1, "oa.subscribe", openid="oLi", unionid="uLi"),  # the same person on the OA
        tp(2, "wecom.contact.added", minutes=5, external_userid=LI, staff_userid="zhangwei",
           attributes={"state": "expo2026"}),
        tp(3, "wecom.contact.added", minutes=6, external_userid=WANG, staff_userid="zhangwei"),
    ]  # fmt: skip
    send(kafka, journey)
    with RunnerThread(segment.runner("live")):
        wait_until(lambda: segment.count("events") == 3, message="3 events applied")
        # The consumer queued both contacts in its own transaction, and called nobody.
        assert sorted(queue(segment)) == [LI, WANG]
        assert double.calls == []

        make_due(segment)
        outcomes = enricher.run_once()
        assert [(o.claim.external_userid, o.status) for o in outcomes] == [
            (LI, "enriched"),
            (WANG, "enriched"),
        ]
        assert queue(segment) == {}
        wait_until(
            lambda: (
                segment.rows("SELECT count(*) FROM contacts WHERE tags <> '{}'")[0][0] == 1
                and segment.rows("SELECT count(*) FROM contacts WHERE name = '王总'")[0][0] == 1
            ),
            message="the enriched touchpoints applied",
        )
        wait_until(lambda: segment.count("outbox") == 0)
    records = [json.loads(r.value) for r in read_topic(kafka, kafka.topic(TOUCHPOINTS), 5)]
    enriched = [r for r in records if r["type"] == "wecom.contact.enriched"]
    assert len(enriched) == 2
    li_tp = next(r for r in enriched if r["identity"]["external_userid"] == LI)
    assert li_tp["source"] == "wecom"
    assert li_tp["identity"]["unionid"] == "uLi"
    assert li_tp["identity"]["staff_userid"] == "zhangwei"
    assert li_tp["attributes"]["tags"] == ["意向:高", "行业:机械", "角色:技术"]
    assert li_tp["attributes"]["position"] == "采购经理"
    assert li_tp["attributes"]["company"] == "苏州精工机械有限公司"
    assert [f["userid"] for f in li_tp["attributes"]["follow_users"]] == ["zhangwei", "lina"]
    assert "13800000000" not in json.dumps(li_tp, ensure_ascii=False)  # no phone numbers

    # The OA follower and the WeCom contact were one person: merged through the unionid.
    (li,) = segment.rows("SELECT contact_id FROM identities WHERE value = 'uLi'")[0]
    kinds = segment.rows("SELECT kind, value FROM identities WHERE contact_id = %s ORDER BY 1", li)
    assert kinds == [("external_userid", LI), ("openid", "oLi"), ("unionid", "uLi")]
    assert segment.count("contact_merges") >= 1
    (row,) = segment.rows(
        "SELECT name, title, corp_name, tags, role, role_source, account_id FROM contacts "
        "WHERE contact_id = %s",
        li,
    )
    assert row[:4] == (
        "李工",
        "采购经理",
        "苏州精工机械有限公司",
        ["意向:高", "行业:机械", "角色:技术"],
    )
    assert row[4:6] == ("technical", "tag")  # the staff tag wins over the title (procurement)
    (wang,) = segment.rows(
        "SELECT title, role, role_source, account_id FROM contacts WHERE name = '王总'"
    )
    assert wang[:3] == ("财务总监", "finance", "title")
    assert row[6] is not None
    assert row[6] == wang[3]  # one account from corp_name
    assert segment.count("accounts") == 1
    assert segment.count("contacts") == 2

    # Replay into an empty schema: the same state, and WeCom is not called again (each queued
    # request is answered by the enriched touchpoint that follows it in the topic).
    live = segment.state()
    calls = len(double.calls)
    replay = Segment(stack, kafka, f"t_{unique}_replay")
    try:
        with RunnerThread(replay.runner("replay")):
            wait_until(lambda: replay.count("events") == segment.count("events"))
            wait_until(lambda: replay.count("enrichment_queue") == 0)
        assert replay.state() == live
        assert len(double.calls) == calls
    finally:
        replay.pool.close()
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "t_{unique}_replay" CASCADE')


def test_enriched_touchpoint_does_not_queue_and_identical_detail_dedupes(kafka, segment, double):
    detail = {
        "external_contact": double.world(CORP).contacts[LI].external_contact,
        "follow_user": LI_FOLLOW,
    }
    t1 = datetime(2026, 11, 3, tzinfo=UTC)
    first = enriched_touchpoint("acme", LI, detail, fetched_at=t1, answers=t1)
    # Fetched again for the same request (the worker crashed before dequeuing): one event.
    again = enriched_touchpoint("acme", LI, detail, fetched_at=t1 + timedelta(hours=1), answers=t1)
    assert again.event_id == first.event_id
    retagged = json.loads(json.dumps(detail))
    retagged["follow_user"][1]["tags"] = [_tag("意向", "低")]
    t2 = t1 + timedelta(hours=2)
    later = enriched_touchpoint("acme", LI, retagged, fetched_at=t2, answers=t2)
    assert later.event_id != first.event_id
    send(kafka, [later, first, again])  # out of order: the latest tag set still wins
    with RunnerThread(segment.runner("g")):
        wait_until(lambda: segment.count("events") == 2)
        assert segment.count("enrichment_queue") == 0
        (tags,) = segment.rows("SELECT tags FROM contacts")[0]
        assert tags == ["意向:低", "行业:机械", "角色:技术"]

        # Staff put the old tags back: the same detail as the first answer, for a new request.
        t3 = t1 + timedelta(hours=3)
        back = enriched_touchpoint("acme", LI, detail, fetched_at=t3, answers=t3)
        assert back.event_id != first.event_id
        send(kafka, [back])
        wait_until(lambda: segment.count("events") == 3)
        wait_until(lambda: segment.rows("SELECT tags FROM contacts")[0][0] != tags)
    (tags,) = segment.rows("SELECT tags FROM contacts")[0]
    assert tags == ["意向:高", "行业:机械", "角色:技术"]  # A -> B -> A ends on A


def test_rate_limited_is_rescheduled_not_lost(segment, enricher, double):
    double.fail("externalcontact/get", 45009)
    enqueue(segment, LI, datetime(2026, 11, 3, tzinfo=UTC))
    (outcome,) = enricher.run_once()
    assert outcome.status == "retry"
    row = queue(segment)[LI]
    assert row["attempts"] == 1
    assert "45009" in row["last_error"]
    assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=60)  # minutes
    make_due(segment)
    assert enricher.run_once() == []  # the corp is paused while WeCom's limit lasts
    assert double.count("externalcontact/get") == 1
    enricher._paused_until.clear()  # the pause is over
    (outcome,) = enricher.run_once()
    assert outcome.status == "enriched"
    assert queue(segment) == {}


def test_busy_and_timeouts_are_rescheduled(segment, enricher, double):
    double.fail("externalcontact/get", -1, -1, -1)
    enqueue(segment, LI, datetime(2026, 11, 3, tzinfo=UTC))
    (outcome,) = enricher.run_once()
    assert outcome.status == "retry"
    assert "-1" in queue(segment)[LI]["last_error"]
    double.delays["externalcontact/get"] = 1.5
    enricher.clients["acme"].timeout = 0.3
    make_due(segment)
    (outcome,) = enricher.run_once()
    assert outcome.status == "retry"
    row = queue(segment)[LI]
    assert row["attempts"] == 2
    assert "timeout" in row["last_error"]
    assert row["next_attempt_at"] is not None  # transient errors never give up


def test_not_a_contact_is_recorded_then_given_up(segment, enricher, double):
    requested = datetime(2026, 11, 3, tzinfo=UTC)
    enqueue(segment, GONE, requested)
    (outcome,) = enricher.run_once()
    assert outcome.status == "retry"
    assert "84061" in queue(segment)[GONE]["last_error"]
    make_due(segment)
    (outcome,) = enricher.run_once()
    assert outcome.status == "gave_up"  # max_attempts=2
    row = queue(segment)[GONE]
    assert row["attempts"] == 2
    assert row["next_attempt_at"] is None
    assert "84061" in row["last_error"]
    assert enricher.run_once() == []
    # A newer event about the contact revives the request.
    enqueue(segment, GONE, requested + timedelta(days=1))
    row = queue(segment)[GONE]
    assert row["attempts"] == 0
    assert row["last_error"] is None
    assert row["next_attempt_at"]


def test_the_worker_thread_runs_beside_the_consumer(kafka, segment, enricher, double):
    double.delays["externalcontact/get"] = 1.0  # a slow WeCom
    enricher.interval = 0.1
    send(kafka, [tp(1, "wecom.contact.added", external_userid=LI, staff_userid="zhangwei")])
    with RunnerThread(segment.runner("g")):
        wait_until(lambda: segment.count("events") == 1)
        enricher.start()
        make_due(segment)
        # Meanwhile the partition keeps flowing.
        send(kafka, [tp(2, "oa.subscribe", openid="oOther")])
        wait_until(lambda: segment.count("events") == 2, timeout=5)
        wait_until(lambda: segment.rows("SELECT count(*) FROM contacts WHERE name = '李工'")[0][0])
    enricher.stop()
    assert queue(segment) == {}
