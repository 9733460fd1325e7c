"""The channel code pages on the real app against the fake WeCom: create, edit and delete
through services/outreach/channel_codes.py (audited as the console user), inline 400s listing
the valid names, WeCom's refusals on the form, viewers (no form, POST 403), and the overview's
cut by first source channel."""

from __future__ import annotations

import html

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.console.campaign_world import fake_platform
from tests.integration.console.conftest import build, csrf, log_in
from tests.integration.outreach.conftest import CORP


@pytest.fixture
def live(stack, schema, monkeypatch):
    fake, env = fake_platform(monkeypatch)
    built, segment_schema = build(stack, schema, env=env)
    built.segment_schema, built.dsn = segment_schema, stack.dsn
    yield built, fake
    fake.stop()
    built.pool.close()
    built.drop(stack.dsn, segment_schema)


def logged_in(console, login: str):
    client = console.client()
    log_in(client, login)
    return client


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def post(client, path: str, data: dict):
    return client.post(path, data={**data, "csrf_token": csrf(client, "/channel-codes")})


FORM = {"code_id": "expo-b", "kind": "contact", "channel": "expo", "name": "展会 B 馆",
        "staff": "zhangwei, lina", "daily_cap": "30", "skip_verify": "1"}  # fmt: skip


def configs(fake) -> dict:
    with fake.state.lock:
        return dict(fake.state.channel_codes.get(CORP, {}))


def test_an_operator_creates_edits_and_deletes_a_code(live):
    console, fake = live
    client = logged_in(console, "han.meimei")
    empty = text(client.get("/channel-codes"))
    assert 'id="codes-empty"' in empty and "新建渠道活码" in empty
    created = post(client, "/channel-codes/new", FORM)
    assert created.status_code == 302, text(created)[:2000]
    page = text(client.get(created.headers["Location"]))
    assert "渠道活码已创建" in page and "展会 B 馆" in page and "展会" in page
    (config,) = configs(fake).values()
    assert config["user"] == ["zhangwei", "lina"]
    assert config["qr_code"] in page  # the QR code image URL is shown
    (row,) = console.sql("SELECT actor FROM audit_log WHERE action = 'channel_code.create'")
    assert row["actor"] == "console:han.meimei"

    form = text(client.get("/channel-codes/expo-b/edit"))
    assert 'value="zhangwei, lina"' in form
    edited = post(client, "/channel-codes/expo-b/edit", {**FORM, "staff": "lina"})
    assert edited.status_code == 400  # one member <-> several: WeCom cannot change the type
    assert "delete the code and create a new one" in text(edited)
    edited = post(client, "/channel-codes/expo-b/edit", {**FORM, "staff": "lina, wangfang"})
    assert edited.status_code == 302, text(edited)[:2000]
    (config,) = configs(fake).values()
    assert config["user"] == ["lina", "wangfang"]

    deleted = post(client, "/channel-codes/expo-b/delete", {})
    assert deleted.status_code == 302
    assert configs(fake) == {}
    assert "渠道活码已删除" in text(client.get(deleted.headers["Location"]))


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        ({"channel": "tv"}, "channel", "展会 (expo)"),
        ({"staff": "zhangwei, ghost"}, "staff", "ghost"),
        ({"daily_cap": "many"}, "daily_cap", "整数"),
        ({"code_id": "Bad Id"}, "code_id", "小写字母"),
        ({"welcome_content": "cnt_missing"}, "welcome_content", "cnt_missing"),
        (
            {"kind": "group", "staff": "", "daily_cap": "", "chat_ids": "wrNope"},
            "chat_ids",
            "wrNope",
        ),
    ],
)
def test_bad_input_is_shown_on_the_form(live, change, field, shown):
    console, fake = live
    client = logged_in(console, "han.meimei")
    response = post(client, "/channel-codes/new", {**FORM, **change})
    assert response.status_code == 400
    page = text(response)
    assert f'id="{field}-error"' in page and shown in page, page[:3000]
    assert 'value="展会 B 馆"' in page  # the form keeps what was typed
    assert configs(fake) == {}


def test_a_wecom_refusal_is_shown_not_a_500(live):
    console, fake = live
    client = logged_in(console, "han.meimei")
    fake.fail("externalcontact/add_contact_way", 60111)
    response = post(client, "/channel-codes/new", FORM)
    assert response.status_code == 400
    assert "WeCom refused" in text(response) and 'id="form-error"' in text(response)


