"""Source channels (docs/domain.md "Channel codes"): contacts and accounts keep their first and
latest channel from channel code states; the contact and account API show them and the funnel
cuts by the first one (``source_channel``, validated)."""

from __future__ import annotations

from services.segment.api_accounts import AccountSchema, account_view
from services.segment.api_contacts import ContactSchema, contact_view
from tests.integration.api import test_segment_lifecycle
from tests.integration.api.test_segment_lifecycle import (
    ALL_TIME,
    B2B_STEPS,
    LI,
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
