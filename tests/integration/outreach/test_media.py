"""Temporary media before a scheduled send (docs/platform.md "Temporary media"): an image given by
URL is uploaded with media/upload, its id reused while young, and uploaded again before it
would expire; the fake refuses an expired id with 40007 as WeCom does."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from services.outreach import media
from services.outreach.payloads import BadContent
from shared.wechat import WeComError

DAILY = {"schedule": {"cron": "0 10 * * *"}}


def sync_fake_clock(outreach) -> None:
    outreach.fake.state.offset = outreach.now.timestamp() - time.time()


def send_day(outreach) -> str:
    """The day's run; the media_id of the image its message carried."""
    sync_fake_clock(outreach)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    (delivery,) = outreach.sql(
        "SELECT status, reason FROM deliveries ORDER BY delivery_id DESC LIMIT 1"
    )
    assert delivery == {"status": "sent", "reason": None}
    image = outreach.messages("single")[-1].body["attachments"][0]
    assert image["msgtype"] == "image"
    return image["image"]["media_id"]


def test_an_image_by_url_is_uploaded_reused_and_refreshed_before_it_expires(outreach):
    ext, _ = outreach.customers(1)[0]
    outreach.profile("c_1", ext=ext, segments=["all"])
    source = outreach.fake.base_url.split("/wecom")[0] + "/_fake/image.png"
    body = {"title": "新品图", "format": "whitepaper",
            "payloads": {"wecom": {"text": "看图", "attachments": [
                {"msgtype": "image", "image": {"url": source}}]}}}  # fmt: skip
    created = outreach.call("POST", "/content", "operator", json=body)
    assert created.status_code == 201, created.json
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": created.json["content_id"]}, trigger=DAILY)  # fmt: skip
    first = send_day(outreach)
    (stored,) = outreach.sql("SELECT source_url, media_id FROM wecom_media")
    assert stored == {"source_url": source, "media_id": first}
    # Two days on: still young, the same id.
    outreach.now += timedelta(days=2)
    assert send_day(outreach) == first
    # Three days after the upload the id has expired: WeCom (the fake) refuses it...
    outreach.now += timedelta(days=1, minutes=1)
    sync_fake_clock(outreach)
    client = outreach.clients.wecom("acme")
    with pytest.raises(WeComError) as refused:
        client.add_msg_template({"chat_type": "single", "external_userid": [ext],
                                 "attachments": [{"msgtype": "image",
                                                  "image": {"media_id": first}}]})  # fmt: skip
    assert refused.value.errcode == 40007
    # ...but the run uploaded it again before using it, and the send went out.
    second = send_day(outreach)
    assert second != first
    (stored,) = outreach.sql("SELECT media_id FROM wecom_media")
    assert stored["media_id"] == second


def test_an_unknown_media_id_is_refused_by_the_fake(outreach):
    ext, _ = outreach.customers(1)[0]
    sync_fake_clock(outreach)
    with pytest.raises(WeComError) as refused:
        outreach.clients.wecom("acme").add_msg_template(
            {"chat_type": "single", "external_userid": [ext],
             "attachments": [{"msgtype": "image", "image": {"media_id": "MEDIA_ID"}}]}
        )  # fmt: skip
    assert refused.value.errcode == 40007


def test_the_image_is_downloaded_before_any_delivery_is_marked_sending(outreach, monkeypatch):
    """A slow image server holds no delivery in flight (a lease lapsing meanwhile would make
    them ``unknown``); an image that cannot be had fails the deliveries that would carry it."""
    ext, _ = outreach.customers(1)[0]
    outreach.profile("c_1", ext=ext, segments=["all"])
    body = {"title": "图", "format": "whitepaper",
            "payloads": {"wecom": {"attachments": [
                {"msgtype": "image", "image": {"url": "https://images.example/a.png"}}]}}}  # fmt: skip
    created = outreach.call("POST", "/content", "operator", json=body)
    assert created.status_code == 201, created.json
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": created.json["content_id"]}, trigger=DAILY)  # fmt: skip
    seen = []

    def slow_server(url):
        seen.append(outreach.sql("SELECT status FROM deliveries"))
        raise BadContent("the image took over 30 s to download")

    monkeypatch.setattr(media, "fetcher", lambda allow_private: slow_server)
    sync_fake_clock(outreach)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert seen == [[{"status": "pending"}]]  # downloaded once, nothing in flight meanwhile
    (delivery,) = outreach.sql("SELECT status, reason FROM deliveries")
    assert delivery == {"status": "failed", "reason": "the image took over 30 s to download"}


def test_content_refuses_an_image_by_media_id(outreach):
    body = {"title": "图", "format": "whitepaper", "payloads": {"wecom": {"attachments": [
        {"msgtype": "image", "image": {"media_id": "3a8asd892asd8"}}]}}}  # fmt: skip
    refused = outreach.call("POST", "/content", "operator", json=body)
    assert refused.status_code == 400
    assert "give the image's https url instead" in str(refused.json)
