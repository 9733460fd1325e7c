"""The settings pages through the real app (console/views_settings.py): the outreach settings
(a viewer reads, an admin saves through the API's function, audited as the user; bad input
answered on the form), the API tokens page (admin and event tokens created with the secret
shown once, revoked, other tenants' out of reach) and the audit log page (paged, filtered,
labelled in Chinese)."""

from __future__ import annotations

import base64
import re
import zlib

import pytest

from console.http import SESSION_COOKIE
from shared.tokens import hash_token
from tests.integration.console.conftest import csrf, log_in

FORM = {
    "caps.contact_per_day": "2", "caps.contact_per_week": "5", "caps.group_per_day": "1",
    "caps.group_per_week": "3", "quotas.wecom_budget": "week",
    "quotas.oa_mass_per_month": "4", "quotas.oa_custom_window_hours": "48",
    "quotas.oa_custom_per_window": "5", "quiet": "1", "quiet_start": "22:00",
    "quiet_end": "07:30",
}  # fmt: skip
SECRET = re.compile(r'<code id="secret">([^<]+)</code>')


def logged_in(console, login: str, tenant: str = "acme"):
    client = console.client()
    assert log_in(client, login, tenant=tenant).status_code == 302
    return client


def post(client, path: str, data: dict, page: str | None = None):
    return client.post(path, data={**data, "csrf_token": csrf(client, page or path)})


def create_token(client, data: dict):
    """POST the tokens page's form; the redirect's page (the one view that shows the secret)."""
    response = post(client, "/settings/tokens", data)
    assert response.status_code == 302 and response.headers["Location"] == "/settings/tokens"
    return client.get("/settings/tokens")


def stored(console, tenant: str = "acme") -> dict:
    (row,) = console.sql("SELECT settings FROM tenants WHERE tenant_id = %s", (tenant,))
    return row["settings"].get("outreach") or {}


def audited(console, action: str) -> list[dict]:
    return console.sql(
        "SELECT tenant_id, actor, target, details FROM audit_log WHERE action = %s ORDER BY id",
        (action,),
    )


# --- outreach settings ---------------------------------------------------------------------------


def test_a_viewer_reads_the_settings_without_a_form_to_save(console):
    client = logged_in(console, "li.lei")
    page = client.get("/settings")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "频次上限" in text and "平台配额" in text and "免打扰时段" in text
    assert 'id="save-settings"' not in text and "disabled" in text
    assert post(client, "/settings", FORM).status_code == 403
    assert stored(console) == {}


def test_an_operator_may_not_save_the_settings(console):
    client = logged_in(console, "han.meimei")
    assert post(client, "/settings", FORM).status_code == 403


def test_an_admin_saves_the_settings_as_the_api_stores_them(console):
    client = logged_in(console, "boss")
    response = post(client, "/settings", FORM)
    assert response.status_code == 302
    saved = stored(console)
    assert saved["caps"]["contact_per_day"] == 2 and saved["caps"]["contact_per_week"] == 5
    assert saved["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    assert saved["quotas"]["wecom_budget"] == "week"
    # The fields the page does not show keep their values (PUT would reset them to defaults).
    assert saved["min_schedule_interval_minutes"] == 60
    assert saved["guard_unflagged_model"] == "block_all_b2b_promotions"
    (entry,) = audited(console, "settings.outreach")
    assert entry["actor"] == "console:boss" and entry["tenant_id"] == "acme"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="22:00"' in page and 'id="done"' in page
    assert stored(console, "bloom") == {}  # another tenant untouched

    # No quiet hours: stored as none.
    assert post(client, "/settings", {**FORM, "quiet": ""}).status_code == 302
    assert stored(console)["quiet_hours"] is None


@pytest.mark.parametrize(
    ("field", "value", "error_id"),
    [("caps.contact_per_day", "-1", "caps-contact_per_day-error"),
     ("caps.group_per_week", "lots", "caps-group_per_week-error"),
     ("quotas.oa_custom_window_hours", "0", "quotas-oa_custom_window_hours-error"),
     ("quiet_start", "25:00", "quiet-start-error")],
)  # fmt: skip
def test_bad_settings_are_answered_on_the_form(console, field, value, error_id):
    client = logged_in(console, "boss")
    response = post(client, "/settings", {**FORM, field: value})
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="{error_id}"' in text
    assert f'value="{value}"' in text  # what was typed is kept
    assert 'value="07:30"' in text
    assert stored(console) == {} and audited(console, "settings.outreach") == []


def test_the_wecom_budget_rule_is_chosen_from_the_corps_and_a_bad_one_refused(console):
    client = logged_in(console, "boss")
    page = client.get("/settings").get_data(as_text=True)
    # No rule stored: WeCom's default, as many a month as the month has days.
    assert re.search(r'<option value="month" selected>', page)
    response = post(client, "/settings", {**FORM, "quotas.wecom_budget": "year"})
    assert response.status_code == 400
    assert 'id="quotas-wecom_budget-error"' in response.get_data(as_text=True)
    assert stored(console) == {}
    assert post(client, "/settings", {**FORM, "quotas.wecom_budget": "day"}).status_code == 302
    assert stored(console)["quotas"]["wecom_budget"] == "day"
    page = client.get("/settings").get_data(as_text=True)
    assert '<option value="day" selected>' in page


def test_a_settings_post_without_the_csrf_token_is_refused(console):
    client = logged_in(console, "boss")
    assert client.post("/settings", data=FORM).status_code == 400
    assert stored(console) == {}


# --- API tokens ----------------------------------------------------------------------------------


def _session_payload(client) -> str:
    """What the browser holds in the session cookie, decoded (Flask signs it, never encrypts)."""
    cookie = client.get_cookie(SESSION_COOKIE)
    data = cookie.value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if cookie.value.startswith(".") else raw).decode()


