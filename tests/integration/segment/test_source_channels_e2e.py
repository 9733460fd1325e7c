"""Attribution end to end (docs/domain.md "Channel codes"): signed WeCom add callbacks carrying a
channel code's State -> ingest -> Kafka -> segment -> the contact's first and latest source
channel, the same after a redelivered callback and after a late one (event time decides); and a
group join through a join code, attributed from the member's groupchat/get state."""

from __future__ import annotations

import psycopg
import requests

from services.segment.enrichment import Enricher
from shared.wechat.wecom import WeComClient
from tests.fake_wecom import FakeWeCom
from tests.integration.segment.test_consumer import TENANTS
from tests.integration.segment.test_journeys_e2e import NOW, pipeline  # noqa: F401 - fixture
from tests.kafka_helpers import wait_until

CORP = "ww1234567890abcdef"  # acme's corp in the demo tenants
SECRET = "acme-wecom-secret-for-tests"
CHAT = "wrJoinCodeExpo01"


def added(staff: str, state: str, minutes: int) -> str:
    return (
        f"<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{NOW + minutes * 60}</CreateTime><MsgType>event</MsgType>"
        "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
        f"<UserID>{staff}</UserID><ExternalUserID>wmChannelLi</ExternalUserID>"
        f"<State>{state}</State></xml>"
    )


def channels(segment):
    rows = segment.rows("SELECT first_channel, latest_channel FROM contacts")
    return rows[0] if rows else None


def test_a_contact_keeps_its_first_and_latest_channel(pipeline):  # noqa: F811
    ingest, segment = pipeline
    assert ingest.wecom_post(added("zhangwei", "expo.abcdefghij", 0)).status_code == 200
    wait_until(lambda: channels(segment) == ("expo", "expo"), message=lambda: channels(segment))
    assert ingest.wecom_post(added("lina", "ad.abcdefghij", 20)).status_code == 200
    wait_until(lambda: channels(segment) == ("expo", "ad"), message=lambda: channels(segment))
    # Redelivered, and a late add older than both (another staff member, 10 minutes before):
    # the earliest evidence is the first channel, whatever the arrival order.
    assert ingest.wecom_post(added("lina", "ad.abcdefghij", 20)).status_code == 200
    assert ingest.wecom_post(added("wangfang", "event.abcdefghij", -10)).status_code == 200
    wait_until(lambda: channels(segment) == ("event", "ad"), message=lambda: channels(segment))


def _xml(fields: dict) -> str:
    """The callback fields the fake answers, as WeCom's XML (a list as its ``<Item>``s)."""
    parts = []
    for name, value in fields.items():
        inner = "".join(f"<Item>{v}</Item>" for v in value) if isinstance(value, list) else value
        parts.append(f"<{name}>{inner}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def test_a_group_join_through_a_join_code_is_attributed(pipeline, kafka, monkeypatch):  # noqa: F811
    """A join code's group join -> the change_external_chat callback (no state) -> ingest ->
    segment queues the member -> the Enricher reads groupchat/get (the fake) -> a
    wecom.chat.member_enriched touchpoint -> the contact's first channel is the code's."""
    ingest, segment = pipeline
    monkeypatch.setenv("ACME_WECOM_SECRET", SECRET)
    monkeypatch.delenv("BLOOM_WECOM_SECRET", raising=False)
    with FakeWeCom(TENANTS, {"ACME_WECOM_SECRET": SECRET}) as double:
        double.add_chat(CORP, CHAT, {
            "chat_id": CHAT, "name": "展会群", "owner": "zhangwei", "create_time": NOW,
            "member_list": [{"userid": "zhangwei", "type": 1, "join_time": NOW, "join_scene": 1}],
        })  # fmt: skip
        client = WeComClient(CORP, SECRET, api_base=double.base_url, rate=1000, tenant="acme")
        config_id = client.add_join_way(
            {"scene": 2, "chat_id_list": [CHAT], "state": "expo.abcdefghij"}
        )["config_id"]
        root = double.base_url.split("/wecom/cgi-bin")[0]
        answer = requests.post(
            f"{root}/_fake/channel-codes/add",
            json={"corpid": CORP, "config_id": config_id, "external_userid": "wmJoinLi"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        assert ingest.wecom_post(_xml(answer.json()["callback"])).status_code == 200

        joins = "SELECT chat_id, external_userid FROM chat_join_queue"
        wait_until(lambda: segment.rows(joins) == [(CHAT, "wmJoinLi")], message="join queued")
        assert channels(segment) == (None, None)  # the callback carries no state
        with psycopg.connect(segment.dsn, options=f"-c search_path={segment.schema}") as conn:
            conn.execute("UPDATE chat_join_queue SET next_attempt_at = now()")
        enricher = Enricher(segment.pool, TENANTS, kafka, api_base=double.base_url, rate=1000)
        try:
            outcomes = enricher.run_once()
        finally:
            enricher.stop()
        assert [(o.claim.chat_id, o.status) for o in outcomes] == [(CHAT, "enriched")]
        assert double.count("externalcontact/groupchat/get") == 1
    wait_until(lambda: channels(segment) == ("expo", "expo"), message=lambda: channels(segment))
    wait_until(lambda: segment.rows(joins) == [], message="the enriched join satisfied")
