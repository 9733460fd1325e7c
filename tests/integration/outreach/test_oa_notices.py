"""Issue 18, item 6: OA template messages carry service notices only (docs/platform.md "OA
template messages: service notices only"). A campaign on ``oa_template`` whose item or series
holds a promotion or a format that is not a notice is refused when created, changed or launched;
an edit turning an item an active one sends into marketing is refused; a notice goes out."""

from __future__ import annotations

import threading

from services.outreach import api_campaigns, api_content
from shared.api.errors import ApiError

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


def test_a_campaign_active_on_oa_template_before_the_rule_sends_no_marketing(outreach):
    """Legacy data: a campaign made active on oa_template before the rule existed (stored
    directly, as it was), whose item is a whitepaper. Preview and run exclude every recipient
    with the reason ``not_a_notice``; nothing reaches the platform; a notice still goes out."""
    people = [openid for _, openid in outreach.customers(40) if openid][:3]
    for i, openid in enumerate(people):
        outreach.profile(f"c_{i}", openid=openid, segments=["followers"])
    whitepaper = outreach.content()
    legacy = outreach.campaign(channel="wecom_single", audience={"segments": ["followers"]},
                               content={"item": whitepaper}, trigger=WEEKLY)  # fmt: skip
    outreach.sql("UPDATE campaigns SET channel = 'oa_template' WHERE campaign_id = %s", (legacy,))
    preview = outreach.preview(legacy)
    assert preview["excluded"] == {"not_a_notice": 3}
    assert preview["to_send"] == 0
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert outreach.messages("template") == []
    assert {(d["status"], d["reason"], d["content_id"])
            for d in outreach.deliveries(legacy)} == {("excluded", "not_a_notice", whitepaper)}  # fmt: skip
    run = outreach.call("GET", f"/campaigns/{legacy}/runs", "viewer").json["items"][0]
    assert run["stats"]["excluded"] == {"not_a_notice": 3}
    # A notice on the same channel is planned as before.
    notice = outreach.campaign(channel="oa_template", audience={"segments": ["followers"]},
                               content={"item": outreach.content("预约提醒", fmt="service_notice")},
                               trigger=WEEKLY)  # fmt: skip
    assert outreach.preview(notice)["to_send"] == 3


def _waiting_for_a_lock(outreach, pid: int) -> None:
    """Until the backend ``pid`` waits for a row lock (polled: a wait condition, not a timing)."""
    for _ in range(500):
        rows = outreach.sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
        if rows and rows[0]["wait_event_type"] == "Lock":
            return
        threading.Event().wait(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, outcome) where outcome gets its result or error."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn()
        except Exception as exc:  # handed to the test to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_an_edit_in_progress_holds_a_launch_of_its_item_which_then_refuses(outreach):
    """The edit locks the item first; the launch reads it FOR SHARE, waits for the edit to
    commit, then sees the item as edited and refuses (never an active campaign sending it)."""
    notice = outreach.content("预约提醒", fmt="service_notice")
    campaign = outreach.campaign(launch=False, **_body({"item": notice}))
    with outreach.pool.connection() as edit:
        api_content.update_item(edit, "acme", notice, {"format": "article"}, "test:editor")
        with outreach.pool.connection() as launch:
            pid = launch.info.backend_pid
            thread, outcome = _in_thread(
                lambda: api_campaigns.transition(launch, "acme", campaign, "launch", "test:op")
            )
            _waiting_for_a_lock(outreach, pid)
            edit.commit()  # the edit lands; the launch goes on
            thread.join()
            launch.rollback()
    assert isinstance(outcome.get("error"), ApiError), outcome
    assert outcome["error"].code == "oa_template_not_notice"
    (row,) = outreach.sql("SELECT status FROM campaigns WHERE campaign_id = %s", (campaign,))
    assert row["status"] == "draft"


def test_a_launch_in_progress_holds_an_edit_of_its_item_which_then_refuses(outreach):
    """The other order: the launch holds the item FOR SHARE; the edit waits, then sees the
    campaign active and refuses."""
    notice = outreach.content("预约提醒", fmt="service_notice")
    campaign = outreach.campaign(launch=False, **_body({"item": notice}))
    with outreach.pool.connection() as launch:
        api_campaigns.transition(launch, "acme", campaign, "launch", "test:op")
        with outreach.pool.connection() as edit:
            pid = edit.info.backend_pid
            thread, outcome = _in_thread(
                lambda: api_content.update_item(
                    edit, "acme", notice, {"format": "article"}, "test:editor"
                )
            )
            _waiting_for_a_lock(outreach, pid)
            launch.commit()
            thread.join()
            edit.rollback()
    assert isinstance(outcome.get("error"), ApiError), outcome
    assert outcome["error"].code == "oa_template_not_notice"
    assert campaign in outcome["error"].message
    (item,) = outreach.sql("SELECT format FROM content WHERE content_id = %s", (notice,))
    assert item["format"] == "service_notice"
