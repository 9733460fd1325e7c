"""The segments pages on the seeded demo data (tests/integration/api/test_segment_people.py:
acme's segments tech-examining and deciders, bloom's buyers): the list, a segment's members, the
builder (saved through the API's functions and audited as the console user, a typo in a name
answered inline with the API's message, a duplicate id, an oversize expression), the live count
(the build's evaluation), delete, and who may do what."""

from __future__ import annotations

import html
import json

import pytest
from flask import g

from console import messages
from console import segments as pages
from services.segment.api_common import segment_connection
from services.segment.api_segments import check_rule
from shared.api.errors import ApiError
from tests.integration.api.test_segment_people import DECIDERS
from tests.integration.console.conftest import csrf, log_in
from tests.integration.console.test_people_pages import seg, text


def escaped(value: str) -> str:
    """``value`` as the templates write it (Jinja escapes ``"`` as ``&#34;``)."""
    return html.escape(value).replace("&quot;", "&#34;").replace("&#x27;", "&#39;")


VALID = json.dumps({"attribute": "role", "equals": "technical"})


def logged_in(console, login: str, tenant: str = "acme"):
    client = console.client()
    log_in(client, login, tenant=tenant)
    return client


def live_count(client, expression: str):
    """The builder's live count, as console/static/segments.js asks it: a POST with the token."""
    token = csrf(client, "/segments")
    return client.post("/segments/preview", data={"expr": expression, "csrf_token": token})


def create(client, **fields):
    form = {"segment_id": "tech-people", "name": "技术人员", "description": "",
            "expression": VALID, **fields}  # fmt: skip
    form.setdefault("csrf_token", csrf(client, "/segments/new"))
    return client.post("/segments/new", data=form)


def test_the_list_shows_the_tenants_segments_only(console):
    page = text(logged_in(console, "li.lei").get("/segments"))
    assert "tech-examining" in page and "deciders" in page and "Bosses" in page
    assert "buyers" not in page  # bloom's
    assert "decision_maker" in page  # the expression
    assert "联系人" in page  # members are contacts
    assert 'id="new-segment"' not in page  # a viewer is offered no builder


def test_an_empty_list_says_what_to_do(console):
    seg(console, "DELETE FROM {seg}.segments WHERE tenant_id = 'acme' RETURNING 1")
    page = text(logged_in(console, "boss").get("/segments"))
    assert 'id="segments-empty"' in page and "新建分群" in page


def test_a_segment_lists_its_members_linked_to_their_pages(console):
    client = logged_in(console, "li.lei")
    page = text(client.get("/segments/deciders"))
    members = seg(console, "SELECT contact_id FROM {seg}.segment_members "
                           "WHERE tenant_id = 'acme' AND segment_id = 'deciders'")  # fmt: skip
    assert members
    for m in members:
        assert f'href="/contacts/{m["contact_id"]}"' in page
    assert "王总" in page and 'id="members-table"' in page
    assert 'id="edit-segment"' not in page


def test_another_tenants_segment_is_404(console):
    client = logged_in(console, "boss")
    for path in ("/segments/buyers", "/segments/buyers/edit", "/segments/buyers/delete"):
        assert client.get(path).status_code == 404
    token = csrf(client, "/segments/new")
    response = client.post("/segments/buyers/delete", data={"csrf_token": token})
    assert response.status_code == 404
    assert seg(console, "SELECT 1 FROM {seg}.segments WHERE segment_id = 'buyers'")


def test_create_a_valid_segment_audited_as_the_user(console):
    client = logged_in(console, "boss")
    response = create(client)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/segments/tech-people")
    (row,) = seg(console, "SELECT name, rule, build_status FROM {seg}.segments "
                          "WHERE tenant_id = 'acme' AND segment_id = 'tech-people'")  # fmt: skip
    assert row["rule"] == json.loads(VALID) and row["build_status"] == "building"
    (entry,) = console.sql("SELECT actor, details FROM audit_log WHERE action = 'segment.create'")
    assert entry["actor"] == "console:boss" and entry["details"]["name"] == "技术人员"
    page = text(client.get(response.headers["Location"]))
    assert "构建中" in page and "分群已保存" in page


