"""The campaign pages' pure parts (console/labels.py, console/campaigns.py): a Chinese label for
every channel, status and exclusion reason the outreach service can give; schedules in words;
the wizard's form read into the API's body; errors of a body path placed on the wizard's field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from console import campaigns, labels
from console.app import init_console
from services.outreach import api_campaigns, api_deliveries
from shared.config import Settings
from shared.vocabulary import CHANNELS

TUESDAY_10 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture(scope="module")
def app():
    app = Flask("campaign-pages-test")
    init_console(app, Settings.from_env({"SIYU_CONSOLE_SECRET": "s" * 32}))
    return app


@pytest.fixture
def zh(app):
    with app.test_request_context("/"):
        yield


def test_every_code_the_service_gives_has_a_label():
    assert set(labels.CHANNELS) == set(CHANNELS)
    assert set(labels.CAMPAIGN_STATUSES) == set(api_campaigns.STATUSES)
    assert set(labels.DELIVERY_STATUSES) == set(api_deliveries.STATUSES)
    # exclusion reasons: tests/unit/console/test_reasons.py (read from policies.py's code)


@pytest.mark.parametrize(
    ("function", "code", "chinese"),
    [
        (labels.channel, "wecom_single", "企业微信单聊"),
        (labels.channel, "oa_mass", "公众号群发"),
        (labels.campaign_status, "draft", "草稿"),
        (labels.campaign_status, "active", "进行中"),
        (labels.run_status, "done", "完成"),
        (labels.delivery_status, "sent", "已发送"),
        (labels.exclusion, "no_wecom_id", "没有企业微信联系人"),
        (labels.exclusion, "cap_week", "每周频次上限"),
        (labels.exclusion, "excluded:segments", "活动排除规则：分群"),
    ],
)
def test_labels_are_chinese_by_default(zh, function, code, chinese):
    assert function(code) == chinese


@pytest.mark.parametrize(
    ("trigger", "words"),
    [
        ({"schedule": {"cron": "0 10 * * TUE"}}, "每周二 10:00 (Asia/Shanghai)"),
        ({"schedule": {"cron": "30 9 * * MON,FRI"}}, "每周一、周五 09:30 (Asia/Shanghai)"),
        ({"schedule": {"cron": "0 8 * * *"}}, "每天 08:00 (Asia/Shanghai)"),
        ({"schedule": {"cron": "0 8 1 * *"}}, "每月 1 日 08:00 (Asia/Shanghai)"),
        ({"schedule": {"cron": "*/30 * * * *"}}, "cron 计划 */30 * * * * (Asia/Shanghai)"),
        ({"schedule": {"rrule": "FREQ=DAILY", "timezone": "UTC"}}, "重复规则 FREQ=DAILY (UTC)"),
        ({"event": {"stage_entered": "comparison", "subject": "account"}}, "客户公司进入比较阶段时"),
        ({"event": {"risk_flag": "churn_risk", "delay_minutes": 5}}, "客户公司被标记为流失风险时，5 分钟后"),
    ],
)  # fmt: skip
def test_schedules_in_words(zh, trigger, words):
    assert campaigns.schedule_words(trigger, "Asia/Shanghai") == words


def test_next_runs_are_the_schedules_own_times_in_the_tenants_zone(zh):
    times = campaigns.next_runs({"cron": "0 10 * * TUE"}, "Asia/Shanghai", TUESDAY_10)
    shown = [campaigns.when(t, "Asia/Shanghai") for t in times[:2]]
    assert shown == ["2026-12-08 (周二) 10:00 CST", "2026-12-15 (周二) 10:00 CST"]
    assert len(times) == campaigns.NEXT_RUNS


def form(**changes) -> dict:
    base = {"name": "n", "segments": ["s1"], "stages": [], "roles": [], "exclude_segments": [],
            "trigger_kind": "schedule", "schedule_kind": "weekly", "time": "10:00",
            "weekdays": ["TUE", "THU"], "content_kind": "item", "item": "cnt_1", "series": [],
            "channel": "wecom_group", "quiet_start": "", "quiet_end": ""}  # fmt: skip
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "part", "expected"),
    [
        ({}, "trigger", {"schedule": {"cron": "0 10 * * TUE,THU"}}),
        ({"schedule_kind": "daily", "time": "07:05"}, "trigger", {"schedule": {"cron": "5 7 * * *"}}),
        ({"schedule_kind": "rrule", "rrule": "FREQ=DAILY"}, "trigger", {"schedule": {"rrule": "FREQ=DAILY"}}),
        ({"trigger_kind": "stage_entered", "event_stage": "action", "delay_minutes": "15"},
         "trigger", {"event": {"stage_entered": "action", "subject": "contact", "delay_minutes": 15}}),
        ({"content_kind": "series", "series": ["a", "b"]}, "content", {"series": ["a", "b"]}),
        ({"exclude_segments": ["s2"], "roles": ["finance"]}, "audience",
         {"segments": ["s1"], "roles": ["finance"], "exclude": {"segments": ["s2"]}}),
        ({"quiet_start": "21:00", "quiet_end": "08:00"}, "quiet_hours", {"start": "21:00", "end": "08:00"}),
    ],
)  # fmt: skip
def test_the_wizard_reads_into_the_apis_body(zh, changes, part, expected):
    body, errors = campaigns.body_of(form(**changes))
    assert errors == {}
    assert body[part] == expected
    assert campaigns.validated(body)[1] == {}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("audience.segments[0]", "segments"),
        ("audience.exclude.segments[1]", "exclude_segments"),
        ("audience.stages[0]", "stages"),
        ("trigger.event.stage_entered", "event_stage"),
        ("trigger.schedule", "schedule_kind"),
        ("content.series[2]", "series"),
        ("content.item", "item"),
        ("quiet_hours.start", "quiet"),
        ("channel", "channel"),
        ("allow_b2b_promotion", "form"),
    ],
)
def test_an_error_of_a_body_path_is_shown_on_its_field(path, field):
    errors = campaigns.form_errors({path: ["bad"], "valid": {path: ["x", "y"]}})
    assert errors[field] == "bad"
    assert errors[f"{field}_valid"] == ["x", "y"]


def test_nested_schema_messages_reach_their_fields():
    errors = campaigns.form_errors({"trigger": {"schedule": {"cron": ["not a cron"]}},
                                    "audience": {"roles": {0: ["Unknown buying role"]}}})  # fmt: skip
    assert errors == {"schedule_kind": "not a cron", "roles": "Unknown buying role"}
