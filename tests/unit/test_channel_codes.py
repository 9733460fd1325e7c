"""Channel code rules (services/outreach/channel_codes.py): every name checked against what
exists, and what each kind of code must have (table-driven)."""

from __future__ import annotations

import pytest

from services.outreach.channel_codes import Known, shape_errors, unknowns

KNOWN = Known(staff=("zhangwei", "lina"), chats=("wr1", "wr2"), tags=("etA",),
              content=("cnt_1",))  # fmt: skip
CONTACT = {"kind": "contact", "channel": "expo", "staff": ["zhangwei"]}
GROUP = {"kind": "group", "channel": "event", "chat_ids": ["wr1"]}


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        (CONTACT, []),
        (GROUP, []),
        ({**CONTACT, "channel": "tv"}, ["channel"]),
        ({**CONTACT, "kind": "poster"}, ["kind"]),
        ({**CONTACT, "staff": ["zhangwei", "ghost"]}, ["staff[1]"]),
        ({**GROUP, "chat_ids": ["wr9"]}, ["chat_ids[0]"]),
        ({**CONTACT, "tags": ["etA", "etB"]}, ["tags[1]"]),
        ({**CONTACT, "welcome_content": ["cnt_2"]}, ["welcome_content[0]"]),
    ],
)
def test_unknown_names(code, fields):
    assert [u.field for u in unknowns(code, KNOWN)] == fields


def test_an_unknown_channel_lists_the_valid_ones():
    (found,) = unknowns({**CONTACT, "channel": "expos"}, KNOWN)
    assert "Valid: expo, article" in found.message()
    assert "Did you mean 'expo'?" in found.message()


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        (CONTACT, []),
        (GROUP, []),
        ({**CONTACT, "staff": []}, ["staff"]),
        ({**CONTACT, "staff": [f"u{i}" for i in range(101)]}, ["staff"]),
        ({**CONTACT, "staff": ["a", "a"]}, ["staff"]),
        ({**CONTACT, "chat_ids": ["wr1"]}, ["chat_ids"]),
        ({**GROUP, "chat_ids": []}, ["chat_ids"]),
        ({**GROUP, "chat_ids": ["a", "b", "c", "d", "e", "f"]}, ["chat_ids"]),
        ({**GROUP, "chat_ids": ["a", "a"]}, ["chat_ids"]),
        ({**GROUP, "staff": ["zhangwei"]}, ["staff"]),
        ({**GROUP, "daily_cap": 3}, ["daily_cap"]),
    ],
)
def test_what_each_kind_must_have(code, fields):
    assert sorted(shape_errors(code)) == fields
