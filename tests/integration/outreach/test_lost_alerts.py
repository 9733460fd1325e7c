"""Lost-customer alerts (services/outreach/lost_alerts.py): a profile carrying ``lost`` queues one
notice per loss; the worker sends it to the staff member as a WeCom text card through the fake's
``message/send``, retries transient errors and records refusals."""

from __future__ import annotations

from datetime import timedelta

from services.outreach import lost_alerts
from tests.integration.outreach.conftest import TENANTS

CONSOLE = "https://console.acme.example"


def lost(outreach, contact_id: str, *, staff: str = "zhangwei", event_id: str = "ev-loss-1",
         reason: str = "customer_deleted_staff", minutes: int = 30) -> dict:  # fmt: skip
    at = outreach.now - timedelta(minutes=minutes)
    return outreach.profile(contact_id, ext=f"wm{contact_id}", wecom_contact=False,
                            lost={"reason": reason, "staff_userid": staff, "at": at,
                                  "event_id": event_id}, updated_at=at)  # fmt: skip


def send(outreach) -> dict[str, int]:
    return lost_alerts.send_due(outreach.pool, outreach.clients, TENANTS, CONSOLE, outreach.now)


def notices(outreach) -> list[dict]:
    return outreach.sql("SELECT * FROM lost_notices ORDER BY contact_id, loss_key")


def test_a_loss_notifies_its_staff_member_once(outreach):
    profile = lost(outreach, "c_li")
    assert send(outreach) == {"sent": 1}
    (message,) = outreach.messages("app")
    assert message.targets == ["zhangwei"]
    body = message.body
    assert (body["msgtype"], body["touser"], body["agentid"]) == ("textcard", "zhangwei", 1000002)
    assert body["textcard"]["title"] == "客户删除了你"
    assert body["textcard"]["url"] == f"{CONSOLE}/contacts/c_li"
    assert "该客户已不再接收一对一消息" in body["textcard"]["description"]
    (notice,) = notices(outreach)
    assert (notice["status"], notice["msgid"], notice["attempts"]) == ("sent", message.msgid, 1)

    # Redelivered (same profile) and re-derived (a newer profile, the same loss): no second notice.
    with outreach.pool.connection() as conn, conn.transaction():
        from services.outreach import projection

        projection.apply_profiles(conn, [profile], outreach.now)
    lost(outreach, "c_li", minutes=10)
    assert send(outreach) == {}
    assert len(outreach.messages("app")) == 1
    # Lost again after a re-add: a new loss, a new notice.
    lost(outreach, "c_li", event_id="ev-loss-2", reason="staff_deleted_customer", minutes=5)
    assert send(outreach) == {"sent": 1}
    assert outreach.messages("app")[-1].body["textcard"]["title"] == "客户已被删除"


def test_an_unknown_staff_member_is_recorded_as_failed(outreach):
    lost(outreach, "c_ghost", staff="nobody_here")
    assert send(outreach) == {"failed": 1}
    (notice,) = notices(outreach)
    assert notice["status"] == "failed"
    assert notice["errcode"] == 81013
    assert outreach.messages("app") == []
    assert send(outreach) == {}  # never retried


def test_a_loss_without_staff_or_too_old_is_not_sent(outreach):
    lost(outreach, "c_old", minutes=60 * 25)  # older than a day when first seen: not announced
    lost(outreach, "c_nostaff", staff=None)
    assert send(outreach) == {"failed": 1}
    (notice,) = notices(outreach)
    assert notice["contact_id"] == "c_nostaff"
    assert notice["error"].startswith("channel_unavailable")


def test_transient_errors_retry_with_backoff_then_send(outreach):
    lost(outreach, "c_busy")
    outreach.fake.fail("message/send", -1, -1, -1)  # busy three times: the client gives up
    assert send(outreach) == {"pending": 1}
    (notice,) = notices(outreach)
    assert (notice["status"], notice["attempts"], notice["errcode"]) == ("pending", 1, -1)
    assert send(outreach) == {}  # not due yet
    outreach.now = notice["next_at"] + timedelta(seconds=1)
    assert send(outreach) == {"sent": 1}
    assert len(outreach.messages("app")) == 1


