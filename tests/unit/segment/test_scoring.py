from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.segment.facts import EventFact
from services.segment.scoring import (
    DEFAULT_POINTS_BY_LAYER,
    DEFAULT_POINTS_BY_TYPE,
    RuleConfigError,
    ScoringConfig,
    account_score,
    advance,
    decayed,
    event_points,
    score,
)
from shared.envelope import CUSTOMER_ACTIONS, EVENT_TYPES
from shared.errors import ConfigError

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def ev(event_type: str, days_ago: float, **attributes: object) -> EventFact:
    return EventFact(event_type, NOW - timedelta(days=days_ago), dict(attributes))


def event_ids(value: object) -> str | None:
    """Test ids for the tables: an event as type@age[/content layer], a list of them joined."""
    if isinstance(value, EventFact):
        age = (NOW - value.occurred_at) / timedelta(days=1)
        layer = value.attributes.get("content_layer")
        return f"{value.type}@{age:g}d" + (f"/{layer}" if layer else "")
    if isinstance(value, list):
        return ", ".join(map(event_ids, value)) or "no events"
    return None


@pytest.mark.parametrize(
    ("points", "age", "half_life", "expected"),
    [
        (40.0, 0.0, 30.0, 40.0),
        (40.0, 30.0, 30.0, 20.0),
        (40.0, 60.0, 30.0, 10.0),
        (40.0, 15.0, 15.0, 20.0),
        (-20.0, 14.0, 7.0, -5.0),
        (10.0, -5.0, 30.0, 10.0),  # the future counts as age 0
        (0.0, 100.0, 30.0, 0.0),
    ],
)
def test_decay_by_half_lives(points: float, age: float, half_life: float, expected: float) -> None:
    assert decayed(points, age, half_life) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("half_life", [0.0, -1.0])
def test_decay_needs_a_positive_half_life(half_life: float) -> None:
    with pytest.raises(ValueError):
        decayed(1.0, 1.0, half_life)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev("oa.subscribe", 0), 5.0),
        (ev("oa.click", 0), 2.0),
        (ev("link.clicked", 0), 3.0),
        (ev("biz.content.downloaded", 0), 8.0),
        (ev("biz.webinar.attended", 0), 15.0),
        (ev("biz.demo.requested", 0), 25.0),
        (ev("biz.trial.started", 0), 30.0),
        (ev("biz.order.paid", 0, amount=100), 40.0),
        (ev("oa.unsubscribe", 0), -20.0),
        (ev("wecom.contact.follow_user_deleted", 0), -30.0),
        (ev("biz.complaint.filed", 0), -10.0),
        (ev("oa.location", 0), 0.0),  # not an interest signal
        # content layers add to non-negative events
        (ev("link.clicked", 0, content_layer="authority"), 4.0),
        (ev("link.clicked", 0, content_layer="acquisition"), 6.0),
        (ev("biz.content.downloaded", 0, content_layer="closing"), 14.0),
        (ev("link.clicked", 0, content_layer="after_sale"), 5.0),
        (ev("oa.view", 0, content_layer="closing"), 7.0),
        (ev("link.clicked", 0, content_layer="nonsense"), 3.0),
        (ev("oa.unsubscribe", 0, content_layer="closing"), -20.0),  # no bonus on a negative
    ],
    ids=event_ids,
)
def test_event_points(event: EventFact, expected: float) -> None:
    assert event_points(event) == expected