def test_a_yaml_expression_is_accepted(console):
    client = logged_in(console, "boss")
    response = create(
        client, expression="any:\n  - tag: risk:payment_risk\n  - stage_at_least: action\n"
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("rule", "wrong", "valid"),
    [
        ({"attribute": "rol", "equals": "technical"}, "rol", "account_stage"),
        ({"stage_at_least": "examinaton"}, "examinaton", "examination"),
        ({"attribute": "role", "equals": "tecnical"}, "tecnical", "decision_maker"),
        ({"tag": "risk:payment_rsk"}, "payment_rsk", "risk:churn_risk"),
        ({"attribute": "role", "equal": "technical"}, "equal", "Unknown field"),
    ],
)
def test_a_typo_is_answered_inline_with_the_apis_message(console, rule, wrong, valid):
    client = logged_in(console, "boss")
    expression = json.dumps(rule)
    response = create(client, expression=expression, name="我的分群")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="expression-error"' in page and "表达式有误" in page
    assert wrong in page and valid in page  # the bad name and what it could have been
    assert escaped(expression) in page and "我的分群" in page  # the form kept
    assert not seg(console, "SELECT 1 FROM {seg}.segments WHERE segment_id = 'tech-people'")
    assert not console.sql("SELECT 1 FROM audit_log WHERE action = 'segment.create'")


def test_the_inline_message_is_the_apis(console):
    """The console shows what POST /api/v1/segments would answer: translated, keeping the
    names, with the API's own words in the tooltip (console/messages.py)."""
    client = logged_in(console, "boss")
    rule = {"stage_at_least": "examinaton"}
    page = create(client, expression=json.dumps(rule)).get_data(as_text=True)
    with console.app.test_request_context():
        g.siyu_tenant_id = "acme"
        with segment_connection() as conn, pytest.raises(ApiError) as refused:
            check_rule(conn, "acme", rule)
    assert refused.value.code == "invalid_segment"
    assert f'title="{escaped(refused.value.message)}"' in page
    with console.app.test_request_context():
        shown = messages.translated(refused.value.message)
    assert shown.startswith("rule.stage_at_least: 未知的阶段 'examinaton'")
    assert escaped(shown) in page


def test_a_duplicate_id_is_refused_inline(console):
    client = logged_in(console, "boss")
    response = create(client, segment_id="deciders")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="segment-id-error"' in page and "已有相同 ID 的分群" in page
    (row,) = seg(console, "SELECT name FROM {seg}.segments WHERE tenant_id = 'acme' "
                          "AND segment_id = 'deciders'")  # fmt: skip
    assert row["name"] == "Decision makers"


@pytest.mark.parametrize(
    ("fields", "error_id"),
    [
        ({"segment_id": "Bad Id"}, "segment-id-error"),
        ({"segment_id": "new"}, "segment-id-error"),
        ({"name": ""}, "name-error"),
        ({"expression": "all: [unclosed"}, "expression-error"),
        ({"expression": "- a list"}, "expression-error"),
        ({"expression": ""}, "expression-error"),
    ],
)
def test_bad_fields_are_answered_inline(console, fields, error_id):
    response = create(logged_in(console, "boss"), **fields)
    assert response.status_code == 400
    assert f'id="{error_id}"' in response.get_data(as_text=True)


def test_an_oversize_expression_is_refused(console):
    client = logged_in(console, "boss")
    huge = json.dumps({"any": [{"tag": f"t{i}"} for i in range(3000)]})
    response = create(client, expression=huge)
    assert response.status_code == 400
    assert "表达式有" in response.get_data(as_text=True)  # "...has N characters; at most..."
    big = json.dumps({"any": [{"tag": f"t{i}"} for i in range(60)]})  # under 16 KiB, 61 nodes
    response = create(client, expression=big)
    assert response.status_code == 400 and "at most 50" in response.get_data(as_text=True)
    preview = live_count(client, huge)
    assert preview.status_code == 400 and preview.get_json()["ok"] is False


