"""The account and contact pages on the seeded demo data (tests/integration/api/
test_segment_people.py): Chinese role and stage names, 404 for ids the tenant does not have,
and the staff overrides of a contact's stage and buying role (operator only, CSRF, audited)."""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.integration.api.test_segment_people import JINGGONG, YUNSHAN
from tests.integration.console.conftest import csrf, log_in


def text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:800]
    return response.get_data(as_text=True)


def seg(console, query: str, params=()) -> list[dict]:
    return console.sql(query.replace("{seg}", f'"{console.schema}_seg"'), params)


def account_id(console, name: str) -> str:
    (row,) = seg(console, "SELECT account_id FROM {seg}.accounts WHERE name = %s", (name,))
    return row["account_id"]


def contact_id(console, name: str, tenant: str = "acme") -> str:
    (row,) = seg(
        console,
        "SELECT contact_id FROM {seg}.contacts WHERE tenant_id = %s AND name = %s",
        (tenant, name),
    )
    return row["contact_id"]


def logged_in(console, login: str, tenant: str = "acme"):
    client = console.client()
    log_in(client, login, tenant=tenant)
    return client


def test_the_accounts_list_links_to_the_account_page(console):
    client = logged_in(console, "li.lei")
    page = text(client.get("/accounts"))
    target = client.get(f"/accounts/{account_id(console, JINGGONG)}")
    assert JINGGONG in text(target)
    assert "/accounts/" in page


def test_an_account_page_shows_the_role_grid_members_and_history_in_chinese(console):
    client = logged_in(console, "li.lei")
    page = text(client.get(f"/accounts/{account_id(console, JINGGONG)}"))
    assert 'id="role-grid"' in page
    for role in ("决策者", "技术", "财务", "合规/法务", "业务", "采购"):
        assert role in page
    assert "缺失" in page and "已覆盖" in page  # engaged and missing roles
    assert "王总" in page and "李工" in page and "赵六" in page  # members
    assert 'id="stage-history"' in page and "CST" in page  # acme's zone
    assert "触点" in page  # moved by an event


