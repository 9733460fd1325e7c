from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.facts import AccountFacts, EventFact
from services.segment.risk import SEVERITY, RiskThresholds, risk_flags
from services.segment.scoring import RuleConfigError

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def ev(event_type: str, days_ago: float, **attributes: object) -> EventFact:
    return EventFact(event_type, ago(days_ago), dict(attributes))


def account(created_days_ago: float | None = 400, events=(), **attributes) -> AccountFacts:
    return AccountFacts(
        account_id="a1",
        name="苏州精工机械",
        created_at=None if created_days_ago is None else ago(created_days_ago),
        events=tuple(events),
        attributes=attributes,
    )


def steady(days: range, every: int = 3, event_type: str = "link.clicked") -> list[EventFact]:
    """One interaction every ``every`` days over ``days`` (days ago)."""
    return [ev(event_type, d) for d in days if d % every == 0]


ACTIVE = steady(range(1, 120), every=3)  # ~10 interactions per 30 days, up to yesterday

# (name, account, member events, expected flags, substrings expected in the reasons)
CASES = [
    ("healthy", account(), ACTIVE, [], []),
    ("no facts at all", account(None), [], [], []),
    (
        "new account",
        account(12),
        [ev("wecom.contact.added", 12), ev("oa.click", 2)],
        ["new"],
        ["created 12 days ago", "30 days"],
    ),
    (
        "new, first seen without created_at",
        account(None),
        [ev("oa.subscribe", 5)],
        ["new"],
        ["first seen 5 days ago"],
    ),
    (
        "new and quiet is not yet inactive",
        account(20),
        [],
        ["new"],
        ["20 days"],
    ),
    (
        "inactive",
        account(),
        [ev("link.clicked", 52), ev("oa.click", 80)],
        ["inactive"],
        ["52 days", "45"],
    ),
    (
        "never interacted since creation",
        account(60),
        [],
        ["inactive"],
        ["60 days"],
    ),
    (
        "an order is activity",
        account(events=[ev("biz.order.paid", 10, amount=1000)]),
        [],
        [],
        [],
    ),
    (
        "sharp drop",
        account(),
        [*steady(range(31, 91), every=2), ev("oa.click", 3)],
        ["churn_risk"],
        ["fell to 1", "14.5", "-93%"],
    ),
    (
        "small baseline is not judged",
        account(),
        [ev("oa.click", 40), ev("oa.click", 50), ev("oa.click", 60), ev("oa.click", 5)],
        [],
        [],
    ),
    (
        "engaged member unfollowed",
        account(),
        [
            *ACTIVE,
            ev("oa.unsubscribe", 4, contact_id="c1"),
            ev("link.clicked", 20, contact_id="c1"),
        ],
        ["churn_risk"],
        ["1 engaged member left", "unfollowed the OA"],
    ),
    (
        "a lurker leaving is no signal",
        account(),
        [*ACTIVE, ev("oa.unsubscribe", 4, contact_id="c9")],
        [],
        [],
    ),
    (
        "member deleted the staff contact, unknown member counts",
        account(),
        [*ACTIVE, ev("wecom.contact.follow_user_deleted", 2), ev("oa.unsubscribe", 40)],
        ["churn_risk"],
        ["1 engaged member left", "deleted their staff contact"],
    ),
    (
        "complaint",
        account(events=[ev("biz.complaint.filed", 6)]),
        ACTIVE,
        ["churn_risk"],
        ["1 complaint in the last 30 days"],
    ),
    (
        "overdue invoices",
        account(
            events=[
                ev("biz.invoice.overdue", 45, invoice_id="INV-1", amount=50000),
                ev("biz.invoice.overdue", 10, invoice_id="INV-2", amount="36000", currency="cny"),
                ev("biz.invoice.overdue", 20, invoice_id="INV-3", amount=9000),
                ev("biz.payment.received", 5, invoice_id="INV-3", amount=9000),
            ]
        ),
        ACTIVE,
        ["payment_risk"],
        ["2 invoices overdue, 86,000 CNY, oldest 45 days"],
    ),
    (
        "a payment before the overdue notice does not close it",
        account(
            events=[
                ev("biz.payment.received", 30, invoice_id="INV-7"),
                ev("biz.invoice.overdue", 8, invoice_id="INV-7", amount=1200.5),
            ]
        ),
        ACTIVE,
        ["payment_risk"],
        ["1 invoice overdue, 1,200.50 CNY, oldest 8 days"],
    ),
    (
        "all overdue invoices paid",
        account(
            events=[
                ev("biz.invoice.overdue", 45, invoice_id="INV-1", amount=50000),
                ev("biz.payment.received", 40, invoice_id="INV-1"),
            ]
        ),
        ACTIVE,
        [],
        [],
    ),
    (
        "overdue amount falls back to the issued invoice; currencies kept apart",
        account(
            events=[
                ev("biz.invoice.issued", 90, invoice_id="A", amount=2000, currency="USD"),
                ev("biz.invoice.overdue", 30, invoice_id="A"),
                ev("biz.invoice.overdue", 3, invoice_id="B", amount=500),
            ]
        ),
        ACTIVE,
        ["payment_risk"],
        ["2 invoices overdue, 500 CNY + 2,000 USD, oldest 30 days"],
    ),
    (
        "slow payment",
        account(
            events=[
                ev("biz.invoice.issued", 200, invoice_id="1"),
                ev("biz.payment.received", 120, invoice_id="1"),
                ev("biz.invoice.issued", 150, invoice_id="2"),
                ev("biz.payment.received", 80, invoice_id="2"),
            ]
        ),
        ACTIVE,
        ["payment_risk"],
        ["slow payment: 2 invoices paid 75 days after issue on average"],
    ),
    ("low credit", account(credit_rating="C"), ACTIVE, ["payment_risk"], ["low credit rating: C"]),
    (
        "growing",
        account(
            events=[
                ev("biz.order.paid", 150, amount=60000),
                ev("biz.order.paid", 120, amount=40000),
                ev("biz.order.paid", 60, amount=100000),
                ev("biz.order.paid", 20, amount=80000),
            ]
        ),
        ACTIVE,
        ["growing"],
        ["180,000 CNY", "100,000 CNY", "x1.80"],
    ),
    (
        "not growing enough",
        account(
            events=[
                ev("biz.order.paid", 150, amount=100000),
                ev("biz.order.paid", 20, amount=140000),
            ]
        ),
        ACTIVE,
        [],
        [],
    ),
    (
        "first orders are not growth",
        account(events=[ev("biz.order.paid", 20, amount=140000)]),
        ACTIVE,
        [],
        [],
    ),
    (
        "new account already overdue",
        account(
            20,
            events=[
                ev("biz.order.paid", 18, amount=30000),
                ev("biz.invoice.overdue", 3, invoice_id="X", amount=30000),
            ],
        ),
        [ev("oa.click", 1)],
        ["payment_risk", "new"],
        ["1 invoice overdue, 30,000 CNY, oldest 3 days", "created 20 days ago"],
    ),
    (
        "everything at once, sorted by severity",
        account(
            events=[
                ev("biz.order.paid", 170, amount=1000),
                ev("biz.order.paid", 50, amount=5000),
                ev("biz.invoice.overdue", 60, invoice_id="Z", amount=5000),
            ]
        ),
        steady(range(50, 90), every=4),  # ten clicks, none in the last 49 days
        ["payment_risk", "churn_risk", "inactive", "growing"],
        ["oldest 60 days", "fell to 0", "no interactions or orders for 50 days", "x5.00"],
    ),
    (
        "future events count as now",
        account(),
        [ev("oa.click", -2)],
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("facts", "members", "expected", "phrases"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_risk_flags(
    facts: AccountFacts, members: list[EventFact], expected: list[str], phrases: list[str]
) -> None:
    flags = risk_flags(facts, members, NOW)
    assert [f.flag for f in flags] == expected
    reasons = " | ".join(f.reason for f in flags)
    for phrase in phrases:
        assert phrase in reasons, (phrase, reasons)
    order = [SEVERITY.index(f.flag) for f in flags]
    assert order == sorted(order)


def test_reason_numbers_and_since() -> None:
    facts = account(
        events=[
            ev("biz.invoice.overdue", 45, invoice_id="INV-1", amount=50000),
            ev("biz.invoice.overdue", 10, invoice_id="INV-2", amount=36000),
        ]
    )
    (flag,) = risk_flags(facts, ACTIVE, NOW)
    assert flag.flag == "payment_risk"
    assert flag.reason == "2 invoices overdue, 86,000 CNY, oldest 45 days"
    assert flag.since == ago(45)
    assert flag.details["overdue_count"] == 2
    assert flag.details["overdue_amount"] == 86000


# Only the customer's own actions are activity (docs/domain.md "Activity"): with the last click 50
# days ago, a recent event of each of these kinds leaves the account inactive, or not.
@pytest.mark.parametrize(
    ("recent", "inactive"),
    [
        pytest.param(ev("wecom.contact.enriched", 0), True, id="enrichment fetch"),
        pytest.param(ev("wecom.contact.edited", 1), True, id="staff edit"),
        pytest.param(ev("oa.template_send_finished", 1), True, id="template send result"),
        pytest.param(ev("biz.lead.created", 1), True, id="CRM lead"),
        pytest.param(ev("biz.quote.sent", 1), True, id="quote sent"),
        pytest.param(ev("biz.invoice.issued", 1), True, id="invoice issued"),
        pytest.param(ev("wecom.chat.member_joined", 1, join_scene=0), True, id="pulled into group"),
        pytest.param(ev("wecom.chat.member_left", 1, quit_scene=1), True, id="removed from group"),
        pytest.param(ev("wecom.chat.member_joined", 1, join_scene=3), False, id="joined by QR"),
        pytest.param(ev("wecom.chat.member_left", 1, quit_scene=0), False, id="left the group"),
        pytest.param(ev("oa.message", 1), False, id="message"),
        pytest.param(ev("oa.location", 1), False, id="location"),
        pytest.param(ev("biz.complaint.filed", 1), False, id="complaint"),
        pytest.param(ev("wecom.contact.follow_user_deleted", 1), False, id="deleted the member"),
        pytest.param(ev("biz.payment.received", 1), False, id="paid an invoice"),
    ],
)
def test_inactive_counts_only_the_customers_own_actions(recent: EventFact, inactive: bool) -> None:
    flags = risk_flags(account(), [ev("oa.click", 50), recent], NOW)
    assert ("inactive" in [f.flag for f in flags]) is inactive
    if inactive:
        assert next(f for f in flags if f.flag == "inactive").since == ago(50)


def test_churn_counts_only_the_customers_own_interactions() -> None:
    # Ten clicks a month before, none in the last 30 days: enrichment fetches and staff edits in
    # the window do not hide the drop.
    members = [*steady(range(31, 90), every=6), ev("wecom.contact.enriched", 2)]
    members += [ev("biz.lead.created", 3), ev("wecom.chat.member_joined", 4, join_scene=0)]
    (churn,) = [f for f in risk_flags(account(), members, NOW) if f.flag == "churn_risk"]
    assert churn.details["recent_interactions"] == 0


def test_since_of_other_flags() -> None:
    (new,) = risk_flags(account(12), [ev("oa.click", 1)], NOW)
    assert new.since == ago(12)
    (inactive,) = risk_flags(account(), [ev("oa.click", 50)], NOW)
    assert inactive.since == ago(50)


def test_thresholds_change_the_outcome() -> None:
    overdue = account(events=[ev("biz.invoice.overdue", 5, invoice_id="1", amount=800)])
    assert [f.flag for f in risk_flags(overdue, ACTIVE, NOW)] == ["payment_risk"]
    lenient = RiskThresholds(overdue_min_amount=1000)
    assert risk_flags(overdue, ACTIVE, NOW, lenient) == []
    grace = RiskThresholds.from_dict({"overdue_min_days": 7})
    assert risk_flags(overdue, ACTIVE, NOW, grace) == []

    quiet = account(events=[], created_days_ago=400)
    members = [ev("oa.click", 40)]
    assert [f.flag for f in risk_flags(quiet, members, NOW)] == []
    strict = RiskThresholds.from_dict({"inactive_days": 30})
    assert [f.flag for f in risk_flags(quiet, members, NOW, strict)] == ["inactive"]


def test_deterministic() -> None:
    for case in CASES:
        assert risk_flags(case[1], case[2], NOW) == risk_flags(case[1], case[2], NOW)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"new_days": -1}, "new_days"),
        ({"inactive_days": 0}, "inactive_days"),
        ({"churn_drop_ratio": 1.5}, "churn_drop_ratio"),
        ({"growing_ratio": 1.0}, "growing_ratio"),
        ({"overdue_min_count": 0}, "overdue_min_count"),
        ({"overdue_min_count": 1.5}, "overdue_min_count"),
        ({"low_credit_ratings": "C"}, "low_credit_ratings"),
        ({"inactve_days": 10}, "inactve_days"),
    ],
)
def test_thresholds_from_dict_validate(data: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        RiskThresholds.from_dict(data)
    assert isinstance(info.value, RuleConfigError)


def test_thresholds_from_dict_defaults() -> None:
    assert RiskThresholds.from_dict({}) == RiskThresholds()
    loaded = RiskThresholds.from_dict({"low_credit_ratings": ["B-", "C"], "growing_ratio": 2})
    assert loaded.low_credit_ratings == ("b-", "c")
    assert loaded.growing_ratio == 2.0
    with pytest.raises(ValueError, match="growing_ratio"):
        RiskThresholds(growing_ratio=0.5)
