"""Issue 18, item 6: OA template messages carry service notices only (docs/platform.md "OA
template messages: service notices only"). A campaign on ``oa_template`` whose item or series
holds a promotion or a format that is not a notice is refused when created, changed or launched;
an edit turning an item an active one sends into marketing is refused; a notice goes out."""

from __future__ import annotations

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}
RULE = "oa_template carries service notices only (the platform forbids marketing there)"


def _body(content: dict, channel: str = "oa_template") -> dict:
    return {"name": "通知", "channel": channel, "audience": {"stages": ["interest"]},
            "content": content, "trigger": WEEKLY}  # fmt: skip


def _refused(response, *names: str) -> str:
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "oa_template_not_notice"
    assert error["message"].startswith(RULE)
    for name in names:
        assert name in error["message"]
    return error["message"]


def test_a_promotion_or_content_on_oa_template_is_refused_naming_the_channels_to_use(outreach):
    promotion = outreach.content("双十一优惠", fmt="promotion")
    whitepaper = outreach.content()
    offer = outreach.content("预约提醒（附优惠券）", fmt="service_notice", promotional=True)
    notice = outreach.content("预约提醒", fmt="service_notice")
    for item in (promotion, whitepaper, offer):
        message = _refused(outreach.call("POST", "/campaigns", "operator",
                                         json=_body({"item": item})), item)  # fmt: skip
        assert "wecom_single or wecom_group" in message and "oa_mass" in message
    # A series is refused for the items that are not notices, and names only those.
    message = _refused(
        outreach.call("POST", "/campaigns", "operator",
                      json=_body({"series": [notice, whitepaper, notice]})),
        whitepaper,
    )  # fmt: skip
    assert notice not in message
    assert outreach.sql("SELECT count(*) AS n FROM campaigns")[0]["n"] == 0
    # The same content on a WeCom channel is fine.
    wecom = outreach.call("POST", "/campaigns", "operator",
                          json=_body({"item": promotion}, "wecom_single"))  # fmt: skip
    assert wecom.status_code == 201, wecom.json


def test_a_notice_is_accepted_and_launched(outreach):
    notice = outreach.content("预约提醒", fmt="service_notice")
    campaign = outreach.campaign(**_body({"item": notice}))
    (row,) = outreach.sql("SELECT status, channel FROM campaigns WHERE campaign_id = %s",
                          (campaign,))  # fmt: skip
    assert row == {"status": "active", "channel": "oa_template"}


def test_a_change_onto_oa_template_or_to_marketing_content_is_refused(outreach):
    whitepaper = outreach.content()
    notice = outreach.content("预约提醒", fmt="service_notice")
    draft = outreach.campaign(launch=False, **_body({"item": whitepaper}, "wecom_single"))
    _refused(outreach.call("PATCH", f"/campaigns/{draft}", "operator",
                           json={"channel": "oa_template"}), whitepaper)  # fmt: skip
    notices = outreach.campaign(launch=False, **_body({"item": notice}))
    _refused(outreach.call("PATCH", f"/campaigns/{notices}", "operator",
                           json={"content": {"series": [notice, whitepaper]}}), whitepaper)  # fmt: skip
    stored = outreach.sql("SELECT campaign_id, channel, content FROM campaigns "
                          "ORDER BY campaign_id")  # fmt: skip
    assert {r["campaign_id"]: (r["channel"], r["content"]) for r in stored} == {
        draft: ("wecom_single", {"item": whitepaper}),
        notices: ("oa_template", {"item": notice}),
    }


def test_an_item_an_active_campaign_sends_stays_a_notice_until_the_campaign_is_paused(outreach):
    notice = outreach.content("预约提醒", fmt="service_notice")
    campaign = outreach.campaign(**_body({"series": [notice]}))
    for change in ({"format": "promotion"}, {"format": "webinar_invite"},
                   {"promotional": True}):  # fmt: skip
        response = outreach.call("PATCH", f"/content/{notice}", "operator", json=change)
        _refused(response, campaign)
        assert response.json["error"]["details"] == {"format": [response.json["error"]["message"]]}
    (item,) = outreach.sql("SELECT format, promotional FROM content WHERE content_id = %s",
                           (notice,))  # fmt: skip
    assert item == {"format": "service_notice", "promotional": False}
    # An edit that keeps it a notice is fine.
    title = outreach.call("PATCH", f"/content/{notice}", "operator", json={"title": "到店提醒"})
    assert title.status_code == 200, title.json
    # Paused, the item may change; the campaign cannot be launched again with it.
    assert outreach.call("POST", f"/campaigns/{campaign}/pause", "operator").status_code == 200
    changed = outreach.call("PATCH", f"/content/{notice}", "operator", json={"format": "article"})
    assert changed.status_code == 200, changed.json
    _refused(outreach.call("POST", f"/campaigns/{campaign}/launch", "operator"), notice)
    (row,) = outreach.sql("SELECT status FROM campaigns WHERE campaign_id = %s", (campaign,))
    assert row["status"] == "paused"