def test_the_fake_refuses_like_the_platform(outreach):
    import pytest

    from shared.wechat import WeComError

    client = outreach.clients.wecom("acme")
    card = {"title": "t", "description": "d", "url": "https://x.example/"}
    refusals = [
        ({"agentid": 1, "touser": "zhangwei", "msgtype": "textcard", "textcard": card}, 40056),
        ({"agentid": 1000002, "touser": "ghost", "msgtype": "textcard", "textcard": card}, 81013),
        ({"agentid": 1000002, "touser": "zhangwei", "msgtype": "textcard",
          "textcard": {**card, "url": None}}, 40058),
    ]  # fmt: skip
    for body, errcode in refusals:
        with pytest.raises(WeComError) as refused:
            client.send_app_message(body)
        assert refused.value.errcode == errcode
    partly = client.send_app_message(
        {
            "agentid": 1000002,
            "touser": "zhangwei|Ghost",
            "msgtype": "text",
            "text": {"content": "x"},
        }
    )
    assert partly["invaliduser"] == "ghost"
    assert outreach.messages("app")[-1].targets == ["zhangwei"]
    # A title past 128 bytes is cut, not refused (43 characters of 3 bytes: 42 kept).
    client.send_app_message({"agentid": 1000002, "touser": "zhangwei", "msgtype": "textcard",
                             "textcard": {**card, "title": "长" * 43}})  # fmt: skip
    assert outreach.messages("app")[-1].body["textcard"]["title"] == "长" * 42


def test_a_merge_of_two_contacts_yields_one_notice(outreach):
    # store.merge_contact moves events to the survivor with the same ids: its profile carries
    # the same loss (same event id) as the merged contact's did.
    lost(outreach, "c_merged", event_id="ev-loss-m")
    lost(outreach, "c_survivor", event_id="ev-loss-m", minutes=20)
    assert send(outreach) == {"sent": 1}
    assert len(outreach.messages("app")) == 1


def test_a_lagging_batch_lost_then_re_added_notifies_nobody(outreach):
    from services.outreach import projection

    v1 = lost(outreach, "c_back", minutes=50)  # builds v1; re-applied below with v2
    outreach.sql("DELETE FROM lost_notices")
    outreach.sql("DELETE FROM audience")
    v2 = {**v1, "lost": None, "wecom_contact": True,
          "updated_at": outreach.now - timedelta(minutes=40)}  # fmt: skip
    with outreach.pool.connection() as conn, conn.transaction():
        projection.apply_profiles(conn, [v1, v2], outreach.now)
    assert notices(outreach) == []
    assert send(outreach) == {}


def test_one_card_per_staff_member_per_pass(outreach):
    for i in range(3):
        lost(outreach, f"c_bulk{i}", event_id=f"ev-bulk-{i}", minutes=30 + i)
    lost(outreach, "c_other", staff="lina", event_id="ev-other")
    assert send(outreach) == {"sent": 4}
    cards = {m.targets[0]: m.body for m in outreach.messages("app")}
    assert set(cards) == {"zhangwei", "lina"}
    assert cards["zhangwei"]["textcard"]["title"] == "3 位客户已流失"
    assert cards["zhangwei"]["textcard"]["url"] == f"{CONSOLE}/#lost"
    assert cards["lina"]["textcard"]["url"] == f"{CONSOLE}/contacts/c_other"
    assert cards["lina"]["enable_duplicate_check"] == 1


def test_corp_setup_errors_are_retried_like_outages(outreach):
    lost(outreach, "c_ip")
    outreach.fake.fail("message/send", 60020)  # IP not allowed: ops fix it
    assert send(outreach) == {"pending": 1}
    (notice,) = notices(outreach)
    assert (notice["status"], notice["errcode"]) == ("pending", 60020)
    outreach.now = notice["next_at"] + timedelta(seconds=1)
    assert send(outreach) == {"sent": 1}


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Stub:
    """A WeCom client per tenant: acme's corp times out (13 s each), bloom's answers."""

    def __init__(self, clock, error):
        self.clock, self.error, self.calls = clock, error, []

    def wecom(self, tenant_id):
        stub = self

        class Client:
            def send_app_message(self, body):
                stub.calls.append(tenant_id)
                if tenant_id == "acme":
                    stub.clock.t += 13
                    raise stub.error
                return {"msgid": f"m{len(stub.calls)}"}

        return Client()


