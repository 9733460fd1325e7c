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
