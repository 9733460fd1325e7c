"""The overview's sections on the seeded demo data (tests/integration/api/
test_segment_people.py): the chart's JSON block and the accessible tables, conversions, the
weekly movement of the last 8 weeks, risk accounts, recent stage changes and campaign runs, each
in Chinese and in the tenant's zone, and the empty states of a tenant with nothing yet."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from tests.integration.api.test_segment_people import JINGGONG, YUNSHAN
from tests.integration.console.conftest import log_in
from tests.integration.console.test_people_pages import account_id, contact_id, seg, text

ZONE = ZoneInfo("Asia/Shanghai")  # acme's


def overview(console, login="li.lei", tenant="acme") -> str:
    client = console.client()
    log_in(client, login, tenant=tenant)
    return text(client.get("/"))


def chart_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="overview-data">(.*?)</script>',
                      page, re.S)  # fmt: skip
    assert found, "the charts' data block"
    return json.loads(found.group(1))


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start : page.index("</section>", start)]


def test_the_funnel_chart_is_data_and_a_vendored_script_not_inline_code(console):
    page = overview(console)
    data = chart_data(page)
    assert [s["name"] for s in data["stages"]] == [
        "注意",
        "兴趣",
        "搜索",
        "比较",
        "检讨",
        "行动",
        "分享",
    ]
    assert len(data["weeks"]) == 8 and all(len(s["data"]) == 8 for s in data["movement"])
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    for attributes, body in scripts:
        assert 'type="application/json"' in attributes or (
            not body.strip() and "src=" in attributes
        )
    assert "/console/static/vendor/echarts/echarts.min.js" in page
    assert "/console/static/overview.js" in page
    assert 'id="funnel-table"' in page  # the server-rendered fallback stays


def test_the_vendored_files_are_served_from_the_console_itself(console):
    client = console.client()
    script = client.get("/console/static/vendor/echarts/echarts.min.js")
    assert script.status_code == 200 and b'version="6.1.0"' in script.data
    assert client.get("/console/static/overview.js").status_code == 200
    assert "script-src 'self'" in client.get("/login").headers["Content-Security-Policy"]


def test_conversion_between_consecutive_stages(console):
    page = overview(console)
    conversions = section(page, "conversions") if "<section" in page else page
    assert "注意 → 兴趣" in conversions and "检讨 → 行动" in conversions
    assert "%" in page[page.index('id="conversions"') : page.index('id="funnel-table"')]


def test_the_weekly_movement_counts_entries_of_the_last_8_weeks_in_the_tenants_zone(console):
    # acme is B2B: its funnel counts accounts.
    first, second = account_id(console, JINGGONG), account_id(console, YUNSHAN)
    now = datetime.now(UTC)
    # Two entries into 比较 (comparison) this week and one into 行动 (action) three weeks ago.
    monday = (now.astimezone(ZONE) - timedelta(days=now.astimezone(ZONE).weekday())).replace(
        hour=0, minute=5, second=0, microsecond=0
    )
    rows = [(first, "comparison", monday), (second, "comparison", monday),
            (first, "action", monday - timedelta(weeks=3))]  # fmt: skip
    for who, stage, at in rows:
        seg(console, "INSERT INTO {seg}.stage_history (tenant_id, subject_kind, subject_id, model, "
            "from_stage, to_stage, cause, changed_at, moved_by) VALUES ('acme', 'account', %s, "
            "'aisceas', 'interest', %s, 'stage comparison: 1 of biz.demo.requested within 30 "
            "days', %s, 'event') RETURNING id", (who, stage, at))  # fmt: skip
    page = overview(console)
    data = chart_data(page)
    movement = {s["name"]: s["data"] for s in data["movement"]}
    assert movement["比较"][-1] >= 2 and movement["行动"][-4] >= 1
    assert data["weeks"][-1] == f"{monday:%m-%d}"  # this week's Monday, in Shanghai
    table = section(page, "movement")
    assert 'id="movement-table"' in table and str(monday.date()) in table
    assert "movement-empty" not in table


def test_risk_accounts_link_to_the_account_with_the_reason_in_chinese(console):
    page = overview(console)
    risk = section(page, "risk")
    target = f"/accounts/{quote(account_id(console, YUNSHAN))}"
    assert f'href="{target}"' in risk
    assert "回款风险" in risk and "张发票逾期" in risk  # the reason in Chinese
    assert "CST" in risk


def test_newest_risk_first_and_only_flags_that_need_action(console):
    first, second = account_id(console, JINGGONG), account_id(console, YUNSHAN)
    now = datetime.now(UTC)
    flags = [{"flag": "inactive", "reason": "no interactions or orders for 50 days (limit 45)",
              "since": (now - timedelta(days=1)).isoformat()},
             {"flag": "growing", "reason": "x", "since": now.isoformat()}]  # fmt: skip
    seg(console, "UPDATE {seg}.accounts SET risk_flags = %s WHERE account_id = %s RETURNING 1",
        (Jsonb(flags), first))  # fmt: skip
    risk = section(overview(console), "risk")
    assert risk.index(f"/accounts/{quote(first)}") < risk.index(f"/accounts/{quote(second)}")
    assert "已 50 天没有互动或订单" in risk and "增长" not in risk


def test_recent_stage_changes_show_who_moved_what_and_why(console):
    page = overview(console)
    changes = section(page, "changes")
    assert 'id="stage-changes"' in changes
    assert changes.count("<tr>") - 1 <= 20
    assert "/contacts/" in changes and "/accounts/" in changes  # both kinds, linked
    assert "触点" in changes  # moved by a touchpoint
    assert "CST" in changes


def test_a_staff_override_shows_in_the_changes_with_its_actor(console):
    client = console.client()
    log_in(client, "han.meimei")
    contact = contact_id(console, "王总")
    page = text(client.get(f"/contacts/{contact}"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    moved = client.post(f"/contacts/{contact}/stage",
                        data={"stage": "share", "reason": "客户转介绍", "csrf_token": token})  # fmt: skip
    assert moved.status_code == 302
    changes = section(text(client.get("/")), "changes")
    first = changes[changes.index("<tbody>") : changes.index("</tr>", changes.index("<tbody>"))]
    assert "分享" in first and "console:han.meimei" in first and "员工调整：客户转介绍" in first


def test_recent_campaign_runs_link_to_the_campaign(console):
    console.sql(
        "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, content, "
        "trigger) VALUES ('acme', 'spring', '春季新品推介', 'wecom_single', 'active', '{}', '{}', "
        "'{}') RETURNING 1"
    )
    stats = {"by_status": {"sent": 5, "excluded": 3}, "people_reached": 5,
             "excluded": {"cap_day": 2, "no_discount_comparing": 1}}  # fmt: skip
    at = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    console.sql(
        "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, due_at, status, stats, "
        "started_at, finished_at) VALUES ('acme', 'spring', 'at:1', %s, 'done', %s, %s, %s) RETURNING 1",
        (at, Jsonb(stats), at, at),
    )
    runs = section(overview(console), "runs")
    assert 'href="/campaigns/spring"' in runs and "春季新品推介" in runs
    assert "完成" in runs and "每日频次上限 2" in runs and "比较阶段不发折扣（B2B） 1" in runs
    assert "2026-03-02 09:30 CST" in runs  # started, in Shanghai
    assert "runs-empty" not in runs


def test_a_tenant_with_nothing_yet_gets_empty_states_that_say_what_to_do(console):
    page = overview(console, "xiao.hua", tenant="bloom")
    assert 'id="runs-empty"' in page and "创建活动" in page
    assert 'id="risk"' not in page  # bloom is B2C: no accounts


def test_empty_states_of_an_empty_tenant(stack, schema):
    from tests.integration.console.conftest import build

    built, segment_schema = build(stack, schema, seeded=False)
    try:
        page = overview(built)
        for empty in (
            "funnel-empty",
            "movement-empty",
            "risk-empty",
            "lost-empty",
            "changes-empty",
            "runs-empty",
        ):
            assert f'id="{empty}"' in page
        assert 'id="funnel-table"' in page
    finally:
        built.pool.close()
        built.drop(stack.dsn, segment_schema)


def test_lost_customers_show_reason_staff_and_time_and_link_to_the_contact(console):
    contact = contact_id(console, "王总")
    lost = {"reason": "customer_deleted_staff", "staff_userid": "zhangwei",
            "at": "2026-03-02T01:30:00+00:00", "event_id": "ev-1"}  # fmt: skip
    seg(console, "UPDATE {seg}.contacts SET lost = %s, lost_at = %s WHERE contact_id = %s "
        "RETURNING 1", (Jsonb(lost), lost["at"], contact))  # fmt: skip
    try:
        section_html = section(overview(console), "lost")
        assert f'href="/contacts/{quote(contact)}"' in section_html and "王总" in section_html
        assert "客户删除了员工" in section_html and "zhangwei" in section_html
        assert "2026-03-02 09:30 CST" in section_html
        assert "lost-empty" not in section_html
        # No claim that the staff member was notified: that depends on the WeCom app and send.
        assert "已收到通知" not in section_html and "配置了企业微信应用" in section_html
    finally:
        seg(console, "UPDATE {seg}.contacts SET lost = NULL, lost_at = NULL WHERE contact_id = %s "
        "RETURNING 1",
            (contact,))  # fmt: skip
    assert 'id="lost-empty"' in overview(console)
