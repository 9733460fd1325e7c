"""The platform's budget of group sends (docs/platform.md "The platform's budget of group sends"):
periods and limits at their edges, the setting and its old form, the policy's exclusion, and
the fake platform's same rule with its list of group sends (staff-initiated ones included)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from marshmallow import ValidationError

from sandbox.fake_wechat import FakeConfig, build_state, create_app
from sandbox.fake_wechat import budget as fake_budget
from services.outreach import budget
from services.outreach.model import OutreachSettingsSchema, outreach_settings
from services.outreach.policies import Item, Policy, Recipient, decide
from shared.config import Settings
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants

SH, NY = "Asia/Shanghai", "America/New_York"


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize(
    ("mode", "at", "tz", "start", "end", "limit"),
    [
        # month: as many as the month has days (28, 29, 30, 31)
        ("month", local(SH, 2026, 2, 28, 23, 59), SH, (2026, 2, 1), (2026, 3, 1), 28),
        ("month", local(SH, 2028, 2, 29, 12, 0), SH, (2028, 2, 1), (2028, 3, 1), 29),
        ("month", local(SH, 2026, 4, 30, 23, 59), SH, (2026, 4, 1), (2026, 5, 1), 30),
        ("month", local(SH, 2026, 12, 31, 0, 0), SH, (2026, 12, 1), (2027, 1, 1), 31),
        ("month", local(SH, 2026, 3, 1, 0, 0), SH, (2026, 3, 1), (2026, 4, 1), 31),
        # China time decides, as WeCom counts (below: whatever the tenant's zone)
        # week: ISO weeks, Monday to Sunday
        ("week", local(SH, 2026, 12, 6, 23, 59), SH, (2026, 11, 30), (2026, 12, 7), 7),
        ("week", local(SH, 2026, 12, 7, 0, 0), SH, (2026, 12, 7), (2026, 12, 14), 7),
        ("week", local(SH, 2026, 12, 31, 12, 0), SH, (2026, 12, 28), (2027, 1, 4), 7),
        # day: China's day
        ("day", local(SH, 2026, 12, 1, 0, 0), SH, (2026, 12, 1), (2026, 12, 2), 1),
        ("day", local(SH, 2026, 11, 30, 23, 59), SH, (2026, 11, 30), (2026, 12, 1), 1),
    ],
)
def test_periods_and_limits(mode, at, tz, start, end, limit):
    first, last = budget.period(mode, at)
    assert (first, last) == (local(tz, *start), local(tz, *end))
    assert first <= at < last
    assert budget.limit(mode, at) == limit


@pytest.mark.parametrize(
    ("mode", "tenant_tz", "at", "start", "end"),
    [
        # 1 March 01:00 in Shanghai is still February in UTC and New York: March for WeCom
        ("month", "UTC", local(SH, 2026, 3, 1, 1, 0), (2026, 3, 1), (2026, 4, 1)),
        ("month", NY, local(SH, 2026, 3, 1, 1, 0), (2026, 3, 1), (2026, 4, 1)),
        # New York's Sunday evening is Monday in Shanghai: a new ISO week
        ("week", NY, local(NY, 2026, 12, 6, 20, 0), (2026, 12, 7), (2026, 12, 14)),
        # New York's noon across a DST change is past midnight in Shanghai: China's day
        ("day", NY, local(NY, 2026, 3, 8, 12, 0), (2026, 3, 9), (2026, 3, 10)),
    ],
)
def test_periods_are_china_time_whatever_the_tenants_zone(mode, tenant_tz, at, start, end):
    """A plan made for a tenant of another zone counts WeCom's period (China time)."""
    from services.outreach.plan import Campaign, budget_period

    class Conn:  # the tenant's settings and zone, as the plan reads them
        def execute(self, query, params=None):
            row = {"settings": {"outreach": {"quotas": {"wecom_budget": mode}}},
                   "timezone": tenant_tz}  # fmt: skip
            return type("R", (), {"fetchone": lambda self: row})()

    campaign = Campaign("t", "c", "wecom_single", {}, {"item": "x"}, {}, None, False, "active")
    assert budget_period(Conn(), campaign, at) == (local(SH, *start), local(SH, *end))


