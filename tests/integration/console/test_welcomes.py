"""The welcome pages through the real app (console/views_welcome.py): recent welcomes on add in
the tenant's zone with Chinese labels, and group welcome templates kept in the fake WeCom
(operators create, edit, delete; viewers read; bad input on the form, never a 500)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from sandbox.fake_wechat.welcome import book
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from tests.fake_wecom import FakeWeCom
from tests.integration.console.conftest import build, csrf, log_in

TENANTS = load_tenants(DEMO_TENANTS_PATH)
CORP = TENANTS.get("acme").wecom.corp_id


@pytest.fixture
def world(stack, schema, monkeypatch):
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    fake = FakeWeCom(TENANTS, DEMO_SECRETS).start()
    built, segment_schema = build(stack, schema, env={"SIYU_WECOM_API_BASE": fake.base_url})
    yield built, fake
    fake.stop()
    built.pool.close()
    built.drop(stack.dsn, segment_schema)


def client_of(console, login: str):
    client = console.client()
    assert log_in(client, login).status_code == 302
    return client


def post(client, path: str, data: dict, page: str | None = None):
    return client.post(path, data={**data, "csrf_token": csrf(client, page or path)})


def test_recent_welcomes_show_outcome_latency_and_time_in_the_tenants_zone(world):
    console, _ = world
    client = client_of(console, "li.lei")
    empty = client.get("/welcomes", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert 'id="welcomes-empty"' in empty
    console.sql(
        "INSERT INTO welcomes (tenant_id, welcome_code, event_id, external_userid, staff_userid, "
        "state, code_id, status, errcode, attempts, callback_at, latency_ms, contact_id, "
        "content_id) VALUES ('acme', 'wc1', 'e1', 'wmA', 'zhangwei', 'wecom_ad.x', 'expo', "
        "'missed', NULL, 0, %s, NULL, NULL, NULL), ('acme', 'wc2', 'e2', 'wmB', 'lina', NULL, "
        "NULL, 'sent', NULL, 1, %s, 1234, 'c-lina-1', 'cnt_hello') RETURNING 1",
        (datetime(2026, 12, 1, 2, 0, tzinfo=UTC), datetime(2026, 12, 1, 3, 0, tzinfo=UTC)),
    )
    client.get("/lang/zh_Hans_CN")
    page = client.get("/welcomes").get_data(as_text=True)
    assert "已错过(超过企业微信 20 秒时限)" in page and "1.2 s" in page
    assert "2026-12-01 10:00" in page  # Shanghai
    assert "expo" in page and "zhangwei" in page
    filtered = client.get("/welcomes?status=sent").get_data(as_text=True)
    assert "lina" in filtered and "zhangwei" not in filtered
    assert "/contacts/c-lina-1" in filtered and "/content/cnt_hello" in filtered


def test_operators_create_edit_and_delete_group_welcome_templates(world):
    console, fake = world
    client = client_of(console, "han.meimei")
    form = {"name": "新人欢迎", "text": "欢迎 %NICKNAME%", "link_title": "群规",
            "link_url": "https://acme.example/rules", "link_desc": "", "notify": "1"}  # fmt: skip
    made = post(client, "/welcomes/templates/new", form)
    assert made.status_code == 302, made.get_data(as_text=True)[:2000]
    (template_id,) = book(fake.state).templates[CORP]
    assert book(fake.state).templates[CORP][template_id]["link"]["title"] == "群规"
    edit = f"/welcomes/templates/{template_id}/edit"
    assert post(client, edit, {**form, "text": "新的欢迎"}).status_code == 302
    assert book(fake.state).templates[CORP][template_id]["text"] == {"content": "新的欢迎"}
    assert "新的欢迎" in client.get("/welcomes/templates").get_data(as_text=True)
    deleted = post(client, f"/welcomes/templates/{template_id}/delete", {}, page=edit)
    assert deleted.status_code == 302
    assert book(fake.state).templates[CORP] == {}
    audit = [r["action"] for r in console.sql(
        "SELECT action FROM audit_log WHERE action LIKE 'group_welcome.%%' ORDER BY id")]  # fmt: skip
    assert audit == ["group_welcome.create", "group_welcome.update", "group_welcome.delete"]
    actors = {r["actor"] for r in console.sql(
        "SELECT actor FROM audit_log WHERE action LIKE 'group_welcome.%%'")}  # fmt: skip
    assert actors == {"console:han.meimei"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"text": "", "link_title": "", "link_url": ""}, "text"),
        ({"link_url": "javascript:alert(1)"}, "link_url"),
        ({"link_url": ""}, "link_url"),
    ],
)
def test_bad_input_is_shown_on_the_form_kept_as_typed(world, change, field):
    console, fake = world
    client = client_of(console, "han.meimei")
    form = {"name": "入群", "text": "欢迎", "link_title": "群规",
            "link_url": "https://acme.example/rules", "link_desc": "说明", **change}  # fmt: skip
    response = post(client, "/welcomes/templates/new", form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and "说明" in page
    assert book(fake.state).templates.get(CORP, {}) == {}


def test_a_name_taken_and_wecom_down_are_form_errors(world):
    console, fake = world
    client = client_of(console, "han.meimei")
    form = {"name": "入群", "text": "欢迎"}
    assert post(client, "/welcomes/templates/new", form).status_code == 302
    taken = post(client, "/welcomes/templates/new", form)
    assert taken.status_code == 400 and 'id="name-error"' in taken.get_data(as_text=True)
    fake.fail("externalcontact/group_welcome_template/add", -1, -1, -1)
    down = post(client, "/welcomes/templates/new", {**form, "name": "另一个"})
    assert down.status_code == 400 and 'id="form-error"' in down.get_data(as_text=True)


def test_viewers_read_but_may_not_change_templates(world):
    console, _ = world
    client = client_of(console, "li.lei")
    page = client.get("/welcomes/templates").get_data(as_text=True)
    assert 'id="templates-empty"' in page and 'id="new-template"' not in page
    assert client.get("/welcomes/templates/new").status_code == 403
    token = csrf(client, "/welcomes/templates")
    refused = client.post("/welcomes/templates/new", data={"name": "x", "csrf_token": token})
    assert refused.status_code == 403


def test_an_edit_keeps_an_attachment_the_form_cannot_show(world):
    """A template made through the API with an image: the form shows it read-only and an edit
    of the text carries it to WeCom unchanged (never dropped)."""
    console, fake = world
    image = {"msgtype": "image", "image": {"media_id": "3MEDIA"}}
    book(fake.state).templates.setdefault(CORP, {})["msgIMG"] = {
        "text": {"content": "旧"},
        "image": image["image"],
    }
    console.sql(
        "INSERT INTO group_welcome_templates (tenant_id, template_id, name, text, attachment) "
        "VALUES ('acme', 'msgIMG', '图片欢迎', '旧', %s) RETURNING 1",
        (Jsonb(image),),
    )
    client = client_of(console, "han.meimei")
    edit = "/welcomes/templates/msgIMG/edit"
    page = client.get(edit).get_data(as_text=True)
    assert 'id="kept-attachment"' in page and 'id="link_url"' not in page
    saved = post(client, edit, {"name": "图片欢迎", "text": "新", "notify": "1"})
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    assert book(fake.state).templates[CORP]["msgIMG"] == {
        "text": {"content": "新"},
        "image": image["image"],
    }
    (row,) = console.sql("SELECT attachment FROM group_welcome_templates")
    assert row["attachment"] == image
