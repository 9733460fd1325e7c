"""The campaign pages (docs/console.md "Campaigns"): the wizard saves through the API's own
``create`` (audited as the console user), names the tenant does not have are answered inline
with the valid ones, launch / pause / archive are an operator's (a viewer sees no button and its
POST is 403), every POST needs the CSRF token, another tenant's campaign is 404, a preview runs
as the API's job and shows counts, exclusions in Chinese and samples."""

from __future__ import annotations

import html

import pytest

from services.outreach.api_preview import JOBS
from shared.jobs import Runner
from tests.integration.console.campaign_world import (
    SEGMENT,
    audience,
    first_slot,
    world,
)
from tests.integration.console.conftest import csrf, log_in


@pytest.fixture
def desk(console):
    outreach = world(console)
    outreach.publish_segments(SEGMENT)
    return outreach


def logged_in(console, login: str, tenant: str = "acme"):
    client = console.client()
    log_in(client, login, tenant=tenant)
    return client


def page(response, status: int = 200) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body[:1500]
    return html.unescape(body)


def wizard(content_id: str, **changes) -> dict:
    form = {"name": "周二白皮书", "segments": [SEGMENT], "content_kind": "item", "item": content_id,
            "channel": "wecom_single", "trigger_kind": "schedule", "schedule_kind": "weekly",
            "time": "10:00", "weekdays": ["TUE"], "quiet_start": "21:00", "quiet_end": "08:00"}  # fmt: skip
    form.update(changes)
    return form


def create(client, form: dict):
    return client.post(
        "/campaigns/new", data={**form, "csrf_token": csrf(client, "/campaigns/new")}
    )


def created(console, client, content_id: str, **changes) -> str:
    response = create(client, wizard(content_id, **changes))
    assert response.status_code == 302, page(response, 302)
    campaign_id = response.headers["Location"].split("/campaigns/")[1].split("?")[0]
    assert campaign_id.startswith("cmp_")
    return campaign_id


def post(client, path: str, campaign_id: str):
    return client.post(path, data={"csrf_token": csrf(client, f"/campaigns/{campaign_id}")})