def test_an_account_page_shows_risk_flags_with_reasons(console):
    client = logged_in(console, "li.lei")
    page = text(client.get(f"/accounts/{account_id(console, YUNSHAN)}"))
    assert "回款风险" in page and 'id="risk-flags"' in page
    (row,) = seg(console, "SELECT risk_flags FROM {seg}.accounts WHERE name = %s", (YUNSHAN,))
    (flag,) = [f for f in row["risk_flags"] if f["flag"] == "payment_risk"]
    assert "张发票逾期" in page  # the reason in Chinese (console/reasons.py)
    assert html.escape(flag["reason"]) in page  # and as the service words it, in the tooltip
    since = datetime.fromisoformat(flag["since"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{since:%Y-%m-%d %H:%M} CST" in page  # since when: in acme's zone, not ISO text
    assert flag["since"] not in page


@pytest.mark.parametrize("path", ["/accounts/no-such-account", "/contacts/no-such-contact"])
def test_an_unknown_id_is_a_404_page(console, path):
    client = logged_in(console, "li.lei")
    response = client.get(path)
    assert response.status_code == 404
    assert "页面不存在" in response.get_data(as_text=True)  # the console's page, in Chinese


def test_another_tenants_ids_are_404(console):
    client = logged_in(console, "li.lei")  # acme
    response = client.get(f"/contacts/{contact_id(console, '小花', 'bloom')}")
    assert response.status_code == 404
    bloom = logged_in(console, "xiao.hua", "bloom")
    assert bloom.get(f"/accounts/{account_id(console, JINGGONG)}").status_code == 404


def test_contact_search_by_name_company_and_id(console):
    client = logged_in(console, "li.lei")
    by_name = text(client.get("/contacts?q=王总"))
    assert "王总" in by_name and "陈会计" not in by_name
    by_company = text(client.get("/contacts?q=云杉"))
    assert "陈会计" in by_company and "王总" not in by_company
    by_id = text(client.get("/contacts?q=oLi"))  # 李工's openid, exactly
    assert "李工" in by_id
    assert "没有符合条件的联系人" in text(client.get("/contacts?q=nobody-at-all"))
    assert "/contacts" in text(client.get("/"))  # in the navigation


def test_a_contact_page_shows_identities_account_and_a_timeline(console):
    client = logged_in(console, "li.lei")
    page = text(client.get(f"/contacts/{contact_id(console, '李工')}"))
    assert "技术" in page  # buying role
    assert "oLi" in page and 'id="identities"' in page
    assert JINGGONG in page and 'id="contact-account"' in page
    assert 'id="timeline"' in page and "CST" in page
    assert '<td title="oa.click">点击菜单</td>' in page  # the touchpoint's type in Chinese
    assert 'class="stage-change"' in page
    times = [line for line in page.splitlines() if "CST</td>" in line]
    stamps = [t.split("<td>")[1].split("</td>")[0] for t in times]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert 'id="stage-form"' not in page  # a viewer is offered no override


def override(client, path: str, data: dict, *, token=True):
    if token:
        data = {**data, "csrf_token": csrf(client, path.rsplit("/", 1)[0])}
    return client.post(path, data=data)


def test_an_operator_overrides_a_contact_stage(console):
    client = logged_in(console, "han.meimei")
    contact = contact_id(console, "赵六")
    page = text(client.get(f"/contacts/{contact}"))
    assert 'id="stage-form"' in page
    done = override(
        client, f"/contacts/{contact}/stage", {"stage": "action", "reason": "签了纸质合同"}
    )
    assert done.status_code == 302, done.get_data(as_text=True)[:800]
    page = text(client.get(done.headers["Location"]))
    assert "阶段已修改" in page
    (row,) = seg(console, "SELECT stage FROM {seg}.contacts WHERE contact_id = %s", (contact,))
    assert row["stage"] == "action"
    (entry,) = console.sql(
        "SELECT actor, details FROM audit_log WHERE action = 'contact.stage_override' AND target = %s",
        (contact,),
    )
    assert entry["actor"] == "console:han.meimei"
    assert entry["details"]["stage"] == "action" and entry["details"]["reason"] == "签了纸质合同"
    assert "员工" in page and "console:han.meimei" in page  # the timeline: moved by staff
    assert "manual: 签了纸质合同" in page


def test_an_operator_overrides_a_buying_role(console):
    client = logged_in(console, "han.meimei")
    contact = contact_id(console, "赵六")
    done = override(
        client, f"/contacts/{contact}/role", {"role": "procurement", "reason": "负责采购"}
    )
    assert done.status_code == 302
    page = text(client.get(done.headers["Location"]))
    assert "采购角色已修改" in page and "员工设定" in page
    (row,) = seg(console, "SELECT role, role_source FROM {seg}.contacts WHERE contact_id = %s",
                 (contact,))  # fmt: skip
    assert row == {"role": "procurement", "role_source": "api"}
    (entry,) = console.sql(
        "SELECT actor FROM audit_log WHERE action = 'contact.role_override' AND target = %s",
        (contact,),
    )
    assert entry["actor"] == "console:han.meimei"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"stage": "nirvana", "reason": "x"}, "请选择本租户生命周期模型中的阶段"),
        ({"stage": "action", "reason": "  "}, "请填写理由"),
    ],
)
def test_an_invalid_stage_override_is_an_inline_error(console, form, error):
    client = logged_in(console, "han.meimei")
    contact = contact_id(console, "赵六")
    refused = override(client, f"/contacts/{contact}/stage", form)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert error in page and 'id="stage-form"' in page
    (row,) = seg(console, "SELECT stage FROM {seg}.contacts WHERE contact_id = %s", (contact,))
    assert row["stage"] != "action" or form["stage"] != "action"


def test_the_same_stage_and_an_unknown_role_are_inline_errors(console):
    client = logged_in(console, "han.meimei")
    contact = contact_id(console, "李工")
    (row,) = seg(console, "SELECT stage FROM {seg}.contacts WHERE contact_id = %s", (contact,))
    same = override(client, f"/contacts/{contact}/stage", {"stage": row["stage"], "reason": "x"})
    assert same.status_code == 400 and "该联系人已处于此阶段" in same.get_data(as_text=True)
    role = override(client, f"/contacts/{contact}/role", {"role": "king", "reason": "x"})
    assert role.status_code == 400 and "请选择六种采购角色之一" in role.get_data(as_text=True)


def test_a_viewer_cannot_override_and_csrf_is_required(console):
    contact = contact_id(console, "赵六")
    viewer = logged_in(console, "li.lei")
    forged = override(viewer, f"/contacts/{contact}/stage", {"stage": "action", "reason": "x"})
    assert forged.status_code == 403
    forged = override(viewer, f"/contacts/{contact}/role", {"role": "finance", "reason": "x"})
    assert forged.status_code == 403
    operator = logged_in(console, "han.meimei")
    no_token = override(
        operator, f"/contacts/{contact}/stage", {"stage": "action", "reason": "x"}, token=False
    )
    assert no_token.status_code == 400
    (row,) = seg(
        console, "SELECT stage, role FROM {seg}.contacts WHERE contact_id = %s", (contact,)
    )
    assert row["stage"] != "action" and row["role"] != "finance"
    assert not console.sql("SELECT 1 FROM audit_log WHERE target = %s", (contact,))
