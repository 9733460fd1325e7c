"""A campaign's holdout (services/outreach/holdout.py): a stable, per-campaign, close-to-nominal
share of contacts."""

from __future__ import annotations

import pytest

from services.outreach.holdout import draw, held_out

CONTACTS = [f"ct_{i:05d}" for i in range(20000)]


@pytest.mark.parametrize("percent", [1, 10, 25, 50])
def test_the_share_held_out_is_close_to_the_percentage(percent):
    n = sum(held_out("acme", "cmp_1", c, percent) for c in CONTACTS)
    # Binomial(20000, p): four standard deviations either side.
    p = percent / 100
    sd = (len(CONTACTS) * p * (1 - p)) ** 0.5
    assert abs(n - len(CONTACTS) * p) < 4 * sd


def test_the_same_contact_is_held_out_of_the_same_campaign_every_time():
    first = [c for c in CONTACTS if held_out("acme", "cmp_1", c, 10)]
    again = [c for c in CONTACTS if held_out("acme", "cmp_1", c, 10)]
    assert first == again


# Known values, pinned: the draw is a pure function of (tenant, campaign, contact), whatever the
# process (no per-process hash seed), and a change of its key, separator or encoding would move
# every running campaign's holdout, so it must fail here.
KNOWN_DRAWS = [
    (("acme", "cmp_1", "ct_00000"), 0.6724426053273438),
    (("acme", "cmp_1", "ct_00001"), 0.7612590374997454),
    (("bloom", "cmp_1", "ct_00000"), 0.7996798768074306),
    (("acme", "cmp_2", "ct_00000"), 0.29062683973893755),
]


@pytest.mark.parametrize(("ids", "expected"), KNOWN_DRAWS)
def test_the_draw_of_known_ids_is_pinned(ids, expected):
    assert draw(*ids) == expected


def test_campaigns_and_tenants_draw_independently():
    one = {c for c in CONTACTS if held_out("acme", "cmp_1", c, 10)}
    other = {c for c in CONTACTS if held_out("acme", "cmp_2", c, 10)}
    elsewhere = {c for c in CONTACTS if held_out("bloom", "cmp_1", c, 10)}
    # Independent 10 % draws overlap on about 1 %, not 10 %.
    assert len(one & other) < len(one) * 0.2
    assert len(one & elsewhere) < len(one) * 0.2


def test_raising_the_share_only_adds_contacts_and_zero_holds_no_one():
    ten = {c for c in CONTACTS if held_out("acme", "cmp_1", c, 10)}
    twenty = {c for c in CONTACTS if held_out("acme", "cmp_1", c, 20)}
    assert ten < twenty
    assert not any(held_out("acme", "cmp_1", c, 0) for c in CONTACTS)
    assert not any(held_out("acme", "cmp_1", c, None) for c in CONTACTS)
