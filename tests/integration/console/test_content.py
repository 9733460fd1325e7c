"""The content library's pages on the real app: create and edit through the API's functions
(audited as the console user), inline 400s listing the valid names, oversize payloads, 404 for
another tenant's item, viewers (no form, POST 403), CSRF, the coverage matrix's counts and gaps,
and an account's recommended next content."""

from __future__ import annotations

import html
import re

import pytest

from tests.integration.api.test_segment_people import JINGGONG
from tests.integration.console.conftest import csrf, log_in
from tests.integration.console.test_people_pages import account_id, seg, text

WECOM = {"wecom_text": "本周白皮书", "wecom_link_title": "数字化工厂",
         "wecom_link_url": "https://acme.example/wp"}  # fmt: skip


def logged_in(console, login: str, tenant: str = "acme"):
    client = console.client()
    log_in(client, login, tenant=tenant)
    return client


def post(client, path: str, data: dict, *, token=True):
    if token:
        data = {**data, "csrf_token": csrf(client, "/content/new")}
    return client.post(path, data=data)


def create(client, **fields):
    data = {"title": "白皮书：数字化工厂", "format": "whitepaper", "stages": ["interest"],
            "roles": ["technical"], "topics": "MES、数字化", **WECOM, **fields}  # fmt: skip
    return post(client, "/content/new", data)


def created_id(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    return response.headers["Location"].split("/content/")[1].split("?")[0]


def test_the_empty_library_says_what_to_do(console):
    page = text(logged_in(console, "han.meimei").get("/content"))
    assert 'id="content-empty"' in page and "新建内容" in page
    viewer = text(logged_in(console, "li.lei").get("/content"))
    assert "运营或管理员可以添加内容" in viewer and 'id="new-content"' not in viewer
    assert 'id="coverage-matrix"' in viewer and "/content" in text(
        logged_in(console, "li.lei").get("/")
    )  # in the navigation


def test_an_operator_creates_content_shown_in_the_list(console):
    client = logged_in(console, "han.meimei")
    assert 'id="content-form"' in text(client.get("/content/new"))
    content_id = created_id(create(client))
    item = text(client.get(f"/content/{content_id}?done=created"))
    assert "内容已创建" in item and "白皮书：数字化工厂" in item and "技术" in item
    assert "企业微信单聊" in item and "https://acme.example/wp" in item
    (row,) = console.sql("SELECT * FROM content WHERE content_id = %s", (content_id,))
    assert row["stages"] == ["interest"] and row["roles"] == ["technical"]
    assert row["topics"] == ["MES", "数字化"] and row["tenant_id"] == "acme"
    assert row["payloads"] == {"wecom": {"text": "本周白皮书", "attachments": [
        {"msgtype": "link", "link": {"title": "数字化工厂", "url": "https://acme.example/wp"}}]}}  # fmt: skip
    (entry,) = console.sql(
        "SELECT actor FROM audit_log WHERE action = 'content.create' AND target = %s",
        (content_id,),
    )
    assert entry["actor"] == "console:han.meimei"
    listed = text(client.get("/content"))
    assert 'id="content-table"' in listed and "白皮书：数字化工厂" in listed and "CST" in listed
    assert "白皮书" in text(client.get("/content?format=whitepaper&stage=interest&role=technical"))
    assert 'id="content-empty"' in text(client.get("/content?format=promotion"))


def test_an_operator_edits_and_archives_content(console):
    client = logged_in(console, "han.meimei")
    content_id = created_id(create(client))
    form = text(client.get(f"/content/{content_id}/edit"))
    assert 'value="白皮书：数字化工厂"' in form and "checked" in form
    data = {"title": "白皮书（第二版）", "format": "whitepaper", "stages": ["interest", "search"],
            "roles": ["technical", "finance"], "topics": "MES",
            "payload_oa_mass": '{"msgtype": "text", "text": "第二版"}'}  # fmt: skip
    saved = post(client, f"/content/{content_id}/edit", data)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:1500]
    assert "内容已保存" in text(client.get(saved.headers["Location"]))
    (row,) = console.sql("SELECT * FROM content WHERE content_id = %s", (content_id,))
    assert row["title"] == "白皮书（第二版）" and row["roles"] == ["technical", "finance"]
    assert row["payloads"] == {"oa_mass": {"msgtype": "text", "text": "第二版"}}
    archived = post(client, f"/content/{content_id}/archive", {})
    assert archived.status_code == 302
    (row,) = console.sql("SELECT status FROM content WHERE content_id = %s", (content_id,))
    assert row["status"] == "archived"
    actions = console.sql(
        "SELECT action, actor FROM audit_log WHERE target = %s ORDER BY id", (content_id,)
    )
    assert actions == [{"action": a, "actor": "console:han.meimei"}
                       for a in ("content.create", "content.update", "content.archive")]  # fmt: skip
    assert "白皮书（第二版）" not in text(client.get("/content"))
    assert "白皮书（第二版）" in text(client.get("/content?status=archived"))