def _queue(outreach, tenant, contact, staff, minutes):
    at = outreach.now - timedelta(minutes=minutes)
    outreach.sql(
        "INSERT INTO lost_notices (tenant_id, contact_id, loss_key, reason, staff_userid, "
        "lost_at, next_at) VALUES (%s, %s, %s, 'customer_deleted_staff', %s, %s, %s)",
        (tenant, contact, f"ev-{contact}", staff, at, at),
    )


def test_a_timing_out_corp_is_tried_once_per_pass_and_others_get_theirs(outreach):
    from shared.wechat import RateLimited, WeComUnavailable

    for error, wait in [(WeComUnavailable(None, "timeout"), 30),
                        (RateLimited(45009, "limit", retry_after=120), 120)]:  # fmt: skip
        outreach.sql("DELETE FROM lost_notices")
        _queue(outreach, "acme", "c_a1", "zhangwei", 50)
        _queue(outreach, "acme", "c_a2", "lina", 49)
        _queue(outreach, "bloom", "c_b1", "wanghong", 48)
        clock = _Clock()
        stub = _Stub(clock, error)
        counts = lost_alerts.send_due(outreach.pool, stub, TENANTS, CONSOLE, outreach.now,
                                      budget=20, clock=clock)  # fmt: skip
        assert stub.calls == ["acme", "bloom"]  # acme skipped after its first failure
        assert counts == {"pending": 1, "sent": 1}
        (a1,) = outreach.sql("SELECT * FROM lost_notices WHERE contact_id = 'c_a1'")
        assert a1["next_at"] >= outreach.now + timedelta(seconds=wait)
        # A pass never starts a send after its budget: the slow corp used it all.
        outreach.sql("UPDATE lost_notices SET status = 'pending', next_at = %s",
                     (outreach.now - timedelta(hours=1),))  # fmt: skip
        outreach.sql("UPDATE lost_notices SET next_at = next_at - interval '1 minute' "
                     "WHERE contact_id = 'c_a1'")  # fmt: skip
        clock = _Clock()
        stub2 = _Stub(clock, error)
        lost_alerts.send_due(outreach.pool, stub2, TENANTS, CONSOLE, outreach.now,
                             budget=5, clock=clock)  # fmt: skip
        assert stub2.calls == ["acme"]
        # The next pass: acme (all of its notices) is not due yet, bloom's goes.
        clock.t = 0
        lost_alerts.send_due(outreach.pool, stub2, TENANTS, CONSOLE, outreach.now,
                             budget=5, clock=clock)  # fmt: skip
        assert stub2.calls == ["acme", "bloom"]


def test_the_fake_drops_past_the_per_member_limit_and_honours_the_duplicate_check(outreach):
    client = outreach.clients.wecom("acme")

    def card(i, **extra):
        return {
            "agentid": 1000002,
            "touser": "zhangwei",
            "msgtype": "textcard",
            **extra,
            "textcard": {"title": f"t{i}", "description": "d", "url": "https://x.example/"},
        }

    for i in range(31):  # all answered errcode 0 with a msgid, like WeCom
        assert client.send_app_message(card(i))["msgid"]
    assert len(outreach.messages("app")) == 30  # the 31st in the minute was dropped
    with outreach.fake.state.lock:
        outreach.fake.state.offset += 61  # a minute later: zhangwei may receive again
    dup = {"enable_duplicate_check": 1, "duplicate_check_interval": 1800}
    before = len(outreach.messages("app"))
    first = client.send_app_message(card(99, **dup))
    again = client.send_app_message(card(99, **dup))
    assert first["msgid"] == again["msgid"]
    assert len(outreach.messages("app")) - before == 1
