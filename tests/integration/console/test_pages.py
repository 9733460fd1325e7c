"""The console's pages on the seeded demo data: Chinese stage names by default, English after
the switch, roles, security headers and the JSON API beside it."""

from __future__ import annotations

from tests.integration.console.conftest import log_in


def text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def test_the_overview_shows_the_funnel_with_chinese_stage_names(console):
    client = console.client()
    log_in(client, "li.lei")
    page = text(client.get("/"))
    for stage in ("注意", "兴趣", "搜索", "比较", "检讨", "行动", "分享", "流失"):
        assert stage in page
    assert 'id="funnel-chart"' in page and 'id="funnel-table"' in page
    assert "CST" in page and "Asia/Shanghai" in page  # acme: times in China Standard Time


def test_the_accounts_list_shows_stage_roles_and_risk_in_chinese(console):
    client = console.client()
    log_in(client, "li.lei")
    page = text(client.get("/accounts"))
    assert "苏州精工机械有限公司" in page and "杭州云杉科技有限公司" in page
    assert "回款风险" in page  # 云杉's overdue invoice
    assert "决策者" in page or "技术" in page  # role coverage
    assert "/6" in page


def test_english_after_the_switch(console):
    client = console.client()
    log_in(client, "li.lei")
    switch = client.get("/lang/en?next=/accounts")
    assert switch.status_code == 302 and switch.headers["Location"] == "/accounts"
    assert "siyu_lang=en" in switch.headers["Set-Cookie"]
    page = text(client.get("/accounts"))
    assert "Payment risk" in page and "回款风险" not in page
    overview = text(client.get("/"))
    assert "Attention" in overview and "Comparison" in overview and "注意" not in overview
    back = client.get("/lang/zh_Hans_CN?next=//evil.example/")
    assert back.headers["Location"] == "/"  # never off the site
    assert "注意" in text(client.get("/"))


def test_a_viewer_cannot_open_admin_pages(console):
    viewer = console.client()
    log_in(viewer, "li.lei")
    refused = viewer.get("/users")
    assert refused.status_code == 403
    assert "无权" in refused.get_data(as_text=True)
    admin = console.client()
    log_in(admin, "boss")
    page = text(admin.get("/users"))
    assert "li.lei" in page and "xiao.hua" not in page  # its own tenant's users only


def test_a_logged_out_visitor_is_sent_to_log_in(console):
    client = console.client()
    for path in ("/", "/accounts", "/users", "/password"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")


def test_console_pages_carry_security_headers(console):
    client = console.client()
    page = client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in page.get_data(as_text=True)


def test_names_are_escaped(console):
    console.sql(
        "UPDATE tenants SET name = '<script>alert(1)</script>' WHERE tenant_id = 'acme' RETURNING 1"
    )
    client = console.client()
    log_in(client, "li.lei")
    page = text(client.get("/"))
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page


def test_the_json_api_beside_it_needs_no_csrf_token(console):
    response = console.client().post("/api/v1/tokens", json={"role": "viewer", "name": "x"})
    assert response.status_code == 401  # bearer auth, not a CSRF 400
    assert "unauthenticated" in response.get_data(as_text=True)


def test_the_static_folder_serves_its_stylesheet_and_nothing_else(console):
    client = console.client()
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
    for path in ("/console/static/../views.py", "/console/static/%2e%2e/views.py",
                 "/static/console.css"):  # fmt: skip
        assert client.get(path).status_code == 404