@pytest.mark.parametrize(
    ("quotas", "mode"),
    [
        ({}, "month"),
        ({"wecom_budget": "week"}, "week"),
        ({"wecom_budget": "day"}, "day"),
        # the old setting still loads, every value the same way: WeCom's default month
        ({"wecom_customer_per_day": 1}, "month"),
        ({"wecom_customer_per_day": 0}, "month"),
        ({"wecom_customer_per_day": 4}, "month"),
        ({"wecom_customer_per_day": None}, "month"),
        ({"wecom_customer_per_day": 1, "wecom_budget": "week"}, "week"),
    ],
)
def test_the_setting_and_its_old_form(quotas, mode):
    loaded = outreach_settings({"outreach": {"quotas": quotas}})
    assert loaded["quotas"]["wecom_budget"] == mode
    assert "wecom_customer_per_day" not in OutreachSettingsSchema().dump(loaded)["quotas"]


def test_a_bad_mode_names_the_valid_ones():
    with pytest.raises(ValidationError) as exc:
        OutreachSettingsSchema().load({"quotas": {"wecom_budget": "year"}})
    assert exc.value.messages == {
        "quotas": {"wecom_budget": ["Unknown WeCom budget mode 'year'. Valid: month, week, day."]}
    }


CAPS = {"contact_per_day": 9, "contact_per_week": 99, "group_per_day": 9, "group_per_week": 99}
QUOTAS = {"wecom_budget": "month", "oa_mass_per_month": 4, "oa_custom_window_hours": 48,
          "oa_custom_per_window": 5}  # fmt: skip
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "channel", "used", "limit", "reason"),
    [
        ("contact", "wecom_single", 30, 31, None),
        ("contact", "wecom_single", 31, 31, "platform_budget"),
        ("group", "wecom_group", 6, 7, None),
        ("group", "wecom_group", 7, 7, "platform_budget"),
        ("contact", "wecom_single", 1, 1, "platform_budget"),
        # no budget on other channels: a notice used far past any limit still goes
        ("contact", "oa_template", 500, None, None),
    ],
)
def test_the_policy_excludes_a_recipient_whose_budget_is_used(kind, channel, used, limit, reason):
    r = Recipient(kind=kind, id="x", address="wmX", mode="b2c", budget_used=used,
                  oa_follower=True)  # fmt: skip
    rules = Policy(channel=channel, caps=CAPS, quotas=QUOTAS, budget=limit)
    fmt = "service_notice" if channel == "oa_template" else None
    assert decide(r, [Item("cnt", False, format=fmt)], rules, NOW, series=False).reason == reason


# --- the fake platform --------------------------------------------------------------------------

TENANTS = load_tenants(DEMO_TENANTS_PATH)
CORP = TENANTS.get("acme").wecom.corp_id
WE = "/wecom/cgi-bin"
DAY = 86400


class Clock:
    def __init__(self, at: datetime):
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake(monkeypatch):
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    clock = Clock(local(SH, 2026, 2, 27, 10, 0))
    state = build_state(Settings.from_env({"SIYU_TENANTS": str(DEMO_TENANTS_PATH)}), seed=1,
                        contacts=10, config=FakeConfig(token_ttl=10**8), clock=clock)  # fmt: skip
    client = create_app(state).test_client()
    token = client.get(f"{WE}/gettoken", query_string={
        "corpid": CORP, "corpsecret": DEMO_SECRETS["ACME_WECOM_SECRET"]}).json["access_token"]  # fmt: skip
    return state, client, token, clock


def _customer(state) -> tuple[str, str]:
    contact = next(c for c in state.worlds[CORP].contacts.values() if c.follow_user)
    return contact.external_contact["external_userid"], contact.follow_user[0]["userid"]


def _send(client, token, ext) -> int:
    body = {"chat_type": "single", "external_userid": [ext], "text": {"content": "hi"}}
    r = client.post(f"{WE}/externalcontact/add_msg_template", json=body,
                    query_string={"access_token": token}).json  # fmt: skip
    assert r["errcode"] == 0, r
    msg = next(m for m in client.application.config["FAKE_STATE"].mailbox.sent
               if m.msgid == r["msgid"])  # fmt: skip
    return next(iter(msg.tasks.values()))[ext]


