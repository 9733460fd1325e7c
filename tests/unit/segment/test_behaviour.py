from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.behaviour import (
    SEGMENTS,
    BehaviourThresholds,
    Features,
    features,
    is_discounted,
    segments,
    topic_of,
)
from services.segment.facts import EventFact
from services.segment.scoring import RuleConfigError

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def ev(event_type: str, days_ago: float, **attributes: object) -> EventFact:
    return EventFact(event_type, ago(days_ago), dict(attributes))


def order(days_ago: float, amount: float = 100.0, **attributes: object) -> EventFact:
    return ev("biz.order.paid", days_ago, amount=amount, **attributes)


def reads(days: list[float], topic: str = "skincare") -> list[EventFact]:
    return [ev("link.clicked", d, topic=topic) for d in days]


# (name, events, created days ago, expected feature values, expected segments)
CASES = [
    (
        "fresh follower",
        [ev("oa.subscribe", 2)],
        2,
        {"recency_days": None, "orders_total": 0, "engagement_30d": 1, "days_since_first": 2},
        ["prospect"],
    ),
    ("no history at all", [], None, {"days_since_first": 0, "idle_days": None}, ["prospect"]),
    (
        "new customer after some reading",
        [ev("oa.subscribe", 20), *reads([18, 15, 12]), order(10, 299)],
        20,
        {
            "recency_days": 10,
            "frequency_90d": 1,
            "monetary_365d": 299,
            "first_order_days": 10,
            "touches_before_first_order": 4,
            "research_touches": 3,
            "days_to_first_order": 10,
        },
        ["new"],
    ),
    (
        "impulse buyer",
        [ev("oa.scan", 5), order(5 - 2 / 24, 59)],
        5,
        {"touches_before_first_order": 1, "days_to_first_order": pytest.approx(2 / 24)},
        ["new", "impulse"],
    ),
    (
        "bought on first sight",
        [order(3, 59)],
        None,
        {"touches_before_first_order": 0, "days_to_first_order": 0, "days_since_first": 3},
        ["new", "impulse"],
    ),
    (
        "researcher who bought",
        [
            *reads([60, 55, 50], "serum"),
            ev("biz.content.downloaded", 45, content_id="guide-1"),
            ev("oa.view", 44, url="https://shop.example.com/serum/?utm=x"),
            order(40, 500),
        ],
        70,
        {"research_touches": 5, "content_interests": ("serum", "guide-1")},
        ["researcher"],
    ),
    (
        "researcher still reading",
        [*reads([30, 20, 10], "a"), *reads([9, 8, 7], "b"), ev("oa.click", 1, topic="c")],
        30,
        {"research_touches": 7, "content_interests": ("b", "a", "c"), "clicks_30d": 7},
        ["prospect", "researcher"],
    ),
    (
        "loyal",
        [order(200), order(120), order(60), order(25), order(5, 80)],
        300,
        {"frequency_90d": 3, "orders_365d": 5, "recency_days": 5, "monetary_365d": 480},
        ["loyal"],
    ),
    (
        "occasional customer has no lifecycle segment",
        [order(200), order(45)],
        300,
        {"orders_total": 2, "recency_days": 45},
        [],
    ),
    (
        "several recent orders in the first month are still new",
        [ev("oa.subscribe", 40), order(25), order(15), order(5)],
        40,
        {"orders_total": 3, "first_order_days": 25, "days_to_first_order": 15},
        ["new"],
    ),
    (
        "discount chaser",
        [
            ev("oa.subscribe", 300),
            *reads([299, 298, 297]),
            order(200, coupon="SAVE10"),
            order(150, discount=True),
            order(100, discount="true"),
            order(50),
        ],
        300,
        {"discount_orders_ratio": 0.75},
        ["loyal", "discount_chaser"],
    ),
    (
        "one discounted order is not a habit",
        [ev("oa.subscribe", 300), *reads([299, 298, 297]), order(50, coupon_id="c1")],
        300,
        {"discount_orders_ratio": 1.0},
        [],
    ),
    (
        "skeptic: engages for months, never buys",
        [
            ev("oa.subscribe", 150),
            ev("wecom.chat.member_joined", 80),
            ev("oa.message", 60),
            ev("biz.webinar.registered", 40),
            ev("oa.message", 20),
            ev("oa.scan", 5),
        ],
        150,
        {"touches_90d": 5, "engagement_30d": 2, "questions_90d": 2, "research_touches": 0},
        ["prospect", "skeptic"],
    ),
    (
        "skeptic: asks many questions",
        [ev("oa.subscribe", 100), *[ev("oa.message", d, msg_type="text") for d in (30, 20, 10)]],
        100,
        {"questions_90d": 3, "touches_90d": 3},
        ["prospect", "skeptic"],
    ),
    (
        "too early to call a skeptic",
        [ev("oa.subscribe", 30), *[ev("oa.message", d) for d in (20, 10, 5)]],
        30,
        {"questions_90d": 3},
        ["prospect"],
    ),
    (
        "dissatisfied new customer",
        [ev("oa.subscribe", 40), *reads([38, 37, 36]), order(20), ev("biz.complaint.filed", 3)],
        40,
        {"complaints_90d": 1, "refunds_90d": 0},
        ["dissatisfied", "new"],
    ),
    (
        "refund makes dissatisfied",
        [order(300), order(200), order(70), ev("biz.order.refunded", 60)],
        400,
        {"refunds_90d": 1, "complaints_90d": 0},
        ["dissatisfied"],
    ),
    (
        "old complaint no longer counts",
        [order(300), order(200), order(70), ev("biz.complaint.filed", 120)],
        400,
        {"complaints_90d": 0},
        [],
    ),
    (
        "lapsed",
        [ev("oa.subscribe", 400), *reads([399, 398, 397]), order(300), order(250), order(200)],
        400,
        {"idle_days": 200, "recency_days": 300 - 100, "frequency_90d": 0, "monetary_365d": 300},
        ["lapsed"],
    ),
    (
        "a recent touch keeps a customer from lapsing",
        [ev("oa.subscribe", 400), *reads([399, 398, 397]), order(300), ev("link.clicked", 10)],
        400,
        {"idle_days": 10, "clicks_30d": 1},
        [],
    ),
    (
        "an enrichment fetch or a staff edit is no touch: still lapsed",
        [
            ev("oa.subscribe", 400),
            *reads([399, 398, 397]),
            order(300),
            order(250),
            order(200),
            ev("wecom.contact.enriched", 0),
            ev("wecom.contact.edited", 1),
            ev("biz.lead.created", 2),
            ev("oa.template_send_finished", 3),
            ev("wecom.chat.member_joined", 4, join_scene=0),
        ],
        400,
        {"idle_days": 200, "engagement_30d": 0, "touches_90d": 0},
        ["lapsed"],
    ),
    (
        "a complaint is the customer's own action: not lapsed, dissatisfied",
        [ev("oa.subscribe", 400), order(300), order(250), ev("biz.complaint.filed", 5)],
        400,
        {"idle_days": 5, "engagement_30d": 0},
        ["dissatisfied"],
    ),
    (
        "joining a group by its QR code is a touch",
        [ev("wecom.chat.member_joined", 4, join_scene=3)],
        10,
        {"engagement_30d": 1, "idle_days": 4},
        ["prospect"],
    ),
    (
        "future events count as now",
        [ev("oa.subscribe", 3), order(-1, 10)],
        3,
        {"recency_days": 0, "frequency_90d": 1},
        ["new"],
    ),
]