def test_default_tables_name_real_types_and_layers() -> None:
    assert set(DEFAULT_POINTS_BY_TYPE) <= set(EVENT_TYPES)
    assert set(DEFAULT_POINTS_BY_TYPE) <= CUSTOMER_ACTIONS  # docs/domain.md "Activity"
    assert set(DEFAULT_POINTS_BY_LAYER) == {"authority", "acquisition", "closing", "after_sale"}
    # later-funnel content signals more intent
    assert DEFAULT_POINTS_BY_LAYER["closing"] > DEFAULT_POINTS_BY_LAYER["acquisition"]
    assert DEFAULT_POINTS_BY_LAYER["acquisition"] > DEFAULT_POINTS_BY_LAYER["authority"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], 0.0),
        ([ev("biz.order.paid", 0)], 40.0),
        ([ev("biz.order.paid", 30)], 20.0),
        ([ev("biz.order.paid", 60), ev("oa.subscribe", 30)], 10.0 + 2.5),
        ([ev("biz.order.paid", -3)], 40.0),  # the future counts as now
        ([ev("oa.unsubscribe", 10)], 0.0),  # never below 0
        ([ev("biz.demo.requested", 30), ev("oa.unsubscribe", 0)], 0.0),  # 12.5 - 20 -> 0
        # a negative wipes interest but leaves no debt: -20 then +40 a period later
        ([ev("oa.unsubscribe", 60), ev("biz.order.paid", 30)], 20.0),
        # same instant: summed before flooring, whatever the input order
        ([ev("oa.unsubscribe", 0), ev("biz.order.paid", 0)], 20.0),
        ([ev("biz.order.paid", 0), ev("oa.unsubscribe", 0)], 20.0),
        ([ev("link.clicked", 30, content_layer="closing")], 4.5),
    ],
    ids=event_ids,
)
def test_score(events: list[EventFact], expected: float) -> None:
    assert score(events, NOW) == pytest.approx(expected, abs=1e-9)
    assert score(list(reversed(events)), NOW) == pytest.approx(expected, abs=1e-9)


# Only the customer's own actions earn points (docs/domain.md "Activity").
@pytest.mark.parametrize(
    ("event", "points"),
    [
        (ev("wecom.contact.enriched", 0, content_layer="closing"), 0.0),
        (ev("wecom.contact.edited", 0), 0.0),
        (ev("oa.template_send_finished", 0), 0.0),
        (ev("biz.lead.created", 0), 0.0),
        (ev("biz.quote.sent", 0, content_layer="closing"), 0.0),
        (ev("biz.invoice.issued", 0), 0.0),
        (ev("wecom.chat.member_joined", 0, join_scene=0), 0.0),  # a member pulled them in
        (ev("wecom.chat.member_joined", 0, join_scene=3), 3.0),  # scanned the group's QR code
        (ev("wecom.chat.member_left", 0, quit_scene=1), 0.0),  # removed by the owner
        (ev("wecom.chat.member_left", 0, quit_scene=0), -5.0),  # left by themselves
        (ev("wecom.contact.follow_user_deleted", 0), -30.0),
    ],
    ids=event_ids,
)
def test_only_customer_actions_earn_points(event: EventFact, points: float) -> None:
    assert event_points(event) == points
    # Points configured for every type (built directly, past the schema): still none for them.
    everything = ScoringConfig(points_by_type=dict.fromkeys(EVENT_TYPES, 7.0), points_by_layer={})
    assert event_points(event, everything) == (7.0 if points else 0.0)


def test_an_enrichment_fetch_adds_nothing_to_the_score() -> None:
    history = [ev("oa.click", 20), ev("biz.demo.requested", 10)]
    fetched = [*history, ev("wecom.contact.enriched", 0), ev("wecom.contact.edited", 0)]
    assert score(fetched, NOW) == score(history, NOW)


def test_score_with_a_custom_config() -> None:
    config = ScoringConfig(
        points_by_type={"oa.click": 10.0}, points_by_layer={}, half_life_days=7.0
    )
    assert score([ev("oa.click", 7), ev("oa.click", 14)], NOW, config) == pytest.approx(7.5)


