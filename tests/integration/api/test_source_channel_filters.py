"""GET /contacts and GET /accounts cut by FIRST source channel (docs/domain.md "Channel codes"):
``source_channel`` combines with the stage filter, and an unknown channel is a 400 listing
SOURCE_CHANNELS."""

from __future__ import annotations

from shared.source_channels import SOURCE_CHANNELS
from tests.integration.api.test_segment_people import _error, _ok, people  # noqa: F401


def test_contacts_and_accounts_by_first_source_channel(people):  # noqa: F811
    li = people.contact("李工")
    (li_row,) = people.seg("SELECT stage, account_id FROM contacts WHERE contact_id = %s", (li,))
    people.seg(
        "UPDATE contacts SET first_channel = 'expo', first_channel_at = now() "
        "WHERE contact_id = %s RETURNING 1",
        (li,),
    )
    people.seg(
        "UPDATE accounts SET first_channel = 'expo', first_channel_at = now() "
        "WHERE account_id = %s RETURNING 1",
        (li_row["account_id"],),
    )
    expo = _ok(people.call("GET", "/contacts", "viewer", query_string={"source_channel": "expo"}))
    assert [c["contact_id"] for c in expo["items"]] == [li]
    staged = _ok(people.call("GET", "/contacts", "viewer",
                             query_string={"source_channel": "expo", "stage": li_row["stage"]}))  # fmt: skip
    assert [c["contact_id"] for c in staged["items"]] == [li]
    ad = _ok(people.call("GET", "/contacts", "viewer", query_string={"source_channel": "ad"}))
    assert ad["items"] == []
    accounts = _ok(people.call("GET", "/accounts", "viewer",
                               query_string={"source_channel": "expo"}))  # fmt: skip
    assert [a["account_id"] for a in accounts["items"]] == [li_row["account_id"]]
    everyone = _ok(people.call("GET", "/accounts", "viewer"))
    assert len(everyone["items"]) > 1
    for path in ("/contacts", "/accounts"):
        bad = people.call("GET", path, "viewer", query_string={"source_channel": "tv"})
        error = _error(bad, 400, "invalid_request")
        assert all(c in str(error["details"]) for c in SOURCE_CHANNELS), error
