"""The group tasks page and linking a console user to a WeCom member (docs/console.md "Group
tasks"): a launched 1:1 campaign's tasks, pending per owner, listed with the signed-in user's own
first once an admin links their WeCom userid (checked against WeCom's follow-user list, inline
400 with the valid ones); an unknown staff filter is an inline 400; a viewer sees the page but
cannot link; the campaign page shows each member's confirmation."""

from __future__ import annotations

import html

from services.outreach.results import poll_results
from tests.integration.console.campaign_world import (
    SEGMENT,
    audience,
    first_slot,
)
from tests.integration.console.conftest import csrf, log_in

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}


def page(response, status: int = 200) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body[:1500]
    return html.unescape(body)


def signed_in(console, login: str):
    client = console.client()
    log_in(client, login)
    return client


def link(client, login: str, userid: str):
    return client.post(f"/users/{login}/wecom",
                       data={"wecom_userid": userid, "csrf_token": csrf(client, "/users")})  # fmt: skip


def test_pending_tasks_mine_first_and_linking_a_wecom_userid(live):
    console, outreach = live
    audience(outreach, 3)
    outreach.fake.state.config.confirm_delay = 10**7  # nobody confirms by themselves
    campaign = outreach.campaign(launch=False, channel="wecom_single",
                                 audience={"segments": [SEGMENT]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    assert outreach.call("POST", f"/campaigns/{campaign}/launch", "operator").status_code == 200
    outreach.now = first_slot(console, campaign)
    assert outreach.schedule() == 1 and outreach.send() == 1
    poll_results(outreach.pool, outreach.clients, outreach.now)
    tasks = console.sql("SELECT userid, status FROM group_tasks ORDER BY userid")
    assert tasks and {t["status"] for t in tasks} == {"pending"}
    owners = [t["userid"] for t in tasks]
    last = owners[-1]  # newest-first order would not put it first by itself when >1 owner

    admin = signed_in(console, "boss")
    listed = page(admin.get("/group-tasks"))
    assert 'id="not-linked"' in listed and listed.count('class="task"') == len(owners)

    refused = page(link(admin, "boss", "nobody"), 400)
    assert "nobody" in refused and owners[0] in refused  # the valid members are listed
    assert console.sql("SELECT wecom_userid FROM console_users WHERE login = 'boss'")[0][
        "wecom_userid"] is None  # fmt: skip
    assert link(admin, "boss", last).status_code == 302
    mine = page(admin.get("/group-tasks"))
    assert 'id="mine"' in mine
    first_row = mine.index('class="task')
    assert mine[first_row:].startswith('class="task mine"')
    assert f'-{last}"' in mine[first_row : first_row + 200]
    audit = console.sql("SELECT actor, action FROM audit_log WHERE action = 'user.wecom_userid'")
    assert audit == [{"actor": "console:boss", "action": "user.wecom_userid"}]

    # Filters: another member's, another status; an unknown member is an inline 400.
    only = page(admin.get(f"/group-tasks?staff={owners[0]}"))
    assert only.count('class="task') == 1
    assert 'id="no-tasks"' in page(admin.get("/group-tasks?status=sent"))
    unknown = page(admin.get("/group-tasks?staff=zhang-wei-x"), 400)
    assert 'id="staff-error"' in unknown and owners[0] in unknown and "未知员工" in unknown
    bogus = page(admin.get("/group-tasks?status=bogus"), 400)
    assert 'id="status-error"' in bogus
    # Every status ("all"), and a field's own error reported as that field's (not the status).
    assert page(admin.get("/group-tasks?status=")).count('class="task') == len(owners)
    long = page(admin.get("/group-tasks?cursor=" + "x" * 1001), 400)
    assert 'id="cursor-error"' in long and 'id="status-error"' not in long
    # Two users cannot link the same member: an inline 400 naming who has it.
    taken = page(link(admin, "li.lei", last), 400)
    assert "boss" in taken and last in taken
    assert console.sql("SELECT wecom_userid FROM console_users WHERE login = 'li.lei'")[0][
        "wecom_userid"] is None  # fmt: skip

    # A viewer reads the page, may not link anyone.
    viewer = signed_in(console, "li.lei")
    assert 'id="tasks"' in page(viewer.get("/group-tasks"))
    forbidden = viewer.post("/users/li.lei/wecom",
                            data={"wecom_userid": last, "csrf_token": csrf(viewer, "/group-tasks")})  # fmt: skip
    assert forbidden.status_code == 403

    # The campaign page: each member's confirmation of the run.
    detail = page(admin.get(f"/campaigns/{campaign}"))
    assert 'id="confirm-' in detail and f"{last} 0/1" in detail


def test_reminder_settings_on_the_settings_page(console):
    admin = signed_in(console, "boss")
    shown = page(admin.get("/settings"))
    assert "群发提醒" in shown and 'id="reminders-per_day"' in shown
    form = {"caps.contact_per_day": "1", "caps.contact_per_week": "3", "caps.group_per_day": "1",
            "caps.group_per_week": "3", "quotas.wecom_budget": "month",
            "quotas.oa_mass_per_month": "4", "quotas.oa_custom_window_hours": "48",
            "quotas.oa_custom_per_window": "5", "reminders.first_after_minutes": "90",
            "reminders.every_minutes": "180", "reminders.per_day": "4"}  # fmt: skip
    refused = page(admin.post("/settings", data={**form, "csrf_token": csrf(admin, "/settings")}),
                   400)  # fmt: skip
    assert 'id="reminders-per_day-error"' in refused
    form["reminders.per_day"] = "2"
    saved = admin.post("/settings", data={**form, "csrf_token": csrf(admin, "/settings")})
    assert saved.status_code == 302
    (row,) = console.sql("SELECT settings FROM tenants WHERE tenant_id = 'acme'")
    assert row["settings"]["outreach"]["reminders"] == {
        "enabled": True, "first_after_minutes": 90, "every_minutes": 180, "per_day": 2}  # fmt: skip