@pytest.mark.parametrize(("mode", "allowed"), [("day", 1), ("week", 7), ("month", 28)])
def test_the_fake_refuses_the_send_past_the_corps_budget(fake, mode, allowed):
    state, client, token, clock = fake
    assert client.patch("/_fake/config", json={"wecom_budget": {CORP: mode}}).status_code == 200
    ext, _ = _customer(state)
    # From Monday 2 February 2026 (ISO week start, month start) in Beijing time.
    clock.t = local(SH, 2026, 2, 2, 0, 0).timestamp()
    statuses = [_send(client, token, ext) for _ in range(allowed)]
    assert statuses == [1] * allowed
    assert _send(client, token, ext) == 3  # already received the allowed number
    # The next period opens the budget again (day: tomorrow; week: next Monday; month: March).
    clock.t = fake_budget.period(mode, clock.t)[1]
    assert _send(client, token, ext) == 1


def test_a_bad_budget_mode_is_refused_by_the_fake(fake):
    _, client, _, _ = fake
    r = client.patch("/_fake/config", json={"wecom_budget": {CORP: "year"}})
    assert r.status_code == 400
    assert "month, week, day" in r.json["error"]


def test_group_sends_are_listed_with_staff_initiated_ones(fake):
    state, client, token, clock = fake
    ext, staff = _customer(state)
    _send(client, token, ext)
    made = client.post("/_fake/groupmsg", json={"corpid": CORP, "sender": staff,
                                                "targets": [ext], "text": "mine"})  # fmt: skip
    assert made.status_code == 201
    q = {"access_token": token}
    body = {"chat_type": "single", "start_time": int(clock.t) - DAY, "end_time": int(clock.t)}
    listed = client.post(f"{WE}/externalcontact/get_groupmsg_list_v2", json=body,
                         query_string=q).json  # fmt: skip
    assert [m["create_type"] for m in listed["group_msg_list"]] == [0, 1]
    assert listed["group_msg_list"][1]["creator"] == staff
    staff_only = client.post(f"{WE}/externalcontact/get_groupmsg_list_v2",
                             json={**body, "filter_type": 1}, query_string=q).json  # fmt: skip
    assert [m["msgid"] for m in staff_only["group_msg_list"]] == [made.json["msgid"]]
    # A page of one, then the next by the cursor.
    first = client.post(f"{WE}/externalcontact/get_groupmsg_list_v2", json={**body, "limit": 1},
                        query_string=q).json  # fmt: skip
    assert first["next_cursor"]
    second = client.post(f"{WE}/externalcontact/get_groupmsg_list_v2",
                         json={**body, "limit": 1, "cursor": first["next_cursor"]},
                         query_string=q).json  # fmt: skip
    assert second["group_msg_list"][0]["msgid"] == made.json["msgid"]
    assert second["next_cursor"] == ""
    # More than a month apart is refused.
    wide = {**body, "start_time": body["end_time"] - 40 * DAY}
    refused = client.post(f"{WE}/externalcontact/get_groupmsg_list_v2", json=wide,
                          query_string=q).json  # fmt: skip
    assert refused["errcode"] == 40058


def test_the_fake_counts_a_send_when_the_member_sends_it(fake):
    """WeCom decides status 3 when the member sends: a task made late on one day and confirmed
    the next consumes the next day's budget, not the day it was made."""
    state, client, token, clock = fake
    assert client.patch("/_fake/config", json={"wecom_budget": {CORP: "day"},
                                               "confirm_delay": 3600}).status_code == 200  # fmt: skip
    ext, _ = _customer(state)
    clock.t = local(SH, 2026, 2, 2, 23, 30).timestamp()  # confirmed at 00:30 on the 3rd
    first = _send(client, token, ext)
    clock.t = local(SH, 2026, 2, 3, 0, 10).timestamp()  # confirmed at 01:10 on the 3rd
    second = _send(client, token, ext)
    clock.t = local(SH, 2026, 2, 3, 2, 0).timestamp()
    q = {"access_token": token}
    statuses = []
    for m in state.mailbox.sent:
        (userid,) = m.tasks
        r = client.post(f"{WE}/externalcontact/get_groupmsg_send_result",
                        json={"msgid": m.msgid, "userid": userid}, query_string=q).json  # fmt: skip
        statuses.append(r["send_list"][0]["status"])
    assert (first, second) == (1, 1)  # nothing decided before the member sends
    assert statuses == [1, 3]  # the first, sent on the 3rd, used the 3rd's one send
