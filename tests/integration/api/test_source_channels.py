"""Source channels (docs/domain.md "Channel codes"): contacts and accounts keep their first and
latest channel from channel code states; the contact and account API show them and the funnel
cuts by the first one (``source_channel``, validated)."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.segment import store
from services.segment.api_accounts import AccountSchema, account_view
from services.segment.api_contacts import ContactSchema, contact_view
from services.segment.derive import HISTORY_DAYS
from tests.integration.api import test_segment_lifecycle
from tests.integration.api.test_segment_lifecycle import (
    ALL_TIME,
    B2B_STEPS,
    LI,
    T0,
    WANG,
    _error,
    days,
    minutes,
    tp,
)

lc = test_segment_lifecycle.lc  # the fixture: segment and the admin API on the test's schemas
EXPO, AD = "expo.abcdefghij", "ad.klmnopqrst"


def test_first_and_latest_channel_of_contacts_and_accounts(lc):
    first, *rest = B2B_STEPS
    first = [
        tp("add-li", "wecom.contact.added", minutes(0), external_userid="wmLi",
           staff_userid="zhangwei", attributes={"state": EXPO}),
        *first[1:],
    ]  # fmt: skip
    lc.apply(first)
    for step in rest:
        lc.apply(step)
    lc.apply([tp("add-wang", "wecom.contact.added", days(12), **WANG, external_userid="wmWang",
                 staff_userid="lina", attributes={"state": AD})])  # fmt: skip
    (li,) = lc.rows("SELECT contact_id FROM contacts WHERE name = '李工'")
    (account_id,) = lc.rows("SELECT account_id FROM accounts")[0]
    # What GET /contacts/<id> and GET /accounts/<id> answer (their view functions).
    with lc.seg_pool.connection() as conn:
        contact = ContactSchema().dump(contact_view(conn, "acme", li[0]))
        account = AccountSchema().dump(account_view(conn, "acme", account_id))
    assert contact["source_channel"]["first"] == "expo"
    assert contact["source_channel"]["latest"] == "expo"
    assert (account["source_channel"]["first"], account["source_channel"]["latest"]) == (
        "expo", "ad")  # fmt: skip

    everyone = lc.ok("GET", "/reports/funnel", query_string=ALL_TIME)
    expo = lc.ok("GET", "/reports/funnel", query_string={**ALL_TIME, "source_channel": "expo"})
    ad = lc.ok("GET", "/reports/funnel", query_string={**ALL_TIME, "source_channel": "ad"})
    assert everyone["total"] == expo["total"] == 1
    assert ad["total"] == 0  # the account's FIRST channel is expo
    assert expo["filters"]["source_channel"] == "expo"
    contacts = lc.ok("GET", "/reports/funnel",
                     query_string={**ALL_TIME, "subject": "contacts", "source_channel": "ad"})  # fmt: skip
    assert contacts["total"] == 1  # Wang

    bad = lc.call("GET", "/reports/funnel", query_string={"source_channel": "tv"})
    error = _error(bad, 400, "invalid_request")
    assert "expo" in str(error["details"])


def test_a_state_siyu_did_not_issue_names_no_channel(lc):
    lc.apply([tp("add-x", "wecom.contact.added", minutes(0), external_userid="wmX",
                 staff_userid="zhangwei", attributes={"state": "made-in-wecom-admin"}),
              tp("crm-x", "biz.contact.updated", minutes(1), **LI, external_userid="wmX",
                 attributes={"name": "李工"})])  # fmt: skip
    (row,) = lc.rows("SELECT first_channel, latest_channel FROM contacts")
    assert row == (None, None)


def test_a_merge_keeps_the_earliest_first_and_the_newest_latest_channel(lc):
    # Two contacts, apart: the old one came through expo long ago, the new one through ad.
    lc.apply([tp("add-old", "wecom.contact.added", minutes(0), external_userid="wmOld",
                 staff_userid="zhangwei", attributes={"state": EXPO}),
              tp("add-new", "wecom.contact.added", days(30), external_userid="wmNew",
                 staff_userid="lina", attributes={"state": AD})])  # fmt: skip
    ids = dict(lc.rows("SELECT i.value, i.contact_id FROM identities i"))
    with lc.seg_pool.connection() as conn:
        store.merge_contact(conn, "acme", ids["wmOld"], ids["wmNew"], at=T0 + days(31),
                            event_id="merge-test", cause="test")  # fmt: skip
    (row,) = lc.rows("SELECT first_channel, first_channel_at, latest_channel, latest_channel_at "
                     "FROM contacts")  # fmt: skip
    assert row == ("expo", T0, "ad", T0 + days(30))


@pytest.mark.parametrize(
    ("old", "new", "merged"),
    [
        # (first, latest) of the source and the target at the same times: the smaller name.
        (("expo", "expo"), ("ad", "ad"), ("ad", "ad")),
        (("ad", "ad"), ("expo", "expo"), ("ad", "ad")),
    ],
)
def test_a_merge_breaks_ties_by_the_smaller_channel(lc, old, new, merged):
    lc.apply([tp("add-a", "wecom.contact.added", minutes(0), external_userid="wmA",
                 staff_userid="zhangwei", attributes={"state": f"{old[0]}.abcdefghij"}),
              tp("add-b", "wecom.contact.added", minutes(0), external_userid="wmB",
                 staff_userid="lina", attributes={"state": f"{new[0]}.abcdefghij"})])  # fmt: skip
    ids = dict(lc.rows("SELECT i.value, i.contact_id FROM identities i"))
    with lc.seg_pool.connection() as conn:
        store.merge_contact(conn, "acme", ids["wmA"], ids["wmB"], at=T0 + days(1),
                            event_id="merge-test", cause="test")  # fmt: skip
    (row,) = lc.rows("SELECT first_channel, latest_channel FROM contacts")
    assert row == merged


def test_an_accounts_lost_flag_stays_when_the_exit_leaves_the_event_window(lc):
    for step in B2B_STEPS:
        lc.apply(step)
    lc.apply([tp("exit-li", "wecom.contact.deleted", days(11), external_userid="wmLi",
                 staff_userid="zhangwei")])  # fmt: skip

    def flags():
        (row,) = lc.rows("SELECT risk_flags FROM accounts")
        return [f["flag"] for f in row[0]]

    assert "lost" in flags()
    # Another member's event past HISTORY_DAYS: the account is derived again without Li's exit
    # in its window; Li's stored loss carries it.
    lc.apply([tp("dl-late", "biz.content.downloaded", days(12 + HISTORY_DAYS), **WANG,
                 attributes={"title": "年报", "format": "whitepaper"})])  # fmt: skip
    assert "lost" in flags()


def test_the_contact_view_says_whether_and_why_the_customer_is_lost(lc):
    lc.apply([tp("add-li", "wecom.contact.added", minutes(0), **LI, external_userid="wmLi",
                 staff_userid="zhangwei", attributes={"state": EXPO})])  # fmt: skip
    (li,) = lc.rows("SELECT contact_id FROM identities WHERE value = 'wmLi'")

    def view() -> dict:
        with lc.seg_pool.connection() as conn:
            return ContactSchema().dump(contact_view(conn, "acme", li[0]))

    assert view()["lost"] is None
    lc.apply([tp("del-li", "wecom.contact.follow_user_deleted", minutes(30), **LI,
                 external_userid="wmLi", staff_userid="zhangwei")])  # fmt: skip
    lost = view()["lost"]
    assert (lost["reason"], lost["staff_userid"]) == ("customer_deleted_staff", "zhangwei")
    assert datetime.fromisoformat(lost["at"]) == T0 + minutes(30)
    lc.apply([tp("readd-li", "wecom.contact.added", minutes(60), **LI, external_userid="wmLi",
                 staff_userid="zhangwei")])  # fmt: skip
    assert view()["lost"] is None
