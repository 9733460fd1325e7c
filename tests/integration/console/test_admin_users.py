"""An admin managing the tenant's console users (console/views_settings.py, console/users.py):
create, change role, unlock, remove, each audited as the admin; bad input answered on the form;
the last admin kept; viewers, operators, forged posts and other tenants refused."""

from __future__ import annotations

import pytest

from tests.integration.console.conftest import PASSWORD, csrf, log_in
from tests.integration.console.test_settings import audited, logged_in, post

NEW_PASSWORD = "a-fine-password-1"


def user(console, login: str, tenant: str = "acme") -> dict | None:
    rows = console.sql(
        "SELECT * FROM console_users WHERE tenant_id = %s AND login = %s", (tenant, login)
    )
    return rows[0] if rows else None


def test_an_admin_creates_a_user_who_can_log_in(console):
    admin = logged_in(console, "boss")
    response = post(admin, "/users", {"login": "Wang.Fang", "role": "operator",
                                       "password": NEW_PASSWORD}, "/users")  # fmt: skip
    assert response.status_code == 302
    assert user(console, "wang.fang")["role"] == "operator"
    (entry,) = [e for e in audited(console, "user.create") if e["target"] == "wang.fang"]
    assert entry["actor"] == "console:boss" and entry["details"] == {"role": "operator"}
    assert "用户已创建" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert log_in(console.client(), "wang.fang", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("data", "error_id"),
    [({"login": "x", "role": "viewer", "password": NEW_PASSWORD}, "login-error"),
     ({"login": "li.lei", "role": "viewer", "password": NEW_PASSWORD}, "login-error"),
     ({"login": "new.one", "role": "root", "password": NEW_PASSWORD}, "role-error"),
     ({"login": "new.one", "role": "viewer", "password": "short"}, "password-error")],
    ids=["bad-login", "taken", "bad-role", "weak-password"],
)  # fmt: skip
def test_bad_new_users_are_answered_on_the_form(console, data, error_id):
    admin = logged_in(console, "boss")
    response = post(admin, "/users", data, "/users")
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="{error_id}"' in text
    assert f'value="{data["login"]}"' in text  # kept
    assert user(console, "new.one") is None and user(console, "x") is None
    assert user(console, "li.lei")["role"] == "viewer"


def test_an_admin_changes_a_role_and_the_user_gets_it_at_once(console):
    viewer = logged_in(console, "li.lei")
    assert viewer.get("/users").status_code == 403
    admin = logged_in(console, "boss")
    response = post(admin, "/users/li.lei/role", {"role": "admin"}, "/users")
    assert response.status_code == 302
    assert user(console, "li.lei")["role"] == "admin"
    (entry,) = audited(console, "user.role")
    assert entry["actor"] == "console:boss"
    assert entry["details"] == {"from": "viewer", "to": "admin"}
    assert viewer.get("/users").status_code == 200  # the role is read per request


def test_an_admin_unlocks_a_locked_user(console):
    for _ in range(5):
        assert log_in(console.client(), "li.lei", "wrong-password-1").status_code == 401
    assert log_in(console.client(), "li.lei").status_code == 401  # locked
    admin = logged_in(console, "boss")
    assert 'class="unlock-button"' in admin.get("/users").get_data(as_text=True)
    assert post(admin, "/users/li.lei/unlock", {}, "/users").status_code == 302
    row = user(console, "li.lei")
    assert row["locked_until"] is None and row["failed_attempts"] == 0
    assert [e["actor"] for e in audited(console, "user.unlock")] == ["console:boss"]
    assert log_in(console.client(), "li.lei").status_code == 302


def test_a_removed_user_is_logged_out_and_cannot_log_in(console):
    removed = logged_in(console, "han.meimei")
    admin = logged_in(console, "boss")
    assert post(admin, "/users/han.meimei/remove", {}, "/users").status_code == 302
    assert user(console, "han.meimei") is None
    assert audited(console, "user.remove")[0]["details"] == {"role": "operator"}
    assert removed.get("/").status_code == 302  # its session ended
    assert log_in(console.client(), "han.meimei").status_code == 401


def test_the_last_admin_can_neither_demote_nor_remove_themselves(console):
    admin = logged_in(console, "boss")
    response = post(admin, "/users/boss/role", {"role": "operator"}, "/users")
    assert response.status_code == 400
    assert 'id="form-error"' in response.get_data(as_text=True)
    assert "不再有管理员" in response.get_data(as_text=True)
    refused = post(admin, "/users/boss/remove", {}, "/users")
    assert refused.status_code == 400
    assert user(console, "boss")["role"] == "admin"
    assert audited(console, "user.role") == [] and audited(console, "user.remove") == []


def test_an_admin_may_step_down_when_another_admin_remains(console):
    admin = logged_in(console, "boss")
    assert post(admin, "/users/li.lei/role", {"role": "admin"}, "/users").status_code == 302
    response = post(admin, "/users/boss/role", {"role": "viewer"}, "/users")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert user(console, "boss")["role"] == "viewer"
    assert admin.get("/users").status_code == 403
    # The remaining admin is the last one now.
    other = logged_in(console, "li.lei")
    assert post(other, "/users/li.lei/role", {"role": "viewer"}, "/users").status_code == 400


@pytest.mark.parametrize("login", ["li.lei", "han.meimei"])
@pytest.mark.parametrize(
    ("path", "data"),
    [("/users", {"login": "x.y", "role": "admin", "password": NEW_PASSWORD}),
     ("/users/boss/role", {"role": "viewer"}), ("/users/boss/unlock", {}),
     ("/users/boss/remove", {})],
)  # fmt: skip
def test_viewers_and_operators_may_not_manage_users(console, login, path, data):
    client = logged_in(console, login)
    response = client.post(path, data={**data, "csrf_token": csrf(client, "/")})
    assert response.status_code == 403
    assert user(console, "boss")["role"] == "admin" and user(console, "x.y") is None
    assert 'href="/users"' not in client.get("/").get_data(as_text=True)


def test_a_user_change_without_the_csrf_token_is_refused(console):
    admin = logged_in(console, "boss")
    assert admin.post("/users/li.lei/role", data={"role": "admin"}).status_code == 400
    assert admin.post("/users/li.lei/remove", data={"csrf_token": "forged"}).status_code == 400
    assert user(console, "li.lei")["role"] == "viewer"


def test_another_tenants_users_are_out_of_reach(console):
    bloom = logged_in(console, "xiao.hua", tenant="bloom")
    page = bloom.get("/users").get_data(as_text=True)
    assert "xiao.hua" in page and "li.lei" not in page and "boss" not in page
    for path, data in [("/users/li.lei/role", {"role": "admin"}), ("/users/li.lei/unlock", {}),
                       ("/users/boss/remove", {})]:  # fmt: skip
        assert post(bloom, path, data, "/users").status_code == 404
    assert user(console, "li.lei")["role"] == "viewer" and user(console, "boss") is not None
    # A user created by bloom's admin is bloom's, whatever login it has.
    assert post(bloom, "/users", {"login": "li.lei", "role": "viewer",
                                  "password": NEW_PASSWORD}, "/users").status_code == 302  # fmt: skip
    assert user(console, "li.lei", "bloom")["role"] == "viewer"
    assert log_in(console.client(), "li.lei", PASSWORD).status_code == 302  # acme's, unchanged