def test_a_new_secret_rides_sealed_and_only_to_the_next_page(console):
    client = logged_in(console, "boss")
    assert post(client, "/settings/tokens", {"kind": "admin", "name": "one", "role": "viewer"},
                ).status_code == 302  # fmt: skip
    assert "siyu_adm_" not in _session_payload(client)  # sealed in the cookie
    client.get("/segments")  # the redirect was not followed: any other page drops it
    page = client.get("/settings/tokens").get_data(as_text=True)
    assert SECRET.search(page) is None and "siyu_adm_" not in _session_payload(client)
    shown = create_token(client, {"kind": "admin", "name": "two", "role": "viewer"})
    assert SECRET.search(shown.get_data(as_text=True)).group(1).startswith("siyu_adm_")


def test_an_admin_creates_an_admin_token_shown_once_and_hashed(console):
    client = logged_in(console, "boss")
    response = create_token(client, {"kind": "admin", "name": "crm-sync",
                                          "role": "operator", "expires": "30d"})  # fmt: skip
    assert response.status_code == 200
    secret = SECRET.search(response.get_data(as_text=True)).group(1)
    assert secret.startswith("siyu_adm_")
    (row,) = console.sql("SELECT * FROM api_tokens WHERE name = 'crm-sync'")
    assert row["tenant_id"] == "acme" and row["role"] == "operator"
    assert row["token_hash"] == hash_token(secret) and row["expires_at"] is not None
    (entry,) = audited(console, "token.create")
    assert entry["actor"] == "console:boss" and entry["target"] == row["token_id"]
    # The token works on the API, and the page never shows the secret again.
    me = console.client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.get_json()["role"] == "operator"
    again = client.get("/settings/tokens").get_data(as_text=True)
    assert secret not in again and row["token_id"] in again


def test_an_admin_creates_and_revokes_an_event_token(console):
    client = logged_in(console, "boss")
    response = create_token(client, {"kind": "event", "name": "orders"})
    secret = SECRET.search(response.get_data(as_text=True)).group(1)
    assert secret.startswith("siyu_ev_")
    schema = f"{console.schema}_ingest"
    (row,) = console.sql(f'SELECT * FROM "{schema}".api_tokens WHERE name = %s', ("orders",))
    assert row["token_hash"] == hash_token(secret) and row["expires_at"] is None
    revoked = post(client, f"/settings/tokens/{row['token_id']}/revoke", {}, "/settings/tokens")
    assert revoked.status_code == 302
    (row,) = console.sql(f'SELECT * FROM "{schema}".api_tokens WHERE name = %s', ("orders",))
    assert row["revoked_at"] is not None
    assert [e["actor"] for e in audited(console, "ingest_token.revoke")] == ["console:boss"]


