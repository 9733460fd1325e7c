"""One scope's figures of the effect report (services/outreach/effect_report.py ``_effect``):
the verdict of an item none of whose contacts was held out, and replies only where a reply can
come back."""

from __future__ import annotations

import pytest

from services.outreach.effect_report import ITEM_WITHOUT_HOLDOUT, _effect


def _row(treated: bool, contacts: int, advanced: int) -> dict:
    return {"whole": False, "key": "it", "treated": treated, "contacts": contacts,
            "delivered": contacts if treated else 0, "failed": 0, "confirmed": 0, "clicked": 0,
            "replied": 1, "advanced": advanced, "first_run_at": None, "last_run_at": None}  # fmt: skip


VERDICTS = [
    # (rows, an item's scope?, the campaign's holdout share, verdict)
    ([_row(True, 100, 10)], True, 10, ITEM_WITHOUT_HOLDOUT),  # a later item of a series
    ([_row(True, 100, 10)], False, 10, "no_holdout"),  # the campaign's scope: nothing held out
    ([_row(True, 100, 10)], True, 0, "no_holdout"),  # no holdout share at all
    ([_row(True, 100, 10), _row(False, 50, 5)], True, 10, "no_difference"),
]


@pytest.mark.parametrize(("rows", "item", "share", "verdict"), VERDICTS)
def test_an_item_without_held_out_contacts_has_a_verdict_of_its_own(rows, item, share, verdict):
    assert _effect(rows, "oa_template", item, share)["uplift"]["verdict"] == verdict


@pytest.mark.parametrize(("channel", "replied"), [
    ("oa_template", 1), ("oa_mass", 1), ("oa_custom", 1), ("wecom_single", None),
])  # fmt: skip
def test_replies_are_none_for_channels_that_bring_none_back(channel, replied):
    scope = _effect([_row(True, 40, 1), _row(False, 40, 1)], channel, False, 10)
    assert scope["treated"]["replied"] == scope["holdout"]["replied"] == replied
