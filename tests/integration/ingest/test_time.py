"""Event times from the future: business events are refused per item, platform callbacks (which
must never fail) are dated when they were received, keeping the platform's CreateTime."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.ingest.conftest import CORP
from tests.integration.ingest.test_events_links_outbox import event, post
from tests.kafka_helpers import read_topic

YEAR_2030 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


def iso(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


def envelopes(ingest, expected: int) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(ingest.kafka, ingest.topic, expected)]


def test_business_events_from_the_future_are_refused_per_item(ingest):
    far = {**event("far"), "occurred_at": "2030-01-01T00:00:00+08:00"}
    soon = {**event("soon"), "occurred_at": iso(600)}  # 10 minutes ahead: beyond the skew
    response = post(ingest, {"events": [event("ok"), far, soon]})
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_events"
    assert set(error["details"]["events"]) == {"1", "2"}
    for index in ("1", "2"):
        (message,) = error["details"]["events"][index]["occurred_at"]
        assert message.startswith("occurred_in_future:"), message
        assert "300 s" in message
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_business_events_within_the_clock_skew_are_accepted(ingest):
    response = post(ingest, {"events": [{**event("skewed"), "occurred_at": iso(240)}]})
    assert response.status_code == 200, response.json
    (got,) = envelopes(ingest, 1)
    assert datetime.fromisoformat(got["occurred_at"]) > datetime.now(UTC)  # kept as sent


def oa_event(create_time: int, user: str = "oFuture000000000000000000001") -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_acme]]></ToUserName><FromUserName><![CDATA[{user}]]>"
        f"</FromUserName><CreateTime>{create_time}</CreateTime><MsgType>event</MsgType>"
        "<Event>subscribe</Event></xml>"
    )


def wecom_event(create_time: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
        "<UserID>zhangwei</UserID><ExternalUserID>wmFuture0000000000000000000001</ExternalUserID>"
        "</xml>"
    )


@pytest.mark.parametrize("channel", ["oa", "wecom"])
def test_callbacks_from_the_future_are_dated_on_receipt_and_keep_create_time(ingest, channel):
    send = (
        (lambda t: ingest.oa_post(oa_event(t), aes=True))
        if channel == "oa"
        else (lambda t: ingest.wecom_post(wecom_event(t)))
    )
    before = datetime.now(UTC)
    for _ in range(2):  # the platform's retry: the same event id, never a failure
        response = send(YEAR_2030)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_data(as_text=True) == "success"
    first, retry = envelopes(ingest, 2)
    assert first["event_id"] == retry["event_id"]
    occurred = datetime.fromisoformat(first["occurred_at"])
    assert before - timedelta(seconds=1) <= occurred <= datetime.now(UTC)
    assert first["occurred_at"] == first["received_at"]
    assert first["attributes"]["create_time"] == YEAR_2030
    assert f"<CreateTime>{YEAR_2030}</CreateTime>" in ingest.raw(first)


def test_callbacks_within_the_skew_keep_their_create_time(ingest):
    ahead = int(time.time()) + 120
    assert ingest.oa_post(oa_event(ahead)).status_code == 200
    (got,) = envelopes(ingest, 1)
    assert datetime.fromisoformat(got["occurred_at"]).timestamp() == ahead
    assert "create_time" not in got["attributes"]
