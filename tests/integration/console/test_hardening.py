"""Hostile and odd input to the console (docs/console.md, docs/security.md "Console"): whatever
is typed into a form, a URL or a query answers 400/404 or an inline error in the console's own
page, never a 500 or the API's JSON; redirects stay on this site; YAML cannot multiply itself;
the live count is a POST; a new token's secret is shown by one GET only."""

from __future__ import annotations

import json

import pytest

from console import views_settings
from tests.integration.console.campaign_world import SEGMENT, world
from tests.integration.console.conftest import csrf, log_in
from tests.integration.console.test_campaigns import created
from tests.integration.console.test_settings import FORM, SECRET

VALID = '{"attribute": "role", "equals": "technical"}'


def logged_in(console, login: str = "boss", tenant: str = "acme"):
    client = console.client()
    log_in(client, login, tenant=tenant)
    return client


def posted(client, path: str, data: dict, page: str = "/"):
    return client.post(path, data={**data, "csrf_token": csrf(client, page)})


def console_rules(app):
    return [r for r in app.url_map.iter_rules()
            if r.endpoint.startswith("console.") and r.endpoint != "console.static"]  # fmt: skip


# --- NUL bytes: every console route, in the path, the query and the form ------------------------


def test_a_nul_byte_anywhere_is_a_400_page_on_every_route(console):
    client = logged_in(console)
    token = csrf(client, "/")
    tried = 0
    for rule in console_rules(console.app):
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", "x%00y")
        for method in sorted(rule.methods & {"GET", "POST"}):
            cases = [(path, {})] if rule.arguments else []
            cases += [(path.replace("%00", "") + "?q=%00&after=a%00&preview=%00&actor=%00", {})]
            if method == "POST":
                cases.append((path.replace("%00", ""), {"name": "a\x00b", "expr": "\x00"}))
            for url, form in cases:
                response = client.open(url, method=method, data={**form, "csrf_token": token})
                assert response.status_code == 400, (method, url, response.status_code)
                assert "NUL" in response.get_data(as_text=True)
                tried += 1
    assert tried > 40  # the table really covered the console's routes


# --- redirects after logging in and switching language stay on this site -----------------------

EVIL = ["/\\evil.com", "\\\\evil.com", "//evil.com", "https://evil.com", "/%5Cevil.com",
        "/%2F/evil.com", "/\t/evil.com", "http:/evil.com", "evil.com"]  # fmt: skip


@pytest.mark.parametrize("target", EVIL)
def test_an_open_redirect_target_goes_to_the_overview(console, target):
    client = logged_in(console, "li.lei")
    for path in ("/login", "/lang/en"):
        response = client.get(path, query_string={"next": target})
        assert response.status_code == 302
        assert response.headers["Location"] == "/", (path, target)


def test_a_local_next_is_kept(console):
    client = logged_in(console, "li.lei")
    response = client.get("/lang/en", query_string={"next": "/contacts?q=li"})
    assert response.headers["Location"] == "/contacts?q=li"


# --- YAML: no aliases, no implicit dates, no values JSON cannot hold ----------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


@pytest.mark.parametrize(
    ("expression", "shown"),
    [(BOMB, "别名"),
     ("{all: [&r {attribute: role, equals: technical}, *r]}", "别名"),
     ("[" * 15000, "嵌套"),
     ("{attribute: clicks_30d, equals: !!binary aGk=}", "JSON"),
     ("{attribute: clicks_30d, equals: .nan}", "JSON"),
     ("{attribute: clicks_30d, equals: " + "9" * 5000 + "}", "数字太长")],
)  # fmt: skip
def test_yaml_that_multiplies_or_is_not_json_is_refused(console, expression, shown):
    client = logged_in(console, "li.lei")
    answer = client.post("/segments/preview", data={"expr": expression,
                                                    "csrf_token": csrf(client, "/segments")})  # fmt: skip
    assert answer.status_code == 400
    found = answer.get_json()
    assert found["ok"] is False and shown in found["error"]


def test_a_yaml_date_is_text_as_in_json(console):
    client = logged_in(console)
    response = posted(client, "/segments/new", {
        "segment_id": "dated", "name": "日期", "description": "",
        "expression": "{attribute: clicks_30d, equals: 2024-01-01}"}, "/segments/new")  # fmt: skip
    assert response.status_code == 302  # stored as the text JSON would give (a TypeError before)
    (row,) = console.sql("SELECT 1 FROM audit_log WHERE action = 'segment.create' "
                         "AND details::text LIKE '%%\"2024-01-01\"%%'")  # fmt: skip
    assert row


# --- odd digits, cursors and sizes: 400 on the form or the page as if absent -------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/settings/audit?before=²", 200), ("/settings/audit?before=99999999999999999999", 200),
     ("/content?after=garbage|x", 200), ("/content?after=2024-13-01T00:00:00+00:00|x", 200),
     ("/content?after=2024-01-01|x", 200), ("/content?after=|", 200),
     ("/contacts?after=garbage", 200), ("/segments/deciders?after=zz", 200)],
)  # fmt: skip
def test_odd_cursors_are_ignored(console, path, status):
    assert logged_in(console).get(path).status_code == status


@pytest.mark.parametrize("after", ["99999999999999999999", "9223372036854775808", "-1", "²", "x"])
def test_an_odd_deliveries_cursor_is_ignored(console, after):
    outreach = world(console)
    outreach.publish_segments(SEGMENT)
    client = logged_in(console, "han.meimei")
    campaign_id = created(console, client, outreach.content())
    assert client.get(f"/campaigns/{campaign_id}?after={after}").status_code == 200


