"""Outreach end to end: admin API -> worker (scheduler, planner, senders) -> the fake platform's
received messages, with the policies, quiet hours, caps, crashes and platform errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.outreach.runs import Executor
from tests.integration.outreach.conftest import APP, CORP

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}


def test_weekly_series_to_the_groups_of_a_b2b_segment(outreach):
    chats = outreach.groups(3)
    chosen = sorted(chats)[:2]
    # Two members of the chosen groups are IT leads (segment it-leads); nobody else is.
    for i, chat_id in enumerate(chosen):
        outreach.profile(f"c_it{i}", ext=chats[chat_id][0], segments=["it-leads"],
                         role="technical")  # fmt: skip
    outreach.sync_groups()
    whitepaper = outreach.content("白皮书：数字化工厂")
    case = outreach.content("案例：苏州精工上线三个月", fmt="case_study")
    campaign = outreach.campaign(channel="wecom_group", audience={"segments": ["it-leads"]},
                                 content={"series": [whitepaper, case]}, trigger=WEEKLY,
                                 quiet_hours={"start": "21:00", "end": "08:00"})  # fmt: skip
    preview = outreach.preview(campaign)
    assert (preview["recipients"], preview["to_send"], preview["people_reached"]) == (2, 2, 6)
    assert preview["content"] == {whitepaper: 2}

    assert outreach.schedule() == 1
    assert outreach.send() == 1
    week1 = outreach.messages("group")
    assert sorted(m.body["chat_id_list"][0] for m in week1) == chosen
    assert all(m.body["text"]["content"] == "白皮书：数字化工厂" for m in week1)
    owners = {c: outreach.world().chats[c].detail["owner"] for c in chosen}
    assert {m.body["chat_id_list"][0]: m.body["sender"] for m in week1} == owners
    # The link in the message is tracked: it points at ingest's /r/<token>.
    link = week1[0].body["attachments"][0]["link"]["url"]
    assert link.startswith("https://hooks.acme.example/r/")
    (run,) = outreach.call("GET", f"/campaigns/{campaign}/runs", "viewer").json["items"]
    assert run["status"] == "done"
    assert run["stats"]["by_status"] == {"sent": 2}
    # Six people were reached (3 customers in each group); the two with a profile are exposed
    # (caps see group sends).
    assert run["stats"]["people_reached"] == 6
    exposed = outreach.sql("SELECT subject_kind, subject_id FROM exposures ORDER BY 1, 2")
    assert [(e["subject_kind"], e["subject_id"]) for e in exposed] == [
        ("contact", "c_it0"), ("contact", "c_it1"), ("group", chosen[0]), ("group", chosen[1])
    ]  # fmt: skip

    # Same day, a second run (a re-scheduled slot) is held back by the group cap (1 a day).
    outreach.now += timedelta(hours=1)
    assert outreach.schedule() == 0  # the cron has no slot until next Tuesday
    # Next Tuesday: each group gets the next item of the series.
    outreach.now += timedelta(days=7) - timedelta(hours=1)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    week2 = outreach.messages("group")[len(week1) :]
    assert sorted(m.body["chat_id_list"][0] for m in week2) == chosen
    assert {m.body["text"]["content"] for m in week2} == {"案例：苏州精工上线三个月"}
    # Third Tuesday: the series is over for both groups; nothing goes out.
    outreach.now += timedelta(days=7)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert len(outreach.messages("group")) == 4
    last = outreach.call("GET", f"/campaigns/{campaign}/runs", "viewer").json["items"][0]
    assert last["stats"]["excluded"] == {"series_finished": 2}


def test_quiet_hours_hold_a_run_until_they_end(outreach):
    ext, _ = outreach.customers(1)[0]
    outreach.profile("c_1", ext=ext, segments=["all"])
    item = outreach.content()
    outreach.now = outreach.now.replace(hour=14)  # 22:00 in Shanghai
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                                 content={"item": item},
                                 trigger={"schedule": {"cron": "0 22 * * *"}},
                                 quiet_hours={"start": "21:00", "end": "08:00"})  # fmt: skip
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert outreach.messages() == []
    (run,) = outreach.sql("SELECT * FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert run["status"] == "pending"
    assert run["error"] == "quiet hours"
    assert (run["due_at"] + timedelta(hours=8)).hour == 8  # 08:00 the next morning
    outreach.now = run["due_at"] + timedelta(minutes=1)
    assert outreach.send() == 1
    (message,) = outreach.messages("single")
    assert message.body["external_userid"] == [ext]


def test_caps_count_every_channel_and_group_exposure(outreach):
    chats = outreach.groups(1)
    chat_id = sorted(chats)[0]
    ext = chats[chat_id][0]
    outreach.profile("c_member", ext=ext, segments=["vip"])
    outreach.sync_groups()
    item = outreach.content()
    group_campaign = outreach.campaign(channel="wecom_group", audience={"groups": [chat_id]},
                                       content={"item": item}, trigger=WEEKLY)  # fmt: skip
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert len(outreach.messages("group")) == 1
    # A 1:1 campaign the same day: the member already had today's exposure through the group.
    single = outreach.campaign(channel="wecom_single", audience={"segments": ["vip"]},
                               content={"item": item}, trigger=WEEKLY)  # fmt: skip
    preview = outreach.preview(single)
    assert preview["excluded"] == {"cap_day": 1}
    assert preview["to_send"] == 0
    # The run does what the preview said, and the delivery log says why.
    outreach.now += timedelta(minutes=5)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert outreach.messages("single") == []
    (delivery,) = outreach.deliveries(single)
    assert (delivery["status"], delivery["reason"]) == ("excluded", "cap_day")
    # A week on, the group's run (due first) takes the member's daily slot again.
    outreach.now += timedelta(days=7)
    assert outreach.schedule() == 2
    assert outreach.send() == 2
    assert len(outreach.messages("group")) == 2
    assert outreach.messages("single") == []
    # With a cap of 2 a day, both go out.
    settings = {"caps": {"contact_per_day": 2, "contact_per_week": 5}}
    assert outreach.call("PUT", "/settings/outreach", "admin", json=settings).status_code == 200
    outreach.now += timedelta(days=7)
    assert outreach.schedule() == 2
    assert outreach.send() == 2
    assert len(outreach.messages("group")) == 3
    assert len(outreach.messages("single")) == 1
    assert group_campaign != single


def test_stage_triggered_send_through_the_profile_topic(outreach, kafka):
    from services.outreach.worker import build_runner
    from shared.kafka.producer import Record, create_producer, publish
    from shared.kafka.topics import PROFILES, STAGE_CHANGES, ensure_topics
    from tests.kafka_helpers import RunnerThread, wait_until

    ensure_topics(kafka)
    ((ext, _),) = outreach.customers(1)
    case = outreach.content("案例：同行如何评估", fmt="case_study")
    campaign = outreach.campaign(channel="wecom_single", audience={},
                                 content={"item": case},
                                 trigger={"event": {"stage_entered": "comparison"}})  # fmt: skip
    profile = outreach.profile("c_buyer", ext=ext, stage="comparison",
                               updated_at=outreach.now)  # fmt: skip
    import json

    from shared import messages

    change = {"tenant_id": "acme", "subject": "contact", "subject_id": "c_buyer",
              "model": "aisceas", "from_stage": "search", "to_stage": "comparison",
              "cause": "biz.demo.requested e1", "event_id": "e1",
              "changed_at": outreach.now.isoformat(), "actor": None}  # fmt: skip
    profile_json = {**profile, "updated_at": outreach.now.isoformat()}
    producer = create_producer(kafka, client_id="outreach-test")
    publish(producer, [
        Record(kafka.topic(PROFILES), "acme:c_buyer",
               messages.encode(messages.PROFILE, {k: v for k, v in profile_json.items()
                                                  if k != "schema"})),
        Record(kafka.topic(STAGE_CHANGES), "acme:c_buyer",
               messages.encode(messages.STAGE_CHANGE, change)),
        Record(kafka.topic(STAGE_CHANGES), "acme:c_buyer",  # redelivered
               messages.encode(messages.STAGE_CHANGE, change)),
    ])  # fmt: skip
    producer.close()
    settings = outreach.settings.__class__(**{**outreach.settings.__dict__, "kafka": kafka})
    runner = build_runner(settings, outreach.pool, group=f"outreach-{campaign}")
    with RunnerThread(runner):
        wait_until(
            lambda: (
                outreach.sql(
                    "SELECT count(*) AS n FROM campaign_runs WHERE campaign_id = %s", (campaign,)
                )[0]["n"]
                == 1
            )
        )
    assert outreach.send() == 1
    (message,) = outreach.messages("single")
    assert message.body["external_userid"] == [ext]
    assert message.body["text"]["content"] == "案例：同行如何评估"
    (run,) = outreach.sql("SELECT * FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert (run["subject_kind"], run["subject_id"]) == ("contact", "c_buyer")
    assert json.dumps(run["stats"]["by_status"]) == '{"sent": 1}'


def test_no_discount_guard_blocks_a_promotion_for_an_account_in_comparison(outreach):
    (a, _), (b, _), (c, _) = outreach.customers(3)
    outreach.profile("c_comparing", ext=a, segments=["buyers"], account_id="苏州精工",
                     account_stage="comparison")  # fmt: skip
    outreach.profile("c_early", ext=b, segments=["buyers"], stage="interest")
    outreach.profile("c_consumer", ext=c, segments=["buyers"], mode="b2c", stage="activation")
    promo = outreach.content("年终大促 8 折", fmt="promotion")
    # An operator cannot lift the B2B default; an admin can, and it is audited.
    refused = outreach.call("POST", "/campaigns", "operator", json={
        "name": "promo", "channel": "wecom_single", "audience": {"segments": ["buyers"]},
        "content": {"item": promo}, "trigger": WEEKLY, "allow_b2b_promotion": True})  # fmt: skip
    assert refused.status_code == 403
    guarded = outreach.campaign(channel="wecom_single", audience={"segments": ["buyers"]},
                                content={"item": promo}, trigger=WEEKLY)  # fmt: skip
    preview = outreach.preview(guarded)
    assert preview["excluded"] == {"no_discount_b2b": 1, "no_discount_comparing": 1}
    assert [s["recipient_id"] for s in preview["samples"]] == ["c_consumer"]
    overridden = outreach.campaign(channel="wecom_single", audience={"segments": ["buyers"]},
                                   content={"item": promo}, trigger=WEEKLY, who="admin",
                                   allow_b2b_promotion=True)  # fmt: skip
    preview = outreach.preview(overridden)
    assert preview["excluded"] == {"no_discount_comparing": 1}  # never while comparing
    audit = outreach.call("GET", "/audit", "admin").json["items"]
    assert any(e["action"] == "campaign.promotion_override" and e["target"] == overridden
               for e in audit)  # fmt: skip
    # Sent for real: the buyer in comparison gets nothing, and the delivery says why.
    assert outreach.schedule() == 2
    assert outreach.send() == 2
    sent = {ext for m in outreach.messages("single") for ext in m.body["external_userid"]}
    assert a not in sent
    assert c in sent
    reasons = {d["recipient_id"]: d["reason"] for d in outreach.deliveries(guarded)}
    assert reasons["c_comparing"] == "no_discount_comparing"


class Crash(BaseException):
    """The worker process dying (not an error the executor may catch)."""


def test_a_crash_mid_run_resumes_without_sending_twice(outreach, monkeypatch):
    people = [(ext, openid) for ext, openid in outreach.customers(40) if openid][:6]
    for i, (_, openid) in enumerate(people):
        outreach.profile(f"c_{i}", openid=openid, segments=["followers"])
    item = outreach.content(fmt="service_notice")
    campaign = outreach.campaign(channel="oa_template", audience={"segments": ["followers"]},
                                 content={"item": item}, trigger=WEEKLY)  # fmt: skip
    assert outreach.schedule() == 1
    client = outreach.clients.oa("acme")
    real_send = client.send_template
    calls = []

    def dies_after_the_third(body):
        result = real_send(body)  # the platform accepted it...
        calls.append(body["touser"])
        if len(calls) == 3:
            raise Crash  # ...and the worker died before recording it
        return result

    monkeypatch.setattr(client, "send_template", dies_after_the_third)
    with pytest.raises(Crash):
        outreach.send()
    statuses = sorted(d["status"] for d in outreach.deliveries(campaign))
    assert statuses == ["pending"] * 3 + ["sending"] + ["sent"] * 2
    # Another worker takes the run over once the lease has passed.
    monkeypatch.setattr(client, "send_template", real_send)
    outreach.now += timedelta(minutes=6)
    assert outreach.send() == 1
    assert [d["status"] for d in outreach.deliveries(campaign)] == ["sent"] * 6
    received = [m.targets[0] for m in outreach.messages("template")]
    assert sorted(received) == sorted(openid for _, openid in people)  # once each


def wecom_send_interrupted_mid_call(outreach, monkeypatch) -> tuple[str, object, object]:
    """A WeCom 1:1 campaign whose worker dies right after the platform accepted the message;
    returns the campaign, the client and its real ``add_msg_template``."""
    ((ext, _),) = outreach.customers(1)
    outreach.profile("c_1", ext=ext, segments=["s"])
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    client = outreach.clients.wecom("acme")
    real = client.add_msg_template

    def crash(body):
        real(body)
        raise Crash

    monkeypatch.setattr(client, "add_msg_template", crash)
    with pytest.raises(Crash):
        outreach.send()
    return campaign, client, real


def test_wecom_sends_interrupted_mid_call_are_never_repeated(outreach, monkeypatch):
    campaign, client, real = wecom_send_interrupted_mid_call(outreach, monkeypatch)
    monkeypatch.setattr(client, "add_msg_template", real)
    outreach.now += timedelta(minutes=6)
    outreach.send()
    (delivery,) = outreach.deliveries(campaign)
    assert delivery["status"] == "unknown"
    assert "not sent again" in delivery["reason"]
    assert len(outreach.messages("single")) == 1


def test_token_expiry_mid_run_is_refreshed_once(outreach, monkeypatch):
    people = [(ext, openid) for ext, openid in outreach.customers(40) if openid][:4]
    for i, (_, openid) in enumerate(people):
        outreach.profile(f"c_{i}", openid=openid, segments=["f"])
    campaign = outreach.campaign(channel="oa_template", audience={"segments": ["f"]},
                                 content={"item": outreach.content(fmt="service_notice")},
                                 trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    client = outreach.clients.oa("acme")
    real = client.send_template
    sent = []

    def revoke_after_two(body):
        if len(sent) == 2:  # the platform revokes the token (or it expires) mid-run
            outreach.fake.state.revoke(app_id=APP)
        sent.append(real(body))
        return sent[-1]

    monkeypatch.setattr(client, "send_template", revoke_after_two)
    assert outreach.send() == 1
    assert [d["status"] for d in outreach.deliveries(campaign)] == ["sent"] * 4
    errors = [c for c in outreach.fake.state.calls_since() if c["path"] == "message/template/send"]
    assert [c["errcode"] for c in errors].count(40001) == 1  # one refused call, then a new token


def test_wecom_rate_limit_backs_off_and_sends_later(outreach):
    ((ext, _),) = outreach.customers(1)
    outreach.profile("c_1", ext=ext, segments=["s"])
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    outreach.fake.fail("externalcontact/add_msg_template", 45009)
    assert outreach.send() == 1
    (run,) = outreach.sql("SELECT * FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert run["status"] == "pending"
    assert "45009" in run["error"]
    assert run["due_at"] >= outreach.now + timedelta(seconds=120)
    assert outreach.messages() == []
    outreach.now += timedelta(seconds=60)
    assert outreach.send() == 0  # still backing off
    outreach.now += timedelta(seconds=61)
    assert outreach.send() == 1
    assert len(outreach.messages("single")) == 1
    (delivery,) = outreach.deliveries(campaign)
    assert delivery["status"] == "sent"
    assert delivery["attempts"] == 2


def test_send_results_are_polled_into_the_delivery_log(outreach):
    from services.outreach.results import poll_results

    (a, _), (b, _) = outreach.customers(2)
    outreach.profile("c_a", ext=a, segments=["s"])
    outreach.profile("c_b", ext=b, segments=["s"])
    outreach.fake.state.deleted.add(b)  # b deleted us since the last sync
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    outreach.send()
    assert poll_results(outreach.pool, outreach.clients) == 2
    status = {d["recipient_id"]: (d["status"], d["reason"]) for d in outreach.deliveries(campaign)}
    assert status["c_a"] == ("delivered", None)
    assert status["c_b"][0] == "failed"
    assert "not a friend" in status["c_b"][1]


def test_rbac_and_tenancy_of_campaigns(outreach):
    item = outreach.content()
    body = {"name": "x", "channel": "wecom_single", "audience": {}, "content": {"item": item},
            "trigger": WEEKLY}  # fmt: skip
    assert outreach.call("POST", "/campaigns", "viewer", json=body).status_code == 403
    campaign = outreach.campaign(launch=False, channel="wecom_single", audience={},
                                 content={"item": item}, trigger=WEEKLY)  # fmt: skip
    assert outreach.call("POST", f"/campaigns/{campaign}/launch", "viewer").status_code == 403
    assert outreach.call("GET", f"/campaigns/{campaign}", "bloom").status_code == 404
    assert outreach.call("POST", f"/campaigns/{campaign}/preview", "bloom").status_code == 404
    assert outreach.call("GET", f"/content/{item}", "bloom").status_code == 404
    assert outreach.call("GET", "/deliveries", "bloom").json["items"] == []
    launched = outreach.call("POST", f"/campaigns/{campaign}/launch", "operator")
    assert launched.status_code == 200
    assert launched.json["status"] == "active"
    again = outreach.call("POST", f"/campaigns/{campaign}/launch", "operator")
    assert again.status_code == 409
    assert again.json["error"]["message"] == "a campaign that is active cannot be launched"
    edit = outreach.call("PATCH", f"/campaigns/{campaign}", "operator", json={"name": "y"})
    assert edit.status_code == 409  # pause first
    audit = [e["action"] for e in outreach.call("GET", "/audit", "admin").json["items"]]
    assert "campaign.launch" in audit
    assert "campaign.create" in audit
    assert "content.create" in audit


def test_campaign_with_unknown_content_or_missing_payload_is_refused(outreach):
    body = {"name": "x", "channel": "oa_custom", "audience": {}, "trigger": WEEKLY}
    missing = outreach.call("POST", "/campaigns", "operator",
                            json={**body, "content": {"item": "cnt_nope"}})  # fmt: skip
    assert missing.status_code == 400
    assert "'cnt_nope'" in missing.json["error"]["details"]["content.item"][0]
    item = outreach.content()  # has wecom and oa_template payloads, not oa_custom
    lacking = outreach.call("POST", "/campaigns", "operator",
                            json={**body, "content": {"item": item}})  # fmt: skip
    assert lacking.status_code == 400
    assert "oa_custom" in lacking.json["error"]["message"]
    bad = outreach.call("POST", "/campaigns", "operator", json={**body, "trigger": {"schedule": {
        "cron": "tuesdays"}}, "content": {"item": item}})  # fmt: skip
    assert bad.status_code == 400


def test_group_sync_marks_dismissed_groups(outreach):
    outreach.groups(3)
    outreach.sync_groups()
    total = len(outreach.world().chats)
    assert outreach.sql("SELECT count(*) AS n FROM groups")[0]["n"] == total
    gone = sorted(outreach.world().chats)[0]
    outreach.fake.state.dismissed.add(gone)
    outreach.sync_groups()
    rows = {r["chat_id"]: r["status"] for r in outreach.sql("SELECT chat_id, status FROM groups")}
    assert total == 3
    assert rows[gone] == "dismissed"
    assert list(rows.values()).count("active") == total - 1


def test_executor_without_channel_credentials_fails_deliveries_clearly(outreach, monkeypatch):
    ((ext, _),) = outreach.customers(1)
    outreach.profile("c_1", ext=ext, segments=["s"])
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    monkeypatch.setattr(outreach.clients, "_wecom", {})
    Executor(outreach.pool, outreach.clients, clock=lambda: outreach.now).run_due()
    (delivery,) = outreach.deliveries(campaign)
    assert (delivery["status"], delivery["reason"]) == ("failed", "channel_unavailable")
    assert CORP


def test_oa_mass_and_customer_service_messages(outreach):
    people = [(ext, openid) for ext, openid in outreach.customers(40) if openid][:3]
    (_, a), (_, b), (_, c) = people
    outreach.profile("c_a", openid=a, segments=["f"], mode="b2c")
    outreach.profile("c_b", openid=b, segments=["f"], mode="b2c",
                     oa_last_message_at=outreach.now - timedelta(hours=2))  # fmt: skip
    outreach.profile("c_c", openid=c, segments=["f"], mode="b2c", oa_follower=False)
    news = outreach.content("新品上市", fmt="article", payloads={
        "oa_mass": {"msgtype": "text", "text": "新品上市，点此查看"},
        "oa_custom": {"msgtype": "news", "news": {"title": "新品上市",
                                                  "url": "https://acme.example/new"}}})  # fmt: skip
    mass = outreach.campaign(channel="oa_mass", audience={"segments": ["f"]},
                             content={"item": news}, trigger=WEEKLY)  # fmt: skip
    custom = outreach.campaign(channel="oa_custom", audience={"segments": ["f"]},
                               content={"item": news}, trigger=WEEKLY)  # fmt: skip
    assert outreach.schedule() == 2
    outreach.call("PUT", "/settings/outreach", "admin", json={"caps": {"contact_per_day": 5}})
    assert outreach.send() == 2
    (sent_mass,) = outreach.messages("mass")
    assert sorted(sent_mass.targets) == sorted([a, b])  # c unfollowed: excluded before sending
    assert sent_mass.body["clientmsgid"].startswith("siyu-")
    # Customer service only inside the 48-hour window after the person wrote to the OA.
    (sent_custom,) = outreach.messages("custom")
    assert sent_custom.targets == [b]
    link = sent_custom.body["news"]["articles"][0]["url"]
    assert link.startswith("https://hooks.acme.example/r/")
    reasons = {d["recipient_id"]: d["reason"] for d in outreach.deliveries(custom)}
    assert reasons == {"c_a": "outside_cs_window", "c_b": None, "c_c": "unsubscribed"}
    assert {d["status"] for d in outreach.deliveries(mass)} == {"sent", "excluded"}


def test_a_risk_flag_raised_on_an_account_fires_once_for_its_members(outreach):
    (a, _), (b, _) = outreach.customers(2)
    welcome = outreach.content("新客户上手指南", fmt="onboarding_guide")
    campaign = outreach.campaign(channel="wecom_single", audience={},
                                 content={"item": welcome},
                                 trigger={"event": {"risk_flag": "new", "delay_minutes": 30}})  # fmt: skip
    for contact, ext in (("c_a", a), ("c_b", b)):  # both members' profiles show the new flag
        outreach.profile(contact, ext=ext, account_id="acct_1", risk_flags=["new"],
                         updated_at=outreach.now)  # fmt: skip
    runs = outreach.sql("SELECT * FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert len(runs) == 1
    assert runs[0]["subject_kind"] == "account"
    assert runs[0]["due_at"] == outreach.now + timedelta(minutes=30)
    assert outreach.send() == 0  # not due yet
    outreach.now += timedelta(minutes=31)
    assert outreach.send() == 1
    (message,) = outreach.messages("single")
    assert sorted(message.body["external_userid"]) == sorted([a, b])


def test_oa_mass_send_to_a_user_tag(outreach):
    people = [openid for _, openid in outreach.customers(40) if openid][:3]
    with outreach.fake.state.lock:
        outreach.fake.state.oa_tags[APP] = {7: set(people[:2])}
    news = outreach.content("会员日", fmt="article",
                            payloads={"oa_mass": {"msgtype": "text", "text": "会员日活动预告"}})  # fmt: skip
    campaign = outreach.campaign(channel="oa_mass", audience={"oa_tag_id": 7},
                                 content={"item": news}, trigger=WEEKLY)  # fmt: skip
    preview = outreach.preview(campaign)
    assert (preview["recipients"], preview["to_send"]) == (1, 1)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    (sent,) = outreach.messages("mass")
    assert sent.body["filter"] == {"is_to_all": False, "tag_id": 7}
    assert sorted(sent.targets) == sorted(people[:2])
    (delivery,) = outreach.deliveries(campaign)
    assert (delivery["recipient_kind"], delivery["status"]) == ("tag", "sent")
    # A promotion by tag in a B2B tenant: who is under the tag is unknown, so never.
    promo = outreach.content("8折", fmt="promotion",
                             payloads={"oa_mass": {"msgtype": "text", "text": "8折"}})  # fmt: skip
    guarded = outreach.campaign(channel="oa_mass", audience={"oa_tag_id": 7},
                                content={"item": promo}, trigger=WEEKLY, who="admin",
                                allow_b2b_promotion=True)  # fmt: skip
    preview = outreach.preview(guarded)
    assert preview["excluded"] == {"no_discount_unknown_audience": 1}
    # The tag is the whole audience; it goes with no other filter and no other channel.
    for bad in (
        {"channel": "oa_mass", "audience": {"oa_tag_id": 7, "stages": ["interest"]}},
        {"channel": "wecom_single", "audience": {"oa_tag_id": 7}},
    ):
        refused = outreach.call("POST", "/campaigns", "operator", json={
            "name": "x", "content": {"item": news}, "trigger": WEEKLY, **bad})  # fmt: skip
        assert refused.status_code == 400
