"""Group welcome templates through the admin API (services/outreach/api_welcome.py): kept in the
fake WeCom under its template_id and here, validated, audited, at most 100 per tenant."""

from __future__ import annotations

import pytest

PATH = "/group-welcome-templates"
LINK = {"msgtype": "link", "link": {"title": "入群必读", "url": "https://acme.example/rules"}}


def create(outreach, who="operator", **body):
    return outreach.call("POST", PATH, who, json={"name": "新人欢迎", "text": "欢迎入群", **body})


def wecom_templates(outreach) -> dict:
    from sandbox.fake_wechat.welcome import book

    return book(outreach.fake.state).templates.get(outreach.world().corp_id, {})


def test_create_edit_get_delete_goes_to_wecom_and_is_audited(outreach):
    made = create(outreach, attachment=LINK)
    assert made.status_code == 201, made.json
    template_id = made.json["template_id"]
    assert wecom_templates(outreach)[template_id] == {"text": {"content": "欢迎入群"},
                                                      "link": LINK["link"]}  # fmt: skip
    edited = outreach.call("PUT", f"{PATH}/{template_id}", "operator",
                           json={"name": "新人欢迎", "text": "欢迎!", "notify": False})  # fmt: skip
    assert edited.status_code == 200, edited.json
    assert (edited.json["text"], edited.json["notify"]) == ("欢迎!", False)
    assert outreach.call("GET", f"{PATH}/{template_id}", "viewer").json["text"] == "欢迎!"
    assert [t["name"] for t in outreach.call("GET", PATH, "viewer").json] == ["新人欢迎"]
    assert outreach.call("DELETE", f"{PATH}/{template_id}", "operator").status_code == 204
    assert template_id not in wecom_templates(outreach)
    assert outreach.call("GET", f"{PATH}/{template_id}", "viewer").status_code == 404
    actions = [r["action"] for r in outreach.sql(
        "SELECT action FROM audit_log WHERE action LIKE 'group_welcome.%%' ORDER BY id")]  # fmt: skip
    assert actions == ["group_welcome.create", "group_welcome.update", "group_welcome.delete"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "字" * 1400}, "text"),
        ({"text": "字" * 1001}, "text"),  # 3003 bytes: a template's text is at most 3000
        ({"attachment": {"msgtype": "poster", "poster": {}}}, "attachment.msgtype"),
        ({"attachment": {"msgtype": "link", "link": {"title": "t"}}}, "attachment.link.url"),
        ({"attachment": {"msgtype": "link", "link": {"title": "t", "url": "javascript:x"}}},
         "attachment.link.url"),
        ({"name": ""}, "name"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_field(outreach, body, field):
    response = create(outreach, **body)
    assert response.status_code == 400
    assert field in str(response.json)
    assert wecom_templates(outreach) == {}


def test_a_name_taken_is_a_409_and_viewers_may_not_create(outreach):
    assert create(outreach).status_code == 201
    assert create(outreach).status_code == 409
    assert create(outreach, who="viewer").status_code == 403
    assert len(wecom_templates(outreach)) == 1


def test_the_101st_template_is_refused(outreach):
    outreach.sql(
        "INSERT INTO group_welcome_templates (tenant_id, template_id, name, text) "
        "SELECT 'acme', 'tpl' || i, 'name' || i, 'x' FROM generate_series(1, 100) AS i"
    )
    response = create(outreach)
    assert response.status_code == 409
    assert "100" in response.json["error"]["message"]


def test_an_unknown_tenant_or_template_is_a_404(outreach):
    assert outreach.call("GET", f"{PATH}/nope", "viewer").status_code == 404
    response = outreach.call("GET", PATH, "platform", query_string={"tenant": "nope"})
    assert response.status_code == 404


def test_wecom_refusing_is_a_400_with_its_errcode(outreach):
    outreach.fake.fail("externalcontact/group_welcome_template/add", 48002)
    response = create(outreach)
    assert response.status_code == 400
    assert response.json["error"]["details"]["errcode"] == 48002
    assert outreach.call("GET", PATH, "viewer").json == []


def test_wecoms_100_reached_by_other_apps_templates_is_a_409(outreach):
    from sandbox.fake_wechat.welcome import book

    others = {f"other{i}": {"text": {"content": "x"}} for i in range(100)}  # another app's
    book(outreach.fake.state).templates.setdefault(outreach.world().corp_id, {}).update(others)
    response = create(outreach)
    assert response.status_code == 409, response.json
    assert response.json["error"]["details"]["errcode"] == 40058
    assert outreach.call("GET", PATH, "viewer").json == []


def test_a_template_whose_row_fails_is_deleted_in_wecom_again(outreach, monkeypatch):
    from services.outreach import group_welcome as gw

    def boom(*args, **kwargs):
        raise RuntimeError("the audit insert failed")

    monkeypatch.setattr(gw, "audit", boom)
    loaded = gw.TemplateSchema().load({"name": "孤儿", "text": "欢迎"})
    with outreach.pool.connection() as conn, pytest.raises(RuntimeError):
        gw.create_template(conn, "acme", loaded, "tester", lambda: outreach.clients.wecom("acme"))
    assert wecom_templates(outreach) == {}
    assert outreach.sql("SELECT * FROM group_welcome_templates") == []


def test_deleting_a_template_already_gone_in_wecom_deletes_ours(outreach):
    template_id = create(outreach).json["template_id"]
    del wecom_templates(outreach)[template_id]  # deleted in WeCom's admin
    assert outreach.call("DELETE", f"{PATH}/{template_id}", "operator").status_code == 204
    assert outreach.call("GET", f"{PATH}/{template_id}", "viewer").status_code == 404