@pytest.mark.parametrize(
    ("events", "created", "expected", "names"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_features_and_segments(
    events: list[EventFact], created: float | None, expected: dict, names: list[str]
) -> None:
    f = features(events, NOW, None if created is None else ago(created))
    for key, value in expected.items():
        actual = getattr(f, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert actual == pytest.approx(value), key
        else:
            assert actual == value, key
    assert segments(f) == names
    assert features(list(reversed(events)), NOW, None if created is None else ago(created)) == f


def test_segment_order_and_compatibility() -> None:
    lifecycle = {"prospect", "lapsed", "new", "loyal"}
    for _, events, created, _, _ in CASES:
        f = features(events, NOW, None if created is None else ago(created))
        names = segments(f)
        assert names == [s for s in SEGMENTS if s in names]
        assert len(lifecycle & set(names)) <= 1
        assert not {"impulse", "researcher"} <= set(names)
        if "skeptic" in names:
            assert "prospect" in names


def test_content_interests_rank_by_count_then_recency() -> None:
    events = [
        *reads([50, 40], "old"),
        *reads([30, 5], "recent"),
        ev("link.clicked", 3, url="https://Example.com/a/b?x=1#f"),
        ev("biz.content.downloaded", 2, content_id=42),
        ev("oa.view", 1, topic="ignored"),  # views are not interest sources
        ev("link.clicked", 300, topic="stale"),  # outside the interest window
    ]
    f = features(events, NOW, None)
    assert f.content_interests == ("recent", "old", "42", "example.com/a/b")
    assert features(events, NOW, None, top_interests=1).content_interests == ("recent",)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, False),
        ({"discount": True}, True),
        ({"discount": "true"}, True),
        ({"discount": "false"}, False),
        ({"discount": False}, False),
        ({"discount": 0}, False),
        ({"coupon": "SAVE10"}, True),
        ({"coupon_code": ""}, False),
        ({"coupon_id": 17}, True),
    ],
)
def test_is_discounted(attributes: dict, expected: bool) -> None:
    assert is_discounted(attributes) is expected


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"topic": " Skincare ", "url": "https://x.com/y"}, "skincare"),
        ({"content_id": "wp-7"}, "wp-7"),
        ({"url": "https://shop.example.com/serum/?utm=1"}, "shop.example.com/serum"),
        ({"url": "/articles/5"}, "/articles/5"),
        ({"event_key": "MENU_1"}, None),
        ({}, None),
    ],
)
def test_topic_of(attributes: dict, expected: str | None) -> None:
    assert topic_of(attributes) == expected


def test_thresholds_change_segments() -> None:
    f = features([order(200), order(120), order(5)], NOW, ago(300))
    assert segments(f) == ["loyal"]
    assert segments(f, BehaviourThresholds.from_dict({"loyal_min_orders": 4})) == []
    assert segments(f, BehaviourThresholds(new_days=3, lapsed_days=4)) == ["lapsed"]


def test_features_is_a_plain_value() -> None:
    f = features([order(3)], NOW, None)
    assert isinstance(f, Features)
    with pytest.raises(AttributeError):
        f.orders_total = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"new_days": 0}, "new_days"),
        ({"loyal_min_orders": 1}, "loyal_min_orders"),
        ({"discount_min_ratio": 1.2}, "discount_min_ratio"),
        ({"impulse_max_touches": 5}, "impulse_max_touches"),  # would overlap researchers
        ({"lapsed_days": 20}, "lapsed_days"),  # must exceed new_days
        ({"skeptic_min_days": "long"}, "skeptic_min_days"),
        ({"loyalty": 3}, "loyalty"),
    ],
)
def test_thresholds_validate(data: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        BehaviourThresholds.from_dict(data)
    assert isinstance(info.value, RuleConfigError)


def test_thresholds_defaults() -> None:
    assert BehaviourThresholds.from_dict({}) == BehaviourThresholds()
