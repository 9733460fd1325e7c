"""``GET /campaigns/<id>/effect`` and the holdout field (docs/domain.md "Effect report"): the
window's bounds, unknown campaigns and tenants, who may read it, a holdout only where contacts
are addressed, and WeCom's confirmations counted."""

from __future__ import annotations

import pytest

from services.outreach import results

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}


def _campaign(outreach, **body) -> str:
    item = outreach.content(fmt="service_notice")
    return outreach.campaign(channel="oa_template", audience={"segments": ["f"]},
                             content={"item": item}, trigger=WEEKLY, launch=False, **body)  # fmt: skip


@pytest.mark.parametrize("days", ["0", "91", "-3", "x", "1.5"])
def test_a_window_outside_1_to_90_days_is_a_400(outreach, days):
    campaign = _campaign(outreach, holdout_percent=10)
    response = outreach.call("GET", f"/campaigns/{campaign}/effect", "viewer",
                             query_string={"days": days})  # fmt: skip
    assert response.status_code == 400, response.json
    assert "days" in str(response.json["error"]["details"])


def test_unknown_campaign_is_a_404_and_another_tenant_sees_nothing(outreach):
    response = outreach.call("GET", "/campaigns/cmp_nope/effect", "viewer")
    assert response.status_code == 404
    campaign = _campaign(outreach)
    assert outreach.call("GET", f"/campaigns/{campaign}/effect", "bloom").status_code == 404
    unknown = outreach.call("GET", f"/campaigns/{campaign}/effect", "platform",
                            query_string={"tenant": "nobody"})  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "unknown_tenant"


def test_a_campaign_without_runs_reports_zeros_and_says_there_is_no_holdout_yet(outreach):
    campaign = _campaign(outreach)
    response = outreach.call("GET", f"/campaigns/{campaign}/effect", "viewer")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["days"] == 14
    assert body["treated"]["contacts"] == body["holdout"]["contacts"] == 0
    assert body["uplift"] == {"verdict": "no_holdout", "difference": None, "low": None,
                              "high": None, "confidence": 0.95}  # fmt: skip
    assert body["content"] == []
    assert body["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize(("body", "field"), [
    ({"holdout_percent": 51}, "holdout_percent"),
    ({"holdout_percent": -1}, "holdout_percent"),
    ({"holdout_percent": "ten"}, "holdout_percent"),
])  # fmt: skip
def test_a_holdout_outside_0_to_50_percent_is_refused(outreach, body, field):
    item = outreach.content(fmt="service_notice")
    response = outreach.call("POST", "/campaigns", "operator", json={
        "name": "c", "channel": "oa_template", "audience": {"segments": ["f"]},
        "content": {"item": item}, "trigger": WEEKLY, **body})  # fmt: skip
    assert response.status_code == 400
    assert field in str(response.json["error"]["details"])


def test_no_holdout_of_customer_groups_or_oa_tags_and_a_patch_checks_the_whole(outreach):
    item = outreach.content()
    for extra in ({"channel": "wecom_group", "audience": {"segments": ["f"]}},
                  {"channel": "oa_mass", "audience": {"oa_tag_id": 101}}):  # fmt: skip
        response = outreach.call("POST", "/campaigns", "operator", json={
            "name": "c", "content": {"item": item}, "trigger": WEEKLY, "holdout_percent": 10,
            **extra})  # fmt: skip
        assert response.status_code == 400, response.json
        assert "contact-addressed" in str(response.json["error"]["details"])
    outreach.publish_segments("f")
    group = outreach.campaign(channel="wecom_group", audience={"segments": ["f"]},
                              content={"item": item}, trigger=WEEKLY, launch=False)  # fmt: skip
    patched = outreach.call("PATCH", f"/campaigns/{group}", "operator",
                            json={"holdout_percent": 10})  # fmt: skip
    assert patched.status_code == 400
    single = outreach.campaign(channel="wecom_single", audience={"segments": ["f"]},
                               content={"item": item}, trigger=WEEKLY, launch=False)  # fmt: skip
    patched = outreach.call("PATCH", f"/campaigns/{single}", "operator",
                            json={"holdout_percent": 20})  # fmt: skip
    assert patched.status_code == 200, patched.json
    assert patched.json["holdout_percent"] == 20
    audit = outreach.sql("SELECT details FROM audit_log WHERE action = 'campaign.update' "
                         "AND target = %s", (single,))  # fmt: skip
    assert audit[0]["details"] == {"holdout_percent": 20}


def test_wecom_confirmations_count_as_confirmed_and_held_out_customers_get_no_task(outreach):
    customers = [ext for ext, _ in outreach.customers(60)]
    for i, ext in enumerate(customers):
        outreach.profile(f"c_{i:02d}", ext=ext, segments=["f"], mode="b2c")
    item = outreach.content()
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["f"]},
                                 content={"item": item}, trigger=WEEKLY, holdout_percent=25)  # fmt: skip
    outreach.schedule()
    outreach.send()
    rows = outreach.deliveries(campaign)
    held = {d["address"] for d in rows if d["reason"] == "held_out"}
    assert held
    (task,) = outreach.messages("single")
    assert not held & set(task.body["external_userid"])
    # WeCom reports the task's results (services/outreach/results.py): delivered.
    results.poll_results(outreach.pool, outreach.clients)
    assert {d["status"] for d in outreach.deliveries(campaign)} == {"delivered", "excluded"}
    report = outreach.call("GET", f"/campaigns/{campaign}/effect", "viewer").json
    sent = len(rows) - len(held)
    assert (report["treated"]["delivered"], report["treated"]["confirmed"]) == (sent, sent)
    assert report["holdout"]["contacts"] == len(held)
    assert report["uplift"]["verdict"] == "too_small"