def test_the_list_is_empty_then_an_operator_creates_a_campaign_audited_as_the_user(console, desk):
    item = desk.content()
    operator = logged_in(console, "han.meimei")
    listing = page(operator.get("/campaigns"))
    assert 'id="campaigns-empty"' in listing and 'id="new-campaign"' in listing
    wizard_page = page(operator.get("/campaigns/new"))
    assert "每周二 10:00" in wizard_page  # the default schedule in words
    assert 'id="next-runs"' in wizard_page and "(周二)" in wizard_page  # its next dates
    campaign_id = created(console, operator, item)
    (row,) = console.sql("SELECT * FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    assert (row["status"], row["channel"], row["created_by"]) == (
        "draft",
        "wecom_single",
        "console:han.meimei",
    )
    assert row["audience"] == {"segments": [SEGMENT]}
    assert row["trigger"] == {"schedule": {"cron": "0 10 * * TUE"}}
    assert row["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    (entry,) = console.sql("SELECT actor, target FROM audit_log WHERE action = 'campaign.create'")
    assert entry == {"actor": "console:han.meimei", "target": campaign_id}
    detail = page(operator.get(f"/campaigns/{campaign_id}"))
    assert (
        "草稿" in detail and "企业微信单聊" in detail and "每周二 10:00 (Asia/Shanghai)" in detail
    )
    listing = page(operator.get("/campaigns"))
    assert "周二白皮书" in listing and "草稿" in listing


def test_an_unknown_segment_is_answered_inline_with_the_valid_ones_and_the_form_kept(console, desk):
    item = desk.content()
    operator = logged_in(console, "han.meimei")
    body = page(create(operator, wizard(item, segments=["seg_buyerz"], name="保留的名字")), 400)
    assert 'id="segments-error"' in body and "seg_buyerz" in body
    assert f'<span class="valid">{SEGMENT}</span>' in body
    assert 'value="保留的名字"' in body  # the form is kept
    assert console.sql("SELECT count(*) AS n FROM campaigns")[0]["n"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"time": "25:00"}, "time"),
        ({"weekdays": []}, "weekdays"),
        ({"schedule_kind": "cron", "cron": "not a cron"}, "schedule_kind"),
        ({"segments": []}, "audience"),
        ({"item": "cnt_missing"}, "item"),
        ({"trigger_kind": "stage_entered", "event_stage": "attension"}, "event_stage"),
        ({"quiet_start": "21:00", "quiet_end": ""}, "quiet"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_input_is_a_400_with_the_error_on_its_field(console, desk, changes, field):
    item = desk.content()
    operator = logged_in(console, "han.meimei")
    body = page(create(operator, wizard(item, **changes)), 400)
    assert f'id="{field}-error"' in body


def test_a_non_notice_on_oa_template_is_refused_inline_in_chinese_and_a_notice_is_saved(
    console, desk
):
    whitepaper = desk.content()  # has an oa_template payload, but is content, not a notice
    notice = desk.content("预约提醒", fmt="service_notice")
    operator = logged_in(console, "han.meimei")
    wizard_page = page(operator.get("/campaigns/new"))
    # The wizard offers the template channel for the notice only (services/outreach/notices.py).
    assert "白皮书：数字化工厂 (企业微信客户群、企业微信单聊)" in wizard_page
    assert "预约提醒 (企业微信客户群、企业微信单聊、公众号模板消息)" in wizard_page
    body = page(create(operator, wizard(whitepaper, channel="oa_template", name="保留")), 400)
    assert 'id="channel-error"' in body
    assert "公众号模板消息只能发送服务通知" in body and whitepaper in body
    assert "企业微信单聊或客户群" in body and "公众号群发" in body
    assert 'value="保留"' in body  # the form is kept
    assert console.sql("SELECT count(*) AS n FROM campaigns")[0]["n"] == 0
    campaign_id = created(console, operator, notice, channel="oa_template")
    (row,) = console.sql("SELECT channel FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    assert row["channel"] == "oa_template"


def test_a_stage_trigger_campaign_is_described_in_words(console, desk):
    item = desk.content()
    operator = logged_in(console, "han.meimei")
    campaign_id = created(console, operator, item, trigger_kind="stage_entered",
                          event_stage="comparison", delay_minutes="30")  # fmt: skip
    (row,) = console.sql("SELECT trigger FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    assert row["trigger"] == {"event": {"stage_entered": "comparison", "subject": "contact",
                                        "delay_minutes": 30}}  # fmt: skip
    assert "联系人进入比较阶段时，30 分钟后" in page(operator.get(f"/campaigns/{campaign_id}"))


def test_the_schedule_endpoint_gives_words_and_dates_in_the_tenants_zone(console, desk):
    operator = logged_in(console, "han.meimei")
    answer = operator.get("/campaigns/schedule.json?schedule_kind=daily&time=09:30").json
    assert answer["words"] == "每天 09:30 (Asia/Shanghai)"
    assert len(answer["times"]) == 5 and all("09:30 CST" in t for t in answer["times"])
    bad = operator.get("/campaigns/schedule.json?schedule_kind=cron&cron=nope").json
    assert bad["times"] == [] and bad["error"]
    viewer = logged_in(console, "li.lei")
    assert viewer.get("/campaigns/schedule.json?schedule_kind=daily&time=09:30").status_code == 403


def test_a_viewer_sees_no_buttons_and_its_forged_posts_are_refused(console, desk):
    campaign_id = created(console, logged_in(console, "han.meimei"), desk.content())
    viewer = logged_in(console, "li.lei")
    detail = page(viewer.get(f"/campaigns/{campaign_id}"))
    for button in ("launch-button", "preview-button", "archive-button"):
        assert button not in detail
    assert "new-campaign" not in page(viewer.get("/campaigns"))
    assert viewer.get("/campaigns/new").status_code == 403
    for path in ("launch", "archive", "preview"):
        assert post(viewer, f"/campaigns/{campaign_id}/{path}", campaign_id).status_code == 403
    assert post(viewer, "/campaigns/new", campaign_id).status_code == 403
    (row,) = console.sql("SELECT status FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    assert row["status"] == "draft"


def test_a_post_without_the_csrf_token_is_refused(console, desk):
    operator = logged_in(console, "han.meimei")
    campaign_id = created(console, operator, desk.content())
    assert operator.post(f"/campaigns/{campaign_id}/launch").status_code == 400
    assert operator.post("/campaigns/new", data=wizard(desk.content())).status_code == 400
    (row,) = console.sql("SELECT status FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    assert row["status"] == "draft"


def test_another_tenants_campaign_is_not_found(console, desk):
    campaign_id = created(console, logged_in(console, "han.meimei"), desk.content())
    other = logged_in(console, "xiao.hua", tenant="bloom")
    assert other.get(f"/campaigns/{campaign_id}").status_code == 404
    assert post(other, f"/campaigns/{campaign_id}/launch", "nothing").status_code == 404
    assert post(other, f"/campaigns/{campaign_id}/preview", "nothing").status_code == 404
    assert "campaigns-empty" in page(other.get("/campaigns"))


def test_launch_pause_archive_through_the_apis_transitions(console, desk):
    operator = logged_in(console, "han.meimei")
    campaign_id = created(console, operator, desk.content())
    path = f"/campaigns/{campaign_id}"
    launched = post(operator, f"{path}/launch", campaign_id)
    assert launched.status_code == 302
    detail = page(operator.get(launched.headers["Location"]))
    assert "活动已启动" in detail and "进行中" in detail and "pause-button" in detail
    assert "launch-button" not in detail
    assert "10:00 CST" in page(operator.get("/campaigns"))  # the next run, Tuesday 10:00
    again = page(post(operator, f"{path}/launch", campaign_id), 409)  # active already
    assert 'id="error"' in again
    assert "状态为「进行中」的活动不能启动" in again  # the API's 409, in the reader's language
    assert post(operator, f"{path}/pause", campaign_id).status_code == 302
    assert "已暂停" in page(operator.get(path))
    assert post(operator, f"{path}/archive", campaign_id).status_code == 302
    assert post(operator, f"{path}/nonsense", campaign_id).status_code == 404
    actions = console.sql("SELECT action, actor FROM audit_log WHERE target = %s ORDER BY id",
                          (campaign_id,))  # fmt: skip
    assert [a["action"] for a in actions] == ["campaign.create", "campaign.launch",
                                              "campaign.pause", "campaign.archive"]  # fmt: skip
    assert {a["actor"] for a in actions} == {"console:han.meimei"}


def test_a_preview_runs_as_the_apis_job_and_shows_counts_exclusions_and_samples(
    console, desk, schema
):
    ids = audience(desk, 3)
    desk.profile("c_nowecom", segments=[SEGMENT])  # no WeCom id: excluded
    item = desk.content(title="白皮书：数字化工厂")
    operator = logged_in(console, "han.meimei")
    campaign_id = created(console, operator, item)
    queued = post(operator, f"/campaigns/{campaign_id}/preview", campaign_id)
    assert queued.status_code == 302 and "preview=job_" in queued.headers["Location"]
    job_id = queued.headers["Location"].split("preview=")[1].split("#")[0]
    running = page(operator.get(queued.headers["Location"]))
    assert 'id="preview-running"' in running and "campaigns.js" in running
    status = operator.get(f"/campaigns/{campaign_id}/preview/{job_id}.json")
    assert status.json["status"] == "queued"
    assert logged_in(console, "li.lei").get(
        f"/campaigns/{campaign_id}/preview/{job_id}.json").status_code == 403  # fmt: skip
    schemas = {"outreach": schema, "segment": f"{schema}_seg"}
    assert Runner(console.pool, lambda s: schemas.get(s, s), {k.name: k for k in JOBS}).drain()
    assert operator.get(f"/campaigns/{campaign_id}/preview/{job_id}.json").json["status"] == "done"
    done = page(operator.get(queued.headers["Location"]))
    assert 'id="preview-running"' not in done
    assert '<td id="preview-recipients">4</td>' in done
    assert '<td id="preview-to-send">3</td>' in done
    assert "没有企业微信联系人" in done  # the exclusion reason, in Chinese
    assert "白皮书：数字化工厂" in done  # the content each would get
    for contact in [*ids, "c_nowecom"]:
        assert contact in done  # named samples
    (job,) = console.sql("SELECT created_by FROM jobs WHERE job_id = %s", (job_id,))
    assert job["created_by"] == "console:han.meimei"


def test_a_launched_campaign_runs_and_its_page_shows_the_run_and_the_delivery_log(live):
    console, outreach = live
    ids = audience(outreach, 3)
    outreach.profile("c_nowecom", segments=[SEGMENT])  # no WeCom id: excluded
    operator = logged_in(console, "han.meimei")
    campaign_id = created(console, operator, outreach.content(title="白皮书：数字化工厂"))
    assert post(operator, f"/campaigns/{campaign_id}/launch", campaign_id).status_code == 302
    # The worker's scheduler and executor, at the campaign's first slot (Tuesday 10:00 there).
    outreach.now = first_slot(console, campaign_id)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert outreach.messages("single")  # the fake platform received the mass message
    detail = page(operator.get(f"/campaigns/{campaign_id}"))
    assert 'id="runs"' in detail and "完成" in detail  # the run, done
    assert "已发送 3" in detail and "没有企业微信联系人 1" in detail  # its stats, labelled
    for contact in [*ids, "c_nowecom"]:
        assert contact in detail  # the delivery log
    assert detail.count('class="delivery-sent"') == 3
    sent = page(operator.get(f"/campaigns/{campaign_id}?status=excluded"))
    assert sent.count('class="delivery-excluded"') == 1 and "c_nowecom" in sent
    assert 'class="delivery-sent"' not in sent
    none = page(operator.get(f"/campaigns/{campaign_id}?status=failed"))
    assert 'id="no-deliveries"' in none
    listing = page(operator.get("/campaigns"))
    assert "已发送 3" in listing  # the last run's stats in the list