@pytest.mark.parametrize("seed", range(25))
def test_batch_equals_incremental(seed: int) -> None:
    rng = random.Random(seed)
    types = sorted(DEFAULT_POINTS_BY_TYPE)
    layers = [None, *DEFAULT_POINTS_BY_LAYER]
    config = ScoringConfig(half_life_days=rng.choice([3.0, 14.0, 30.0, 90.0]))
    start = NOW - timedelta(days=200)
    events = []
    for _ in range(rng.randint(1, 60)):
        at = start + timedelta(minutes=rng.randrange(0, 200 * 24 * 60, 30))
        layer = rng.choice(layers)
        attributes = {"content_layer": layer} if layer else {}
        events.append(EventFact(rng.choice(types), at, attributes))
    rng.shuffle(events)

    # Incremental: fold the events in time order, one stored float and its time.
    by_instant: dict[datetime, float] = {}
    for event in events:
        by_instant[event.occurred_at] = by_instant.get(event.occurred_at, 0.0) + event_points(
            event, config
        )
    stored, stored_at = 0.0, start
    for at in sorted(by_instant):
        stored = advance(stored, stored_at, at, by_instant[at], config.half_life_days)
        stored_at = at
        seen = [e for e in events if e.occurred_at <= at]
        assert stored == pytest.approx(score(seen, at, config), abs=1e-9)
    final = advance(stored, stored_at, NOW, 0.0, config.half_life_days)
    assert final == pytest.approx(score(events, NOW, config), abs=1e-9)
    assert final >= 0.0


def test_advance_decays_and_floors() -> None:
    assert advance(40.0, NOW - timedelta(days=30), NOW, 5.0, 30.0) == pytest.approx(25.0)
    assert advance(10.0, NOW - timedelta(days=30), NOW, -20.0, 30.0) == 0.0
    assert advance(10.0, NOW + timedelta(days=1), NOW, 0.0, 30.0) == 10.0  # no negative age


@pytest.mark.parametrize(
    ("members", "account", "expected"),
    [
        ([], 0.0, 0.0),
        ([], 30.0, 30.0),
        ([40.0], 0.0, 40.0),
        ([10.0, 40.0, 20.0], 0.0, 40.0 + 10.0 + 2.5),  # sorted: 40, 20*0.5, 10*0.25
        ([40.0, 20.0, 10.0], 5.0, 57.5),
        ([-5.0, 8.0], 0.0, 8.0),  # negatives count as 0
        ([10.0] * 50, 0.0, pytest.approx(20.0)),  # bounded: a crowd is not a committee
    ],
)
def test_account_score(members: list[float], account: float, expected: float) -> None:
    assert account_score(members, account) == pytest.approx(expected)


def test_account_score_properties() -> None:
    rng = random.Random(7)
    for _ in range(100):
        members = [rng.uniform(0, 100) for _ in range(rng.randint(0, 10))]
        base = account_score(members, 10.0)
        assert account_score(list(reversed(members)), 10.0) == pytest.approx(base)
        assert account_score([*members, rng.uniform(0, 100)], 10.0) >= base - 1e-9
        assert base <= 10.0 + 2 * max(members, default=0.0) + 1e-9


def test_config_from_dict_merges_and_validates() -> None:
    config = ScoringConfig.from_dict(
        {"half_life_days": 14, "points_by_type": {"oa.click": 4}, "points_by_layer": {"closing": 9}}
    )
    assert config.half_life_days == 14.0
    assert config.points_by_type["oa.click"] == 4.0
    assert config.points_by_type["biz.order.paid"] == 40.0  # defaults kept
    assert config.points_by_layer["closing"] == 9.0
    assert ScoringConfig.from_dict({}) == ScoringConfig()
    with pytest.raises(TypeError):
        config.points_by_type["oa.click"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"half_life_days": 0}, "half_life_days"),
        ({"half_life_days": "soon"}, "half_life_days"),
        ({"points_by_type": {"oa.clik": 2}}, "points_by_type"),
        ({"points_by_type": {"biz.quote.sent": 2}}, "points_by_type"),  # staff, not the customer
        ({"points_by_type": {"oa.click": "two"}}, "points_by_type"),
        ({"points_by_layer": {"bottom": 2}}, "points_by_layer"),
        ({"decay": 3}, "decay"),
    ],
)
def test_config_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        ScoringConfig.from_dict(data)
    assert isinstance(info.value, RuleConfigError)
    assert isinstance(info.value, ConfigError)


def test_config_rejects_a_bad_half_life_directly() -> None:
    with pytest.raises(ValueError, match="half_life_days"):
        ScoringConfig(half_life_days=-1)
