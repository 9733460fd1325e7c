"""Schema validators under partial loading (PATCH bodies): a field left out is a value a
validator must not assume, so a careless PATCH is a 400, never a 500 (issue 13, item 2)."""

from __future__ import annotations

import pytest

CONTENT = {"title": "白皮书", "format": "whitepaper", "payloads": {"wecom": {"text": "本周"}}}


@pytest.mark.parametrize(
    "payloads",
    [
        # the body of the issue: msgtype left out of oa_custom, empty bodies
        {"oa_mass": {"media_id": "", "msgtype": "text", "text": ""},
         "oa_custom": {"news": {}, "text": ""}},
        {"oa_mass": {"text": "hi"}},
        {"oa_custom": {"text": "hi"}},
        {"wecom": {"attachments": [{"link": {"title": "t", "url": "https://x.example"}}]}},
        {"oa_template": {"url": "https://x.example"}},
    ],
)  # fmt: skip
def test_a_patch_with_incomplete_payloads_is_a_400(api, payloads):
    created = api.call("POST", "/content", "operator", json=CONTENT)
    assert created.status_code == 201, created.json
    content_id, payloads_before = created.json["content_id"], created.json["payloads"]
    response = api.call("PATCH", f"/content/{content_id}", "operator", json={"payloads": payloads})
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_request"
    assert "payloads" in response.json["error"]["details"]["json"]
    # nothing was stored
    stored = api.call("GET", f"/content/{content_id}", "viewer").json
    assert stored["payloads"] == payloads_before


def test_a_patch_of_one_field_keeps_the_others(api):
    created = api.call("POST", "/content", "operator", json=CONTENT).json
    response = api.call(
        "PATCH", f"/content/{created['content_id']}", "operator", json={"title": "新标题"}
    )
    assert response.status_code == 200, response.json
    assert response.json["title"] == "新标题"
    assert response.json["payloads"] == created["payloads"]


def test_a_patch_of_the_audience_alone_is_judged_with_the_stored_channel(api):
    oa = {"title": "月报", "format": "article",
          "payloads": {"oa_mass": {"msgtype": "text", "text": "本月"}}}  # fmt: skip
    item = api.call("POST", "/content", "operator", json=oa).json["content_id"]
    campaign = api.call("POST", "/campaigns", "operator", json={
        "name": "月报", "channel": "oa_mass", "audience": {"oa_tag_id": 2},
        "content": {"item": item}, "trigger": {"schedule": {"cron": "0 10 1 * *"}},
    })  # fmt: skip
    assert campaign.status_code == 201, campaign.json
    path = f"/campaigns/{campaign.json['campaign_id']}"
    response = api.call("PATCH", path, "operator", json={"audience": {"oa_tag_id": 3}})
    assert response.status_code == 200, response.json
    assert response.json["audience"] == {"oa_tag_id": 3}
    response = api.call("PATCH", path, "operator", json={"channel": "wecom_group"})
    assert response.status_code == 400, response.json
