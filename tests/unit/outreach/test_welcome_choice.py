"""Which welcome a new contact gets (services/outreach/welcome_choice.py), table-driven."""

from __future__ import annotations

import pytest

from services.outreach.policies import Guard, Item, Policy, Recipient
from services.outreach.welcome import decode, relevant
from services.outreach.welcome_choice import choose

GENERAL = Item("general", promotional=False)
GENERAL_PROMO = Item("general-promo", promotional=True)
FOR_INTEREST = Item("for-interest", promotional=False, stages=frozenset({"interest"}))
FOR_TECH = Item("for-tech", promotional=False, roles=frozenset({"technical"}))
PROMO_COMPARISON = Item("promo-comparison", promotional=True, stages=frozenset({"comparison"}))
POLICY = Policy("wecom_welcome", {}, {}, allow_b2b_promotion=True,
                guard=Guard(frozenset({"comparison", "examination"})))  # fmt: skip


def contact(mode="b2b", stage=None, role=None, account_stage=None) -> Recipient:
    return Recipient("contact", "c1", "wm1", mode=mode, stage=stage, role=role,
                     account_stage=account_stage)  # fmt: skip


@pytest.mark.parametrize(
    ("items", "r", "known", "expected"),
    [
        # A targeted item wins over the code's general ones, whatever the order.
        ([GENERAL, FOR_INTEREST], contact(stage="interest"), True, ("for-interest", None)),
        ([GENERAL, FOR_TECH], contact(stage="interest", role="technical"), True,
         ("for-tech", None)),
        # Nothing targets it: the first general item.
        ([GENERAL, FOR_INTEREST], contact(stage="attention"), True, ("general", None)),
        # A B2B contact (or its account) evaluating never gets a promotion.
        ([PROMO_COMPARISON, GENERAL], contact(stage="comparison"), True, ("general", None)),
        ([GENERAL_PROMO, GENERAL], contact(stage="interest", account_stage="examination"), True,
         ("general", None)),
        ([PROMO_COMPARISON], contact(stage="comparison"), True, (None, "no_discount_comparing")),
        # B2C: the guard is a B2B rule.
        ([PROMO_COMPARISON, GENERAL], contact(mode="b2c", stage="comparison"), True,
         ("promo-comparison", None)),
        # Unknown to outreach: general items only, and no promotion in a B2B tenant.
        ([FOR_INTEREST, GENERAL], contact(), False, ("general", None)),
        ([GENERAL_PROMO], contact(), False, (None, "no_discount_unknown_contact")),
        ([GENERAL_PROMO], contact(mode="b2c"), False, ("general-promo", None)),
        # Nothing to choose from.
        ([], contact(), False, (None, "no_welcome_content")),
        ([FOR_INTEREST], contact(stage="attention"), True, (None, "no_fitting_content")),
    ],
)  # fmt: skip
def test_choose(items, r, known, expected):
    choice = choose(items, r, POLICY, known=known)
    assert (choice.content_id, choice.reason) == expected


def test_an_unflagged_model_blocks_every_b2b_promotion():
    policy = Policy(
        "wecom_welcome", {}, {}, allow_b2b_promotion=True, guard=Guard(every_stage=True)
    )
    choice = choose([GENERAL_PROMO], contact(stage="interest"), policy)
    assert (choice.content_id, choice.reason) == (None, "no_discount_unflagged_model")


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (b'{"type": "wecom.contact.added", "attributes": {"welcome_code": "abc"}}', True),
        (b'{"type": "wecom.contact.half_added", "attributes": {"welcome_code": "a"}}', True),
        (b'{"type": "wecom.contact.edited", "attributes": {"welcome_code": "abc"}}', False),
        (b'{"type": "link.clicked", "attributes": {}}', False),
    ],
)
def test_only_adds_are_parsed(value, wanted):
    assert relevant(value) is wanted
    if not wanted:
        from shared.kafka.consumer import Message

        assert decode(Message("t", 0, 0, None, value)) is None


def test_the_consumer_reads_the_signal_ingest_writes_never_the_touchpoint():
    """Ingest's signal of an add (shared/signals.py) carries what the welcome needs; an add with
    a state but no code is a signal too (it counts for the code's daily cap); a touchpoint or a
    malformed signal is a poison message for the dead letters."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from shared.envelope import Identity, Touchpoint
    from shared.kafka.consumer import Message, PoisonMessage
    from shared.signals import signal_value

    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    tp = Touchpoint(event_id="0" * 32, tenant_id="acme", source="wecom",
                    type="wecom.contact.added", occurred_at=at, received_at=at,
                    identity=Identity(external_userid="wmA", staff_userid="zhangwei"),
                    attributes={"change_type": "add_external_contact", "state": "expo.x",
                                "welcome_code": "CODE"})  # fmt: skip
    decoded = decode(Message("t", 0, 0, None, signal_value(tp)))
    assert decoded is not None and decoded.welcome_code == "CODE"
    assert (decoded.state, decoded.staff_userid, decoded.external_userid) == (
        "expo.x", "zhangwei", "wmA")  # fmt: skip
    assert decoded.occurred_at == at
    without = replace(tp, attributes={"state": "expo.x"})
    counted = decode(Message("t", 0, 0, None, signal_value(without)))
    assert counted is not None and counted.welcome_code is None
    half = replace(tp, type="wecom.contact.half_added", event_id="1" * 32)  # an add too
    half_add = decode(Message("t", 0, 0, None, signal_value(half)))
    assert half_add is not None and (half_add.welcome_code, half_add.state) == ("CODE", "expo.x")
    nothing = replace(tp, attributes={"change_type": "add_external_contact"})
    assert signal_value(nothing) is None  # ingest writes no signal for it
    for poison in (tp.to_json(), b'{"type": "wecom.contact.added"', "添加".encode("gbk")
                   + b'"wecom.contact.added"'):  # fmt: skip
        with pytest.raises(PoisonMessage):
            decode(Message("t", 0, 0, None, poison))
