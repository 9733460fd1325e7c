"""Attribution end to end (docs/domain.md "Channel codes"): signed WeCom add callbacks carrying a
channel code's State -> ingest -> Kafka -> segment -> the contact's first and latest source
channel, the same after a redelivered callback and after a late one (event time decides)."""

from __future__ import annotations

from tests.integration.segment.test_journeys_e2e import NOW, pipeline  # noqa: F401 - fixture
from tests.kafka_helpers import wait_until


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
