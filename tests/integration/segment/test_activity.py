"""Activity is the customer's own (docs/domain.md "Activity"), through the consumer: a WeCom
enrichment fetch updates the profile but not the contact's last activity, the account's
`inactive` flag or its engaged roles; the customer's own message does."""

from __future__ import annotations

from datetime import timedelta

from services.segment.enrichment import enriched_touchpoint
from tests.integration.segment.test_consumer import T0, Segment, send, tp
from tests.kafka_helpers import RunnerThread, wait_until

COMPANY = "苏州精工机械有限公司"
QUIET = timedelta(days=100)  # past the inactive limit (45 days) and the engaged window (90)


def _li(segment: Segment) -> tuple:
    (row,) = segment.rows(
        "SELECT c.last_event_at, c.last_active_at, c.title, c.score, a.roles_engaged, "
        "a.risk_flags FROM contacts c JOIN accounts a USING (tenant_id, account_id) "
        "WHERE c.contact_id = (SELECT contact_id FROM identities WHERE value = 'uLi')"
    )
    return row


def test_an_enrichment_fetch_is_no_activity_a_message_is(segment, kafka):
    crm = tp(1, "biz.contact.updated", crm_id="C-7", unionid="uLi", account_key=COMPANY,
             attributes={"name": "李工", "title": "IT经理", "company": COMPANY})  # fmt: skip
    click = tp(2, "oa.click", minutes=1, openid="oLi", unionid="uLi",
               attributes={"event_key": "WP"})  # fmt: skip
    detail = {"external_contact": {"external_userid": "wmLi", "unionid": "uLi", "name": "李工",
                                   "position": "IT总监", "corp_name": COMPANY, "type": 2}}  # fmt: skip
    fetched = enriched_touchpoint(
        "acme", "wmLi", detail, fetched_at=T0 + QUIET, answers=T0 + QUIET - timedelta(minutes=1)
    )
    send(kafka, [crm, click, fetched])
    with RunnerThread(segment.runner("activity")):
        wait_until(lambda: segment.count("events") == 3, message="3 events applied")
        wait_until(lambda: _li(segment)[2] == "IT总监", message="the fetch applied")
    last_event, last_active, _, score, engaged, flags = _li(segment)
    assert last_event == fetched.occurred_at  # the newest event of any kind
    assert last_active == click.occurred_at  # not the fetch, not the CRM's edit
    assert "inactive" in [f["flag"] for f in flags]
    assert engaged == []  # no own action of the IT manager in 90 days
    assert score < 0.2  # the click decayed over 100 days; the fetch earned nothing

    message = tp(3, "oa.message", minutes=int(QUIET.total_seconds() // 60) + 60, openid="oLi",
                 attributes={"msg_type": "text", "content": "报价?"})  # fmt: skip
    send(kafka, [message])
    with RunnerThread(segment.runner("activity")):
        wait_until(lambda: segment.count("events") == 4, message="the message applied")
        wait_until(lambda: _li(segment)[1] == message.occurred_at, message="active again")
        wait_until(lambda: _li(segment)[4] == ["technical"], message="engaged again")
    last_event, last_active, _, score, engaged, flags = _li(segment)
    assert last_event == last_active == message.occurred_at
    assert "inactive" not in [f["flag"] for f in flags]
    assert score >= 3.0

    contact = segment.rows("SELECT contact_id FROM identities WHERE value = 'uLi'")[0][0]
    other = segment.rows("SELECT count(*) FROM contacts WHERE contact_id <> %s", contact)[0][0]
    assert other == 0  # one person throughout