@pytest.mark.parametrize(
    ("fields", "field", "shown"),
    [
        ({"stages": ["attension"]}, "stages", ["attension", "注意 (attention)", "分享 (share)"]),
        ({"roles": ["cfo"]}, "roles", ["cfo", "决策者 (decision_maker)", "采购 (procurement)"]),
        ({"format": "podcast"}, "format", ["podcast", "白皮书 (whitepaper)", "促销 (promotion)"]),
        ({"title": ""}, "title", ["请填写 1 到 200 个字符的标题"]),
        ({"wecom_text": "", "wecom_link_title": "", "wecom_link_url": ""}, "payloads",
         ["请至少为一个渠道填写发送内容"]),
        ({"wecom_link_url": "javascript:alert(1)"}, "payloads-wecom", ["url"]),
        ({"payload_oa_custom": "{not json"}, "payloads-oa_custom", ["不是有效的 JSON"]),
    ],
)  # fmt: skip
def test_bad_input_is_an_inline_400_keeping_the_form(console, fields, field, shown):
    client = logged_in(console, "han.meimei")
    refused = create(client, title=fields.pop("title", "保留的标题"), **fields)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'id="content-form"' in page and 'id="form-error"' in page
    error = re.search(rf'<p class="error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error, page
    for expected in shown:
        assert expected in error.group(1).replace("&#39;", "'")
    if field != "title":
        assert 'value="保留的标题"' in page  # the form is kept
    assert console.sql("SELECT count(*) AS n FROM content")[0]["n"] == 0


@pytest.mark.parametrize(
    "fields",
    [{"wecom_text": "长" * 4001},
     {"payload_oa_template": '{"template_id": "t", "data": {"x": "' + "y" * 20_000 + '"}}'}],
)  # fmt: skip
def test_an_oversize_payload_is_refused_inline(console, fields):
    client = logged_in(console, "han.meimei")
    refused = create(client, **fields)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "4000" in page or "最多 20000 个字符" in page
    assert console.sql("SELECT count(*) AS n FROM content")[0]["n"] == 0


def test_another_tenants_item_is_404(console):
    content_id = created_id(create(logged_in(console, "han.meimei")))
    bloom = logged_in(console, "xiao.hua", "bloom")
    for path in (f"/content/{content_id}", f"/content/{content_id}/edit"):
        assert bloom.get(path).status_code == 404
    assert post(bloom, f"/content/{content_id}/edit", {"title": "x"}).status_code == 404
    assert post(bloom, f"/content/{content_id}/archive", {}).status_code == 404
    assert bloom.get("/content/no-such-item").status_code == 404
    (row,) = console.sql("SELECT title, status FROM content WHERE content_id = %s", (content_id,))
    assert row == {"title": "白皮书：数字化工厂", "status": "active"}


def test_a_viewer_sees_no_form_and_its_posts_are_refused(console):
    content_id = created_id(create(logged_in(console, "han.meimei")))
    viewer = logged_in(console, "li.lei")
    item = text(viewer.get(f"/content/{content_id}"))
    assert 'id="edit-content"' not in item and 'id="archive-form"' not in item
    assert viewer.get("/content/new").status_code == 403
    assert viewer.get(f"/content/{content_id}/edit").status_code == 403
    token = csrf(viewer, "/content")  # the logout form's token: a valid one
    for path in ("/content/new", f"/content/{content_id}/edit", f"/content/{content_id}/archive"):
        forged = viewer.post(path, data={"title": "x", "format": "article", "csrf_token": token,
                                         **WECOM})  # fmt: skip
        assert forged.status_code == 403
    assert console.sql("SELECT count(*) AS n FROM content")[0]["n"] == 1


def test_a_post_without_the_csrf_token_is_400(console):
    client = logged_in(console, "han.meimei")
    refused = post(client, "/content/new", {"title": "x", "format": "article", **WECOM},
                   token=False)  # fmt: skip
    assert refused.status_code == 400
    assert console.sql("SELECT count(*) AS n FROM content")[0]["n"] == 0


def cell(page: str, stage: str, role: str) -> tuple[str, int]:
    found = re.search(
        rf'<td class="(\w+)" data-stage="{stage}" data-role="{re.escape(role)}">\s*<a [^>]*>(\d+)</a>',
        page,
    )
    assert found, (stage, role)
    return found.group(1), int(found.group(2))


def test_the_coverage_matrix_counts_items_and_marks_gaps(console):
    client = logged_in(console, "han.meimei")
    create(client, stages=["interest", "search"], roles=["technical", "finance"])
    create(client, title="案例", format="case_study", stages=["interest"], roles=["technical"])
    create(client, title="通用", format="article", stages=["interest"], roles=[])
    create(client, title="不限阶段", format="article", stages=[], roles=["finance"])
    page = text(client.get("/content"))
    assert cell(page, "interest", "technical") == ("covered", 2)
    assert cell(page, "interest", "finance") == ("covered", 1)
    assert cell(page, "search", "finance") == ("covered", 1)
    assert cell(page, "interest", "") == ("covered", 1)  # the general column
    assert cell(page, "attention", "technical") == ("gap", 0)
    assert cell(page, "action", "compliance") == ("gap", 0)
    assert "/content/new?stage=attention&amp;role=technical" in page  # a gap's prefilled form
    assert "/content?stage=interest&amp;role=technical" in page  # a cell's filtered list
    gaps = 8 * 6 - 4  # AISCEAS' 7 stages and lapsed, 6 roles; 4 role cells filled
    assert f"缺口: {gaps}" in page and "未标注阶段的内容" in page
    prefilled = text(client.get("/content/new?stage=attention&role=technical"))
    assert re.search(r'value="attention" checked', prefilled)
    assert re.search(r'value="technical" checked', prefilled)


def test_a_b2c_matrix_is_stage_by_no_role(console):
    client = logged_in(console, "xiao.hua", "bloom")
    created_id(post(client, "/content/new", {"title": "新人礼", "format": "promotion",
                                             "stages": ["activation"], **WECOM}))  # fmt: skip
    page = text(client.get("/content"))
    assert cell(page, "activation", "*") == ("covered", 1)
    assert cell(page, "acquisition", "*") == ("gap", 0)
    assert "决策者" not in page  # no buying roles for consumers


def test_an_account_page_recommends_content_for_its_missing_roles(console):
    client = logged_in(console, "han.meimei")
    account = account_id(console, JINGGONG)
    (row,) = seg(console, "SELECT stage FROM {seg}.accounts WHERE account_id = %s", (account,))
    page = text(client.get(f"/accounts/{account}"))
    assert 'id="no-recommended"' in page
    missing = re.search(r'id="missing-roles">[^:]*: (.*?)</p>', page)
    assert missing
    general = created_id(create(client, title="通用介绍", stages=[row["stage"]], roles=[]))
    page = text(client.get(f"/accounts/{account}"))
    assert f"/content/{general}" in page  # no item for a missing role: the general one
    specific = created_id(create(client, title="合规白皮书", stages=[row["stage"]],
                                 roles=["compliance"]))  # fmt: skip
    create(client, title="别的阶段", stages=["share" if row["stage"] != "share" else "attention"],
           roles=["compliance"])  # fmt: skip
    page = text(client.get(f"/accounts/{account}"))
    recommended = re.search(r'<ul class="recommended" id="recommended">(.*?)</ul>', page, re.S)
    assert recommended
    assert f"/content/{specific}" in recommended.group(1) and "合规/法务" in recommended.group(1)
    assert "通用介绍" not in recommended.group(1) and "别的阶段" not in recommended.group(1)


def test_an_edit_turning_a_notice_an_active_template_campaign_sends_into_marketing_is_refused(
    console,
):
    client = logged_in(console, "han.meimei")
    notice = {"title": "预约提醒", "format": "service_notice", "wecom_text": "", "wecom_link_title": "",
              "wecom_link_url": "", "payload_oa_template":
              '{"template_id": "T", "data": {"first": {"value": "您的预约"}}}'}  # fmt: skip
    content_id = created_id(create(client, **notice))
    console.sql(
        "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, content, "
        "trigger) VALUES ('acme', 'cmp_notice', '提醒', 'oa_template', 'active', '{}', %s, "
        '\'{"schedule": {"cron": "0 10 * * TUE"}}\') RETURNING campaign_id',
        (f'{{"item": "{content_id}"}}',),
    )
    refused = post(client, f"/content/{content_id}/edit", {**notice, "format": "promotion"})
    assert refused.status_code == 400
    body = html.unescape(refused.get_data(as_text=True))
    assert 'id="format-error"' in body and "公众号模板消息只能发送服务通知" in body
    assert "cmp_notice" in body and 'value="预约提醒"' in body
    (row,) = console.sql("SELECT format FROM content WHERE content_id = %s", (content_id,))
    assert row["format"] == "service_notice"