@pytest.mark.parametrize("value", ["²", "١٢", "1_000", " 1", "-1", "1e3"])
def test_odd_digits_in_the_settings_form_are_an_inline_400(console, value):
    response = posted(logged_in(console), "/settings", {**FORM, "caps.contact_per_day": value})
    assert response.status_code == 400 or value == " 1"  # " 1" is 1, stripped
    if response.status_code == 400:
        assert 'id="caps.contact_per_day-error"' in response.get_data(as_text=True) or (
            "caps.contact_per_day" in response.get_data(as_text=True)
        )


@pytest.mark.parametrize("expires", ["999999w", "999999d", "99999999999999", "9999-12-31T23:59"])
def test_a_token_expiry_past_any_calendar_is_an_inline_400(console, expires):
    response = posted(logged_in(console), "/settings/tokens",
                      {"kind": "admin", "name": "far", "role": "viewer", "expires": expires})  # fmt: skip
    assert response.status_code == 400
    assert 'id="admin-expires-error"' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "payload",
    ["[" * 15000, '{"a": ' * 300 + "1" + "}" * 300, '{"text": "a\\u0000b"}'],
)  # fmt: skip
def test_a_deep_or_nul_content_payload_is_an_inline_400(console, payload):
    client = logged_in(console, "han.meimei")
    response = posted(client, "/content/new", {
        "title": "白皮书", "format": "whitepaper", "stages": ["interest"], "roles": ["technical"],
        "wecom_text": "本周白皮书", "payload_oa_custom": payload}, "/content/new")  # fmt: skip
    assert response.status_code == 400
    assert 'id="payloads-oa_custom-error"' in response.get_data(as_text=True)
    assert console.sql("SELECT count(*) AS n FROM content")[0]["n"] == 0


# --- errors are the console's page outside /api/, JSON under it ----------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/console/static/nope.js", 404), ("PUT", "/login", 405),
     ("DELETE", "/segments", 405)],
)  # fmt: skip
def test_unknown_paths_and_methods_get_the_consoles_page(console, method, path, status):
    for client in (console.client(), logged_in(console, "li.lei")):
        response = client.open(path, method=method)
        assert response.status_code == status
        assert response.mimetype == "text/html" and response.get_json(silent=True) is None
        assert "Content-Security-Policy" in response.headers
        assert "<h1>" in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "status"),
                         [("GET", "/api/v1/nope", 404), ("DELETE", "/api/v1/me", 405),
                          ("POST", "/healthz", 405)])  # fmt: skip
def test_the_api_keeps_its_json_errors(console, method, path, status):
    response = console.client().open(path, method=method)
    assert response.status_code == status
    assert response.get_json()["error"]["code"]


def test_an_unexpected_error_is_a_console_page_without_details(console, monkeypatch):
    from console import views

    def broken(*args, **kwargs):
        raise RuntimeError("secret-detail-xyz")

    monkeypatch.setattr(views.pages, "overview", broken)
    response = logged_in(console, "li.lei").get("/")
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret-detail-xyz" not in body and "错误已记录" in body


# --- the live count is a POST: an expression longer than a request line is counted --------------


def test_the_live_count_takes_a_long_expression_by_post(console):
    client = logged_in(console, "li.lei")
    long = "# " + "注释" * 3000 + "\n" + VALID  # 6 KiB of comment: past gunicorn's 4 KiB line
    answer = client.post("/segments/preview", data={"expr": long,
                                                    "csrf_token": csrf(client, "/segments")})  # fmt: skip
    assert answer.status_code == 200 and answer.get_json()["ok"] is True
    # GET is no count: /segments/preview is then the page of a segment no one may create (404).
    assert client.get("/segments/preview", query_string={"expr": VALID}).status_code == 404


# --- item by item: the token page, the schedule's minimum interval, a cut token list ------------


def test_a_new_tokens_secret_is_shown_by_one_get_and_a_reload_issues_none(console):
    client = logged_in(console)
    response = posted(client, "/settings/tokens",
                      {"kind": "admin", "name": "once", "role": "viewer"}, "/settings/tokens")  # fmt: skip
    assert response.status_code == 302 and response.headers["Location"] == "/settings/tokens"
    shown = SECRET.search(client.get("/settings/tokens").get_data(as_text=True))
    assert shown and shown.group(1).startswith("siyu_adm_")
    again = client.get("/settings/tokens").get_data(as_text=True)
    assert shown.group(1) not in again and 'id="secret"' not in again
    assert len(console.sql("SELECT 1 FROM api_tokens WHERE name = 'once'")) == 1


def test_a_cut_token_list_says_so(console, monkeypatch):
    monkeypatch.setattr(views_settings, "TOKENS_SHOWN", 1)
    client = logged_in(console)
    page = client.get("/settings/tokens").get_data(as_text=True)
    assert 'id="admin-tokens-cut"' not in page
    for name in ("one", "two"):
        posted(client, "/settings/tokens", {"kind": "admin", "name": name, "role": "viewer"})
    page = client.get("/settings/tokens").get_data(as_text=True)
    assert 'id="admin-tokens-cut"' in page and "只列出最新的 1 个令牌" in page


@pytest.mark.parametrize(
    "query",
    ["schedule_kind=rrule&rrule=FREQ%3DSECONDLY", "schedule_kind=rrule&rrule=FREQ%3DMINUTELY",
     "schedule_kind=cron&cron=*+*+*+*+*"],
)  # fmt: skip
def test_the_schedule_preview_refuses_what_saving_refuses(console, query):
    answer = logged_in(console, "han.meimei").get(f"/campaigns/schedule.json?{query}").get_json()
    assert answer["error"] and "最小间隔" in answer["error"], json.dumps(answer, ensure_ascii=False)