def test_an_edit_of_a_code_changed_meanwhile_is_refused_on_the_form(live):
    console, fake = live
    client = logged_in(console, "han.meimei")
    assert post(client, "/channel-codes/new", FORM).status_code == 302
    form = text(client.get("/channel-codes/expo-b/edit"))
    version = form.split('name="updated_at" value="', 1)[1].split('"', 1)[0]
    other = logged_in(console, "han.meimei")  # someone else saves first
    assert post(other, "/channel-codes/expo-b/edit", {**FORM, "name": "其他"}).status_code == 302
    late = post(client, "/channel-codes/expo-b/edit",
                {**FORM, "name": "我的", "updated_at": version})  # fmt: skip
    assert late.status_code == 409
    assert 'id="form-error"' in text(late) and 'value="我的"' in text(late)
    (config,) = configs(fake).values()
    assert config["remark"] == "其他"


def test_only_an_https_qr_code_url_is_linked(live):
    console, _ = live
    client = logged_in(console, "han.meimei")
    assert post(client, "/channel-codes/new", FORM).status_code == 302
    console.sql("UPDATE channel_codes SET qr_code = 'javascript:alert(1)' RETURNING code_id")
    page = text(client.get("/channel-codes"))
    assert 'href="javascript:' not in page and "javascript:alert(1)" in page


def test_a_viewer_sees_the_list_but_cannot_change_it(live):
    console, _ = live
    client = logged_in(console, "li.lei")
    page = text(client.get("/channel-codes"))
    assert 'id="new-code"' not in page and "运营或管理员可以创建" in page
    assert client.get("/channel-codes/new").status_code == 403
    assert post(client, "/channel-codes/new", FORM).status_code == 403


def test_the_overview_cuts_the_funnel_by_first_source_channel(live):
    console, _ = live
    client = logged_in(console, "li.lei")
    assert client.get("/?source_channel=expo").status_code == 200
    bad = client.get("/?source_channel=tv")
    assert bad.status_code == 400 and 'id="source-error"' in text(bad)


def test_the_contact_and_account_lists_cut_by_first_source_channel(live):
    console, _ = live
    with psycopg.connect(console.dsn, options=f"-c search_path={console.segment_schema}") as conn:
        (name, account_id) = conn.execute(
            "UPDATE contacts SET first_channel = 'expo', first_channel_at = now() "
            "WHERE contact_id = (SELECT min(contact_id) FROM contacts WHERE account_id IS NOT NULL "
            "AND name IS NOT NULL) RETURNING name, account_id"
        ).fetchone()
        (account,) = conn.execute(
            "UPDATE accounts SET first_channel = 'expo', first_channel_at = now() "
            "WHERE account_id = %s RETURNING name",
            (account_id,),
        ).fetchone()
        names = [r[0] for r in conn.execute("SELECT name FROM contacts WHERE name IS NOT NULL")]
        accounts = [r[0] for r in conn.execute("SELECT name FROM accounts")]
    client = logged_in(console, "li.lei")
    everyone = text(client.get("/contacts"))
    assert [n for n in names if n in everyone and n != name]  # others are listed unfiltered
    expo = text(client.get("/contacts?source_channel=expo"))
    assert name in expo and [n for n in names if n in expo and n != name] == []
    firms = text(client.get("/accounts?source_channel=expo"))
    assert account in firms and [a for a in accounts if a in firms and a != account] == []
    assert 'id="accounts-empty"' in text(client.get("/accounts?source_channel=ad"))
    for path in ("/contacts", "/accounts"):
        bad = client.get(f"{path}?source_channel=tv")
        assert bad.status_code == 400 and 'id="source-error"' in text(bad)


def test_a_contacts_page_shows_its_source_channels_and_its_loss(live):
    console, _ = live
    with psycopg.connect(console.dsn, options=f"-c search_path={console.segment_schema}") as conn:
        (contact_id,) = conn.execute(
            "UPDATE contacts SET first_channel = 'expo', first_channel_at = now() - interval "
            "'3 days', latest_channel = 'sales_card', latest_channel_at = now(), lost = %s "
            "WHERE contact_id = (SELECT min(contact_id) FROM contacts) RETURNING contact_id",
            (Jsonb({"reason": "customer_deleted_staff", "staff_userid": "zhangwei",
                    "at": "2026-11-20T02:00:00+00:00", "event_id": "e1"}),),
        ).fetchone()  # fmt: skip
        (other,) = conn.execute(
            "SELECT contact_id FROM contacts WHERE contact_id <> %s AND first_channel IS NULL "
            "AND lost IS NULL LIMIT 1", (contact_id,)
        ).fetchone()  # fmt: skip
    client = logged_in(console, "li.lei")
    page = text(client.get(f"/contacts/{contact_id}"))
    source = page.split('id="contact-source"')[1].split("</td>")[0]
    assert "展会" in source and "销售名片" in source  # first and latest, in Chinese
    lost = page.split('id="contact-lost"')[1].split("</td>")[0]
    assert "zhangwei" in lost and "2026-11-20 10:00" in lost  # acme's zone, Asia/Shanghai
    plain = text(client.get(f"/contacts/{other}"))
    assert 'id="contact-lost"' not in plain
    assert plain.split('id="contact-source"')[1].split("</td>")[0].endswith(">—")