def test_revoking_an_admin_token_refuses_it_on_the_api(console):
    client = logged_in(console, "boss")
    response = create_token(client, {"kind": "admin", "name": "x", "role": "viewer"})
    secret = SECRET.search(response.get_data(as_text=True)).group(1)
    (row,) = console.sql("SELECT token_id FROM api_tokens WHERE name = 'x'")
    assert post(client, f"/settings/tokens/{row['token_id']}/revoke", {}, "/settings/tokens"
                ).status_code == 302  # fmt: skip
    me = console.client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 401
    page = client.get("/settings/tokens?done=revoke").get_data(as_text=True)
    assert "已吊销" in page


@pytest.mark.parametrize(
    ("data", "error_id"),
    [({"kind": "admin", "name": "", "role": "viewer"}, "admin-name-error"),
     ({"kind": "admin", "name": "a", "role": "root"}, "admin-role-error"),
     ({"kind": "admin", "name": "a", "role": "viewer", "expires": "soon"}, "admin-expires-error"),
     ({"kind": "event", "name": "b", "expires": "2001-01-01"}, "event-expires-error")],
)  # fmt: skip
def test_bad_token_requests_are_answered_on_the_form(console, data, error_id):
    client = logged_in(console, "boss")
    response = post(client, "/settings/tokens", data)
    assert response.status_code == 400
    assert f'id="{error_id}"' in response.get_data(as_text=True)
    assert console.sql("SELECT 1 FROM api_tokens") == []


@pytest.mark.parametrize("login", ["li.lei", "han.meimei"])
def test_tokens_and_audit_are_for_admins_only(console, login):
    client = logged_in(console, login)
    assert client.get("/settings/tokens").status_code == 403
    assert client.get("/settings/audit").status_code == 403
    token = csrf(client, "/settings")
    response = client.post(
        "/settings/tokens",
        data={"kind": "admin", "name": "x", "role": "admin", "csrf_token": token},
    )
    assert response.status_code == 403
    assert "设置" in client.get("/").get_data(as_text=True)  # the settings link
    assert "API 令牌" not in client.get("/settings").get_data(as_text=True)


def test_another_tenants_token_is_out_of_reach(console):
    bloom = logged_in(console, "xiao.hua", tenant="bloom")
    response = post(bloom, "/settings/tokens", {"kind": "admin", "name": "b", "role": "viewer"})
    assert response.status_code == 302
    (row,) = console.sql("SELECT token_id FROM api_tokens WHERE name = 'b'")
    acme = logged_in(console, "boss")
    assert row["token_id"] not in acme.get("/settings/tokens").get_data(as_text=True)
    revoke = post(acme, f"/settings/tokens/{row['token_id']}/revoke", {}, "/settings/tokens")
    assert revoke.status_code == 404
    assert (
        console.sql("SELECT revoked_at FROM api_tokens WHERE name = 'b'")[0]["revoked_at"] is None
    )


# --- audit log -----------------------------------------------------------------------------------


def test_the_audit_log_is_the_tenants_labelled_and_filtered(console):
    client = logged_in(console, "boss")
    logged_in(console, "xiao.hua", tenant="bloom")
    page = client.get("/settings/audit").get_data(as_text=True)
    assert "登录" in page and "console:boss" in page
    assert "xiao.hua" not in page  # bloom's entries are not acme's
    only = client.get("/settings/audit?action=console.login&actor=console:li.lei")
    assert only.status_code == 200 and "没有符合" in only.get_data(as_text=True)
    filtered = client.get("/settings/audit?actor=console:boss").get_data(as_text=True)
    assert "console:boss" in filtered


def test_the_audit_log_is_paged(console):
    console.sql(
        "INSERT INTO audit_log (tenant_id, actor, action, target, details) "
        "SELECT 'acme', 'cli', 'token.create', 'tok_' || n, '{}' FROM generate_series(1, 60) n "
        "RETURNING id"
    )
    client = logged_in(console, "boss")
    first = client.get("/settings/audit?action=token.create").get_data(as_text=True)
    assert "tok_60<" in first and "tok_1<" not in first
    older = re.search(r'id="older" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert "tok_1<" in second and "tok_60<" not in second and 'id="older"' not in second
    assert client.get("/settings/audit?before=abc").status_code == 200
