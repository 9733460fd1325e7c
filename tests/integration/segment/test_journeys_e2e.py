"""Journeys end to end: HTTP webhooks and business events -> ingest -> Kafka -> segment -> Postgres.

A B2B buying committee whose account moves Interest -> Comparison -> Action with its roles
covered, and a B2C shopper from follow to first order.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.ingest.tokens import create_token
from tests.integration.ingest.conftest import TENANTS, build, with_oas
from tests.integration.segment.test_consumer import Segment
from tests.kafka_helpers import RunnerThread, wait_until

# An hour ago: the journeys' events run up to 30 minutes later, and ingest refuses event times
# more than 5 minutes ahead of its clock (services/ingest/event_time.py).
NOW = int(time.time()) - 3600
COMPANY = "苏州精工机械有限公司"


@pytest.fixture
def pipeline(stack, kafka, schema, unique):
    ingest = build(stack, kafka, schema)
    segment = Segment(stack, kafka, f"t_{unique}_seg")
    runner = RunnerThread(segment.runner("segment-e2e"))
    runner.__enter__()
    yield ingest, segment
    runner.stop()
    segment.pool.close()
    ingest.deps.publisher.close()
    ingest.deps.publisher.pool.close()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "t_{unique}_seg" CASCADE')


def at(minutes: int) -> str:
    return (datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=minutes)).isoformat()


def biz(ingest, token: str, key: str, type_: str, minutes: int, identity: dict, **attributes):
    body = {
        "idempotency_key": key,
        "type": type_,
        "occurred_at": at(minutes),
        "identity": identity,
        "attributes": attributes,
    }
    response = ingest.client.post(
        "/api/v1/events", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.json


def account_stage(segment) -> str | None:
    rows = segment.rows("SELECT stage FROM accounts")
    return rows[0][0] if rows else None


def test_b2b_committee_moves_interest_comparison_action(pipeline):
    ingest, segment = pipeline
    token = ingest.token
    li = {"crm_id": "C-7", "account_key": COMPANY}

    added = (
        f"<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>{NOW}</CreateTime>"
        "<MsgType>event</MsgType><Event>change_external_contact</Event>"
        "<ChangeType>add_external_contact</ChangeType><UserID>zhangwei</UserID>"
        "<ExternalUserID>wmLi</ExternalUserID><State>expo</State></xml>"
    )
    assert ingest.wecom_post(added).status_code == 200
    biz(
        ingest,
        token,
        "crm-li",
        "biz.contact.updated",
        1,
        {**li, "external_userid": "wmLi"},
        name="李工",
        title="IT经理",
        company=COMPANY,
    )
    biz(
        ingest,
        token,
        "crm-wang",
        "biz.contact.updated",
        2,
        {"crm_id": "C-8", "account_key": COMPANY},
        name="王总",
        title="总经理",
        company=COMPANY,
    )
    biz(
        ingest,
        token,
        "crm-zhao",
        "biz.contact.updated",
        3,
        {"crm_id": "C-9", "account_key": COMPANY},
        name="赵经理",
        title="采购经理",
        company=COMPANY,
    )
    biz(
        ingest, token, "dl-1", "biz.content.downloaded", 10, li, title="白皮书", format="whitepaper"
    )
    biz(
        ingest,
        token,
        "dl-2",
        "biz.content.downloaded",
        11,
        li,
        title="行业报告",
        format="industry_report",
    )
    wait_until(lambda: account_stage(segment) == "interest", message="account in interest")

    biz(
        ingest,
        token,
        "web-1",
        "biz.webinar.attended",
        20,
        {"crm_id": "C-9", "account_key": COMPANY},
        title="OEE提升的五个抓手",
    )
    wait_until(lambda: account_stage(segment) == "comparison", message="account in comparison")

    biz(
        ingest,
        token,
        "order-1",
        "biz.order.paid",
        30,
        {"crm_id": "C-8", "account_key": COMPANY},
        amount=380000,
        currency="CNY",
    )
    wait_until(lambda: account_stage(segment) == "action", message="account in action")

    moves = [
        r[0]
        for r in segment.rows(
            "SELECT to_stage FROM stage_history WHERE subject_kind = 'account' ORDER BY changed_at, id"
        )
    ]
    assert moves.index("interest") < moves.index("comparison") < moves.index("action")
    roles = dict(segment.rows("SELECT name, role FROM contacts WHERE name IS NOT NULL"))
    assert roles == {"李工": "technical", "王总": "decision_maker", "赵经理": "procurement"}
    (engaged,) = segment.rows("SELECT roles_engaged FROM accounts")[0]
    assert set(engaged) == {"technical", "decision_maker", "procurement"}
    # The WeCom contact and the CRM record are one person (linked by external_userid).
    (li_row,) = segment.rows(
        "SELECT c.events_count FROM contacts c JOIN identities i USING (tenant_id, contact_id) "
        "WHERE i.value = 'wmLi'"
    )
    assert li_row[0] == 4  # added, profile, two downloads


def test_b2c_shopper_from_follow_to_first_order(pipeline, stack):
    ingest, segment = pipeline
    # Plaintext callbacks, which an OA with an EncodingAESKey takes only when allowed.
    ingest.deps.tenants = with_oas(TENANTS, plaintext_allowed=True)
    bloom = TENANTS.get("bloom").wechat_oa[0]
    token = create_token(stack.dsn, "bloom", "e2e", schema=ingest.schema)

    def oa(body: str, second: int):
        ts, nonce = str(int(time.time())), f"b{second}"
        sig = hashlib.sha1("".join(sorted([bloom.token.reveal(), ts, nonce])).encode()).hexdigest()  # noqa: S324
        xml = (
            f"<xml><ToUserName>gh_bloom</ToUserName><FromUserName>oMei</FromUserName>"
            f"<CreateTime>{NOW + second}</CreateTime>{body}</xml>"
        )
        response = ingest.client.post(
            f"/wechat/oa/{bloom.app_id}", query_string={"signature": sig, "timestamp": ts, "nonce": nonce},
            data=xml, headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        assert response.status_code == 200

    oa("<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_store_sh01</EventKey>", 0)
    oa("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>NEW_TEA</EventKey>", 60)
    oa("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>MENU</EventKey>", 120)
    biz(
        ingest,
        token,
        "o-mei-1",
        "biz.order.paid",
        5,
        {"openid": "oMei"},
        amount=88.0,
        currency="CNY",
    )

    def stage():
        rows = segment.rows("SELECT stage, behaviour, score FROM contacts")
        return rows[0] if rows and rows[0][0] == "revenue" else None

    _stage, kinds, score = wait_until(stage, message="shopper reaches revenue")
    assert "new" in kinds
    assert score > 0
    assert (
        next(
            r[0] for r in segment.rows("SELECT to_stage FROM stage_history ORDER BY changed_at, id")
        )
        == "acquisition"
    )