def test_edit_replaces_through_the_api_and_delete_asks_first(console):
    client = logged_in(console, "boss")
    form = text(client.get("/segments/deciders/edit"))
    assert "decision_maker" in form and 'name="segment_id"' not in form
    token = csrf(client, "/segments/deciders/edit")
    response = client.post("/segments/deciders/edit", data={
        "csrf_token": token, "name": "决策者", "description": "老板们", "expression": VALID})  # fmt: skip
    assert response.status_code == 302
    (entry,) = console.sql("SELECT actor, details FROM audit_log WHERE action = 'segment.replace'")
    assert entry["actor"] == "console:boss" and entry["details"]["previous"]["rule"] == DECIDERS
    confirm = text(client.get("/segments/deciders/delete"))
    assert 'id="confirm-delete"' in confirm
    assert seg(console, "SELECT 1 FROM {seg}.segments WHERE segment_id = 'deciders'")
    response = client.post("/segments/deciders/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert not seg(console, "SELECT 1 FROM {seg}.segments WHERE segment_id = 'deciders'")
    (entry,) = console.sql("SELECT actor FROM audit_log WHERE action = 'segment.delete'")
    assert entry["actor"] == "console:boss"
    assert "分群已删除" in text(client.get("/segments?done=deleted"))


@pytest.mark.parametrize(
    ("tenant", "login", "segment_id", "rule"),
    [("acme", "li.lei", "deciders", DECIDERS),  # a viewer may count
     ("bloom", "xiao.hua", "buyers", {"event": "biz.order.paid"})],  # reads the touchpoints
)  # fmt: skip
def test_the_live_count_is_the_builds_evaluation(console, tenant, login, segment_id, rule):
    client = logged_in(console, login, tenant)
    answer = live_count(client, json.dumps(rule))
    assert answer.status_code == 200
    found = answer.get_json()
    members = seg(console, "SELECT count(*) AS n FROM {seg}.segment_members "
                           "WHERE tenant_id = %s AND segment_id = %s", (tenant, segment_id))  # fmt: skip
    contacts = seg(console, "SELECT count(*) AS n FROM {seg}.contacts WHERE tenant_id = %s",
                   (tenant,))  # fmt: skip
    assert found["ok"] is True and found["count"] == members[0]["n"] >= 1
    assert found["total"] == contacts[0]["n"] and found["partial"] is False
    assert "位成员" in found["text"]


def test_a_live_count_past_its_bound_says_how_far_it_went(console, monkeypatch):
    monkeypatch.setattr(pages, "PREVIEW_CONTACTS", 1)
    client = logged_in(console, "li.lei")
    found = live_count(client, VALID).get_json()
    assert found["ok"] is True and found["partial"] is True and found["evaluated"] == 1
    assert "前 1 位联系人中" in found["text"] and str(found["total"]) in found["text"]


def test_the_live_count_of_a_typo_is_the_apis_error(console):
    client = logged_in(console, "li.lei")
    answer = live_count(client, '{"stage_at_least": "actoin"}')
    assert answer.status_code == 400
    found = answer.get_json()
    assert found["ok"] is False and "actoin" in found["error"] and "action" in found["error"]


def test_the_live_count_needs_a_session(console):
    """Without a session there is no CSRF token to send: refused before anything is counted."""
    response = console.client().post("/segments/preview", data={"expr": VALID})
    assert response.status_code == 400 and response.get_json(silent=True) is None
    client = logged_in(console, "li.lei")  # with a session, the token is still needed
    response = client.post("/segments/preview", data={"expr": VALID})
    assert response.status_code == 400 and response.get_json(silent=True) is None


@pytest.mark.parametrize("login", ["li.lei", "han.meimei"])
def test_a_viewer_or_operator_gets_no_builder_and_posts_are_refused(console, login):
    """Creating, changing and deleting segments need the API's role for them: admin."""
    client = logged_in(console, login)
    assert client.get("/segments/new").status_code == 403
    assert client.get("/segments/deciders/edit").status_code == 403
    token = csrf(client, "/segments")
    for path in ("/segments/new", "/segments/deciders/edit", "/segments/deciders/delete"):
        response = client.post(path, data={"csrf_token": token, "segment_id": "x-y", "name": "x",
                                           "expression": VALID})  # fmt: skip
        assert response.status_code == 403, path
    assert len(seg(console, "SELECT 1 FROM {seg}.segments WHERE tenant_id = 'acme'")) == 2
    assert not console.sql("SELECT 1 FROM audit_log WHERE action LIKE 'segment.%%'")


def test_a_forged_post_without_csrf_is_refused(console):
    client = logged_in(console, "boss")
    response = client.post("/segments/new", data={"segment_id": "forged", "name": "x",
                                                  "expression": VALID})  # fmt: skip
    assert response.status_code == 400
    response = client.post("/segments/deciders/delete")
    assert response.status_code == 400
    assert len(seg(console, "SELECT 1 FROM {seg}.segments WHERE tenant_id = 'acme'")) == 2
