"""When a derivation is next due (services/segment/due.py) and what the rules say time can change.

The property tests check the promise the tick relies on: between a derivation and its due
instant, nothing the rules derive changes; so a contact that is not due need not be read.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.segment import behaviour, risk
from services.segment.derive import account_watch, contact_watch
from services.segment.due import EPSILON, horizon_days, next_age_crossing, next_score_crossing
from services.segment.facts import AccountFacts, ContactFacts, EventFact
from services.segment.lifecycle.conditions import Horizons
from services.segment.lifecycle.grammar import builtin_models, load_condition
from services.segment.scoring import score
from services.segment.segments import SegmentDef

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("ages", "days", "expected"),
    [
        # an event 10 days old leaves a 30-day window 20 days from now (just after: inclusive)
        ([10], [30], NOW + 20 * DAY + EPSILON),
        # already out of every window: time alone changes nothing
        ([40], [30], None),
        # the earliest crossing of any window wins
        ([10, 2], [30, 7], NOW + 5 * DAY + EPSILON),
        # the same event crossing two windows: the nearer first
        ([1], [90, 3], NOW + 2 * DAY + EPSILON),
        # an event exactly at the window's edge still counts now, and leaves just after
        ([30], [30], NOW + EPSILON),
        # a future event (clock skew) counts from its own time
        ([-2], [], NOW + 2 * DAY),
        ([], [30], None),
        # fractional windows are honoured
        ([0], [0.5], NOW + 12 * timedelta(hours=1) + EPSILON),
    ],
)
def test_next_age_crossing(ages, days, expected):
    times = sorted(NOW - a * DAY for a in ages)
    assert next_age_crossing(times, NOW, days) == expected


def test_windows_of_a_century_near_the_calendar_edges_do_not_overflow():
    early = datetime(1, 1, 2, tzinfo=UTC)
    assert next_age_crossing([early], early, [36_500]) == early + 36_500 * DAY + EPSILON
    late = datetime(9999, 12, 1, tzinfo=UTC)
    assert next_age_crossing([late], late, [36_500]) is None


@pytest.mark.parametrize(
    ("score_now", "limits", "expected_days"),
    [
        (40.0, [10.0], 60.0),  # two half-lives of 30 days
        (40.0, [20.0, 10.0], 30.0),  # the nearest threshold below
        (40.0, [40.0, 50.0], None),  # decay never rises to a threshold
        (40.0, [0.0], None),  # nor reaches 0
        (0.0, [10.0], None),
    ],
)
def test_next_score_crossing(score_now, limits, expected_days):
    found = next_score_crossing(score_now, NOW, limits, 30.0)
    if expected_days is None:
        assert found is None
    else:
        assert abs((found - NOW) - expected_days * DAY) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("rule", "days", "scores", "attributes"),
    [
        ({"event": "oa.click", "within_days": 30}, {30.0}, set(), set()),
        (
            {"event": "oa.click", "within_days": 30, "older_than_days": 7},
            {30.0, 7.0},
            set(),
            set(),
        ),
        ({"score": {"gte": 20, "lte": 80}}, set(), {20.0, 80.0}, set()),
        ({"days_since_last_event": {"gte": 45}}, {45.0}, set(), set()),
        (
            {"all": [{"tag": "vip"}, {"attribute": "idle_days", "gte": 60}]},
            set(),
            set(),
            {("idle_days", 60.0)},
        ),
        ({"not": {"event": "biz.order.paid", "within_days": 90}}, {90.0}, set(), set()),
        ({"tag": "vip"}, set(), set(), set()),
    ],
)
def test_what_time_can_change_in_a_rule(rule, days, scores, attributes):
    found = load_condition(rule).horizons()
    assert found == Horizons(frozenset(days), frozenset(scores), frozenset(attributes))


def test_limits_on_age_features_are_watched_and_other_attributes_are_not():
    found = Horizons(attributes=frozenset({("idle_days", 60.0), ("spend", 500.0)}))
    assert horizon_days(found) == {60.0}
    assert horizon_days(found, behaviour.horizon_days()) >= {60.0, 120.0, 30.0}


# --- the property: nothing changes before the due instant ---------------------------------------

TYPES = (
    "oa.click",
    "oa.view",
    "oa.message",
    "link.clicked",
    "biz.registered",
    "biz.content.downloaded",
    "biz.demo.requested",
    "biz.order.paid",
    "biz.complaint.filed",
    "wecom.contact.enriched",
)

SEGMENTS = [
    SegmentDef("idle", "idle", load_condition({"days_since_last_event": {"gte": 20}})),
    SegmentDef("warm", "warm", load_condition({"score": {"gte": 15}})),
    SegmentDef(
        "recent_clickers",
        "recent clickers",
        load_condition({"event": ["oa.click", "link.clicked"], "within_days": 14}),
    ),
    SegmentDef("quiet", "quiet", load_condition({"attribute": "idle_days", "gte": 10})),
]


def _history(rng: random.Random) -> list[EventFact]:
    events = []
    for _ in range(rng.randint(0, 12)):
        type_ = rng.choice(TYPES)
        attributes = {"amount": 100} if type_ == "biz.order.paid" else {}
        at = NOW - timedelta(seconds=rng.randint(0, 200 * 86400))
        events.append(EventFact(type_, at, attributes))
    return sorted(events, key=lambda e: e.occurred_at)


def _contact_outcome(model, events, at, created):
    """Everything the contact rules derive at ``at`` that is not a continuous number."""
    facts = ContactFacts(
        "c1", "b2c", events=tuple(events), created_at=created, score=score(events, at)
    )
    feats = behaviour.features(events, at, created)
    segment_facts = ContactFacts(
        "c1",
        "b2c",
        events=tuple(events),
        created_at=created,
        score=facts.score,
        attributes=behaviour.as_dict(feats),
    )
    return (
        tuple(m.to_stage for m in model.settle(facts, at)),
        tuple(behaviour.segments(feats)),
        tuple(s.segment_id for s in SEGMENTS if s.condition.holds(segment_facts, at, model)),
        feats.frequency_90d,
        feats.engagement_30d,
        feats.orders_365d,
        feats.content_interests,
    )


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("name", ["aisceas", "aarrr"])
def test_a_contact_derives_the_same_until_it_is_due(seed, name):
    rng = random.Random(seed)
    model = builtin_models("b2c")[name]
    events = _history(rng)
    created = min([e.occurred_at for e in events], default=NOW - 300 * DAY)
    watch = contact_watch(model, SEGMENTS)
    times = [e.occurred_at for e in events] + [created]
    due = watch.due(times, NOW, score(events, NOW))
    before = _contact_outcome(model, events, NOW, created)
    horizon = due or NOW + 400 * DAY
    for _ in range(60):
        at = NOW + (horizon - NOW - EPSILON) * rng.random()
        assert _contact_outcome(model, events, at, created) == before, (at, due)


@pytest.mark.parametrize("seed", range(40))
def test_an_account_flags_the_same_until_it_is_due(seed):
    rng = random.Random(1000 + seed)
    model = builtin_models("b2b")["aisceas"]
    events = [
        EventFact(e.type, e.occurred_at, {**e.attributes, "contact_id": rng.choice("ab")})
        for e in _history(rng)
    ]
    created = NOW - rng.randint(1, 90) * DAY
    account = AccountFacts("acme", "ACME", created_at=created)
    due = account_watch(model).due([e.occurred_at for e in events] + [created], NOW, 0.0)
    before = [f.flag for f in risk.risk_flags(account, events, NOW)]
    horizon = due or NOW + 400 * DAY
    for _ in range(60):
        at = NOW + (horizon - NOW - EPSILON) * rng.random()
        assert [f.flag for f in risk.risk_flags(account, events, at)] == before, (at, due)


def test_the_due_instant_is_when_something_changes():
    """Not a superset for nothing: a contact idle since a click lapses out of "recent clickers"
    and into "idle" at the instants computed."""
    model = builtin_models("b2c")["aarrr"]
    click = EventFact("oa.click", NOW - 3 * DAY, {})
    watch = contact_watch(model, SEGMENTS)
    due = watch.due([click.occurred_at], NOW, score([click], NOW))
    assert due is not None and NOW < due <= click.occurred_at + 10 * DAY + EPSILON
    recent = SEGMENTS[2].condition
    facts = ContactFacts("c1", "b2c", events=(click,))
    assert recent.holds(facts, NOW)
    assert not recent.holds(facts, click.occurred_at + 14 * DAY + EPSILON)
