"""Lifecycle models: the condition grammar, stage transitions of the built-in packs, validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.segment.facts import AccountFacts, ContactFacts, EventFact
from services.segment.lifecycle.grammar import (
    ModelError,
    builtin_models,
    load_condition,
    load_model,
)
from services.segment.lifecycle.model import LifecycleModel, Transition, evaluate_account

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=CST)
DAY = timedelta(days=1)


def ev(type_: str, days_ago: float = 1, **attributes) -> EventFact:
    return EventFact(type=type_, occurred_at=NOW - days_ago * DAY, attributes=attributes)


def account(**kw) -> AccountFacts:
    values = dict(account_id="a1", name="苏州精工机械")
    values.update(kw)
    return AccountFacts(**values)


def contact(*events: EventFact, **kw) -> ContactFacts:
    values = dict(contact_id="c1", tenant_mode="b2b", events=tuple(events))
    values.update(kw)
    return ContactFacts(**values)


AISCEAS_B2B = builtin_models("b2b")["aisceas"]

# --------------------------------------------------------------------------------------------
# Grammar: (condition, facts, now, expected)

GRAMMAR = [
    # event: one type, a list, min
    pytest.param({"event": "oa.subscribe"}, contact(ev("oa.subscribe")), NOW, True, id="event"),
    pytest.param({"event": "oa.subscribe"}, contact(ev("oa.scan")), NOW, False, id="event-other"),
    pytest.param({"event": "oa.subscribe"}, contact(), NOW, False, id="event-none"),
    pytest.param(
        {"event": ["oa.click", "link.clicked"], "min": 2},
        contact(ev("oa.click"), ev("link.clicked")),
        NOW,
        True,
        id="event-list-min",
    ),
    pytest.param(
        {"event": ["oa.click", "link.clicked"], "min": 3},
        contact(ev("oa.click"), ev("link.clicked"), ev("oa.view")),
        NOW,
        False,
        id="event-list-min-short",
    ),
    # windows end at now and are inclusive at the boundary; later events do not count
    pytest.param(
        {"event": "oa.click", "within_days": 30},
        contact(ev("oa.click", 30)),
        NOW,
        True,
        id="window-boundary-in",
    ),
    pytest.param(
        {"event": "oa.click", "within_days": 30},
        contact(ev("oa.click", 30 + 1 / 86400)),
        NOW,
        False,
        id="window-boundary-out",
    ),
    pytest.param(
        {"event": "oa.click", "within_days": 30},
        contact(ev("oa.click", 5)),
        NOW - 6 * DAY,
        False,
        id="window-event-after-now",
    ),
    pytest.param(
        {"event": "oa.click", "min": 2, "within_days": 7},
        contact(ev("oa.click", 8), ev("oa.click", 2)),
        NOW,
        False,
        id="window-min-one-outside",
    ),
    pytest.param(
        {"event": "oa.click", "within_days": 90, "older_than_days": 30},
        contact(ev("oa.click", 45)),
        NOW,
        True,
        id="band-in",
    ),
    pytest.param(
        {"event": "oa.click", "within_days": 90, "older_than_days": 30},
        contact(ev("oa.click", 10)),
        NOW,
        False,
        id="band-too-recent",
    ),
    # where: attribute equality, strict about booleans
    pytest.param(
        {"event": "link.clicked", "where": {"shared": True}},
        contact(ev("link.clicked", shared=True)),
        NOW,
        True,
        id="where",
    ),
    pytest.param(
        {"event": "link.clicked", "where": {"shared": True}},
        contact(ev("link.clicked"), ev("link.clicked", shared=1)),
        NOW,
        False,
        id="where-mismatch-and-1-is-not-true",
    ),
    pytest.param(
        {"event": "biz.content.downloaded", "where": {"format": "spec"}},
        contact(ev("biz.content.downloaded", format="whitepaper")),
        NOW,
        False,
        id="where-other-value",
    ),
    # sum of a numeric attribute
    pytest.param(
        {"event": "biz.order.paid", "sum": "amount", "gte": 1000},
        contact(ev("biz.order.paid", amount=600), ev("biz.order.paid", amount=400.0)),
        NOW,
        True,
        id="sum",
    ),
    pytest.param(
        {"event": "biz.order.paid", "sum": "amount", "gte": 1000},
        contact(ev("biz.order.paid", amount=600), ev("biz.order.paid", amount="999")),
        NOW,
        False,
        id="sum-short-ignores-strings",
    ),
    pytest.param(
        {"event": "biz.order.paid", "sum": "amount", "gte": 1000, "within_days": 30},
        contact(ev("biz.order.paid", 40, amount=900), ev("biz.order.paid", 3, amount=200)),
        NOW,
        False,
        id="sum-in-window",
    ),
    # wildcards
    pytest.param({"event": "biz.*"}, contact(ev("biz.order.paid")), NOW, True, id="wildcard"),
    pytest.param({"event": "oa.*"}, contact(ev("biz.order.paid")), NOW, False, id="wildcard-miss"),
    pytest.param(
        {"event": ["wecom.chat.*", "oa.click"], "min": 2},
        contact(ev("wecom.chat.member_joined"), ev("oa.click")),
        NOW,
        True,
        id="wildcard-in-list",
    ),
    # all / any / not
    pytest.param(
        {"all": [{"event": "oa.subscribe"}, {"event": "oa.click"}]},
        contact(ev("oa.subscribe"), ev("oa.click")),
        NOW,
        True,
        id="all",
    ),
    pytest.param(
        {"all": [{"event": "oa.subscribe"}, {"event": "oa.click"}]},
        contact(ev("oa.subscribe")),
        NOW,
        False,
        id="all-one-missing",
    ),
    pytest.param(
        {"any": [{"event": "oa.subscribe"}, {"event": "oa.click"}]},
        contact(ev("oa.click")),
        NOW,
        True,
        id="any",
    ),
    pytest.param(
        {"any": [{"event": "oa.subscribe"}, {"event": "oa.click"}]},
        contact(ev("oa.view")),
        NOW,
        False,
        id="any-none",
    ),
    pytest.param({"not": {"event": "oa.unsubscribe"}}, contact(), NOW, True, id="not"),
    pytest.param(
        {"not": {"event": "oa.unsubscribe"}},
        contact(ev("oa.unsubscribe")),
        NOW,
        False,
        id="not-false",
    ),
    # attribute, role, tag
    pytest.param(
        {"attribute": "city", "equals": "上海"},
        contact(attributes={"city": "上海"}),
        NOW,
        True,
        id="attr-equals",
    ),
    pytest.param(
        {"attribute": "city", "equals": "上海"}, contact(), NOW, False, id="attr-equals-missing"
    ),
    pytest.param(
        {"attribute": "city", "in": ["上海", "苏州"]},
        contact(attributes={"city": "苏州"}),
        NOW,
        True,
        id="attr-in",
    ),
    pytest.param(
        {"attribute": "city", "in": ["上海", "苏州"]},
        contact(attributes={"city": "北京"}),
        NOW,
        False,
        id="attr-not-in",
    ),
    pytest.param(
        {"attribute": "phone_hash", "exists": True},
        contact(attributes={"phone_hash": "ab12"}),
        NOW,
        True,
        id="attr-exists",
    ),
    pytest.param(
        {"attribute": "phone_hash", "exists": True},
        contact(attributes={"phone_hash": None}),
        NOW,
        False,
        id="attr-exists-none",
    ),
    pytest.param(
        {"attribute": "phone_hash", "exists": False}, contact(), NOW, True, id="attr-missing"
    ),
    pytest.param(
        {"attribute": "age", "gte": 18},
        contact(attributes={"age": 18}),
        NOW,
        True,
        id="attr-gte-boundary",
    ),
    pytest.param(
        {"attribute": "age", "lte": 17},
        contact(attributes={"age": 18}),
        NOW,
        False,
        id="attr-lte",
    ),
    pytest.param(
        {"attribute": "age", "gte": 18},
        contact(attributes={"age": "30"}),
        NOW,
        False,
        id="attr-gte-not-a-number",
    ),
    pytest.param(
        {"attribute": "role", "equals": "technical"},
        contact(role="technical"),
        NOW,
        True,
        id="role",
    ),
    pytest.param(
        {"attribute": "role", "in": ["finance", "procurement"]},
        contact(role="technical"),
        NOW,
        False,
        id="role-not-in",
    ),
    pytest.param({"tag": "vip"}, contact(tags=frozenset({"vip"})), NOW, True, id="tag"),
    pytest.param({"tag": "vip"}, contact(tags=frozenset({"new"})), NOW, False, id="tag-missing"),
    # score
    pytest.param({"score": {"gte": 50}}, contact(score=50.0), NOW, True, id="score-gte"),
    pytest.param({"score": {"gte": 50}}, contact(score=49.9), NOW, False, id="score-below"),
    pytest.param({"score": {"lte": 10}}, contact(score=3.0), NOW, True, id="score-lte"),
    # account
    pytest.param(
        {"account": {"event": "biz.order.paid"}},
        contact(account=account(events=(ev("biz.order.paid", amount=10),))),
        NOW,
        True,
        id="account-event",
    ),
    pytest.param(
        {"account": {"event": "biz.order.paid"}},
        contact(ev("biz.order.paid")),
        NOW,
        False,
        id="account-none",
    ),
    pytest.param(
        {"not": {"account": {"event": "biz.order.paid"}}},
        contact(),
        NOW,
        True,
        id="account-none-negated",
    ),
    pytest.param(
        {"account": {"attribute": "industry", "equals": "machinery"}},
        contact(account=account(attributes={"industry": "machinery"})),
        NOW,
        True,
        id="account-attribute",
    ),
    pytest.param(
        {"account": {"attribute": "industry", "equals": "machinery"}},
        contact(attributes={"industry": "machinery"}, account=account()),
        NOW,
        False,
        id="account-attribute-not-the-contacts",
    ),
    pytest.param(
        {"account": {"score": {"gte": 100}}},
        contact(score=500.0, account=account(score=120.0)),
        NOW,
        True,
        id="account-score",
    ),
    pytest.param(
        {"account": {"roles_engaged": {"gte": 3}}},
        contact(account=account(roles_engaged=frozenset({"technical", "business", "finance"}))),
        NOW,
        True,
        id="account-roles-gte",
    ),
    pytest.param(
        {"account": {"roles_engaged": {"gte": 3}}},
        contact(account=account(roles_engaged=frozenset({"technical", "business"}))),
        NOW,
        False,
        id="account-roles-gte-short",
    ),
    pytest.param(
        {"account": {"roles_engaged": {"includes": ["technical", "finance"]}}},
        contact(account=account(roles_engaged=frozenset({"technical", "finance", "business"}))),
        NOW,
        True,
        id="account-roles-includes",
    ),
    pytest.param(
        {"account": {"roles_engaged": {"includes": ["technical", "finance"]}}},
        contact(account=account(roles_engaged=frozenset({"technical", "business"}))),
        NOW,
        False,
        id="account-roles-includes-missing",
    ),
    pytest.param(
        {"account": {"stage_at_least": "comparison"}},
        contact(stage="attention", account=account(stage="examination")),
        NOW,
        True,
        id="account-stage-at-least",
    ),
    pytest.param(
        {"account": {"stage_at_least": "comparison"}},
        contact(stage="share", account=account(stage="search")),
        NOW,
        False,
        id="account-stage-below",
    ),
    # days since last event
    pytest.param(
        {"days_since_last_event": {"gte": 90}},
        contact(ev("oa.click", 200), ev("oa.click", 90)),
        NOW,
        True,
        id="days-boundary-in",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90}},
        contact(ev("oa.click", 200), ev("oa.click", 89.9)),
        NOW,
        False,
        id="days-boundary-out",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90, "types": ["oa.click"]}},
        contact(ev("oa.click", 120), ev("oa.template_send_finished", 1)),
        NOW,
        True,
        id="days-types-ignore-others",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90}, "types": ["biz.*"]},
        contact(ev("biz.order.paid", 10), ev("oa.click", 100)),
        NOW,
        False,
        id="days-types-sibling-wildcard",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90, "activity": True}},
        contact(
            ev("oa.click", 120),
            ev("wecom.chat.member_joined", 2, join_scene=0),
            ev("wecom.contact.enriched", 1),
        ),
        NOW,
        True,
        id="days-activity-ignores-staff-join-and-enrichment",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90, "types": ["wecom.chat.*"], "activity": True}},
        contact(ev("wecom.chat.member_joined", 2, join_scene=1)),
        NOW,
        False,
        id="days-activity-counts-the-customers-own-join",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90}},
        contact(ev("oa.click", 120), ev("wecom.contact.enriched", 1)),
        NOW,
        False,
        id="days-without-activity-counts-any-event",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90}},
        contact(created_at=NOW - 91 * DAY),
        NOW,
        True,
        id="days-no-events-created",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 90}},
        contact(created_at=NOW - 10 * DAY),
        NOW,
        False,
        id="days-no-events-created-recently",
    ),
    pytest.param(
        {"days_since_last_event": {"gte": 0}}, contact(), NOW, False, id="days-no-events-no-created"
    ),
    pytest.param(
        {"days_since_last_event": {"lte": 7}},
        contact(ev("oa.click", 3)),
        NOW,
        True,
        id="days-lte",
    ),
    pytest.param(
        {"account": {"days_since_last_event": {"gte": 60}}},
        contact(ev("oa.click", 1), account=account(events=(ev("biz.order.paid", 70),))),
        NOW,
        True,
        id="days-on-account",
    ),
    # stage_at_least (the contact's own position)
    pytest.param(
        {"stage_at_least": "search"}, contact(stage="search"), NOW, True, id="stage-equal"
    ),
    pytest.param(
        {"stage_at_least": "search"}, contact(stage="action"), NOW, True, id="stage-above"
    ),
    pytest.param(
        {"stage_at_least": "search"}, contact(stage="interest"), NOW, False, id="stage-below"
    ),
    pytest.param({"stage_at_least": "attention"}, contact(), NOW, False, id="stage-none"),
    pytest.param(
        {"stage_at_least": "attention"}, contact(stage="lapsed"), NOW, False, id="stage-side"
    ),
]


@pytest.mark.parametrize(("condition", "facts", "now", "expected"), GRAMMAR)
def test_condition_grammar(condition, facts, now, expected):
    cond = load_condition(condition)
    assert cond.holds(facts, now, AISCEAS_B2B) is expected
    why = cond.explain(facts, now, AISCEAS_B2B)
    assert (why is not None) is expected
    if expected:
        assert why.strip()


def test_condition_from_yaml_text_and_explanations():
    cond = load_condition(
        "{event: [oa.click, link.clicked, biz.content.downloaded], min: 2, within_days: 30}"
    )
    facts = contact(ev("oa.click", 2), ev("biz.content.downloaded", 3), ev("oa.click", 40))
    assert cond.explain(facts, NOW) == (
        "2 of oa.click/link.clicked/biz.content.downloaded within 30 days"
    )
    total = load_condition({"event": "biz.order.paid", "sum": "amount", "gte": 1000})
    facts = contact(ev("biz.order.paid", amount=800), ev("biz.order.paid", amount=700))
    assert total.explain(facts, NOW) == "2 of biz.order.paid with amount sum 1500 >= 1000"
    quiet = load_condition({"days_since_last_event": {"gte": 90}})
    assert quiet.explain(contact(created_at=NOW - 100 * DAY), NOW) == (
        "100 days since creation (>= 90)"
    )


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        load_condition({"event": "oa.click"}).holds(contact(), datetime(2026, 11, 24))
    with pytest.raises(ValueError, match="timezone-aware"):
        AISCEAS_B2B.evaluate(contact(), datetime(2026, 11, 24))


# --------------------------------------------------------------------------------------------
# Transitions: (mode, model, starting stage, events, extra facts, expected stage or None)

SHARED = {"shared": True}
CUSTOM_YAML = """
name: aidma
title: AIDMA with VIP
stages:
  - name: attention
    when: {any: [{event: oa.subscribe}, {event: wecom.contact.added}, {event: oa.scan}]}
  - name: interest
    when: {event: [oa.click, link.clicked, biz.content.downloaded], min: 2, within_days: 30}
  - name: desire
    when: {any: [{event: biz.demo.requested}, {score: {gte: 60}}]}
  - name: memory
    when: {all: [{stage_at_least: desire}, {event: biz.*, min: 3, within_days: 60}]}
  - name: action
    when: {event: biz.order.paid}
  - name: vip
    when: {event: biz.order.paid, sum: amount, gte: 10000, within_days: 365}
side_stages:
  - name: lapsed
  - name: unhappy
regress:
  - from: [action, vip]
    to: unhappy
    when: {event: [biz.complaint.filed, biz.order.refunded], within_days: 14}
  - from: [action, vip]
    to: lapsed
    when: {days_since_last_event: {gte: 90}}
  - from: [lapsed, unhappy]
    to: action
    when: {event: biz.order.paid, within_days: 30}
"""
CUSTOM = load_model(CUSTOM_YAML)

JOURNEYS = [
    # ---- AISCEAS, B2B
    ("b2b", "aisceas", None, [ev("oa.subscribe")], {}, "attention"),
    ("b2b", "aisceas", None, [ev("wecom.contact.added")], {}, "attention"),
    ("b2b", "aisceas", None, [ev("biz.lead.created")], {}, "attention"),
    (
        "b2b",
        "aisceas",
        "attention",
        [ev("biz.content.downloaded", 3, format="whitepaper"), ev("oa.click", 1)],
        {},
        "interest",
    ),
    (
        "b2b",
        "aisceas",
        "attention",
        [ev("biz.content.downloaded", 45), ev("oa.click", 1)],
        {},
        None,
    ),
    ("b2b", "aisceas", "interest", [ev("biz.webinar.registered")], {}, "search"),
    ("b2b", "aisceas", "interest", [ev("biz.demo.requested")], {}, "search"),
    ("b2b", "aisceas", "interest", [ev("oa.view", d) for d in range(1, 6)], {}, "search"),
    ("b2b", "aisceas", "search", [ev("biz.webinar.attended")], {}, "comparison"),
    (
        "b2b",
        "aisceas",
        "search",
        [ev("biz.content.downloaded", format="case_study")],
        {},
        "comparison",
    ),
    (  # the buying committee forms while researching
        "b2b",
        "aisceas",
        "search",
        [],
        {"account": account(roles_engaged=frozenset({"technical", "business", "compliance"}))},
        "comparison",
    ),
    ("b2b", "aisceas", "search", [], {}, None),
    ("b2b", "aisceas", "comparison", [ev("biz.trial.started")], {}, "examination"),
    ("b2b", "aisceas", "comparison", [ev("biz.quote.sent")], {}, "examination"),
    (
        "b2b",
        "aisceas",
        "comparison",
        [ev("biz.content.downloaded", format="spec")],
        {},
        "examination",
    ),
    (
        "b2b",
        "aisceas",
        "comparison",
        [],
        {"account": account(roles_engaged=frozenset({"technical", "finance"}))},
        "examination",
    ),
    # skip-ahead: an order without any prior touch goes straight to action
    ("b2b", "aisceas", None, [ev("biz.order.paid", amount=128000)], {}, "action"),
    ("b2b", "aisceas", "interest", [ev("biz.contract.signed")], {}, "action"),
    # never backwards without a rule
    ("b2b", "aisceas", "action", [ev("oa.click"), ev("oa.subscribe")], {}, None),
    ("b2b", "aisceas", "examination", [ev("oa.subscribe", 400)], {}, None),
    # share needs a customer: one step at a time
    ("b2b", "aisceas", "action", [ev("biz.order.paid", 20)], {"tags": {"referrer"}}, "share"),
    ("b2b", "aisceas", None, [ev("biz.order.paid")], {"tags": {"referrer"}}, "action"),
    ("b2b", "aisceas", "action", [ev("biz.event.attended", 10)], {}, "share"),
    ("b2b", "aisceas", "action", [ev("link.clicked", 3, **SHARED)], {}, "share"),
    # lapsed and back (B2B: 180 days of quiet)
    ("b2b", "aisceas", "action", [ev("biz.order.paid", 181)], {}, "lapsed"),
    ("b2b", "aisceas", "share", [ev("biz.order.paid", 181)], {}, "lapsed"),
    ("b2b", "aisceas", "action", [ev("biz.order.paid", 100)], {}, None),
    (  # staff activity (template sends) is not the contact's activity
        "b2b",
        "aisceas",
        "action",
        [ev("biz.order.paid", 200), ev("oa.template_send_finished", 2)],
        {},
        "lapsed",
    ),
    (
        "b2b",
        "aisceas",
        "lapsed",
        [ev("biz.order.paid", 200), ev("biz.order.paid", 5)],
        {},
        "action",
    ),
    # a side stage is left only by a regress rule, not by old evidence
    ("b2b", "aisceas", "lapsed", [ev("biz.order.paid", 200), ev("oa.click", 2)], {}, None),
    # an unknown stage (e.g. from an older model) is placed by evidence
    ("b2b", "aisceas", "legacy_customer", [ev("biz.order.paid", 2)], {}, "action"),
    # ---- AISCEAS, B2C
    ("b2c", "aisceas", None, [ev("oa.scan", scene="store_sh01")], {}, "attention"),
    ("b2c", "aisceas", "attention", [ev("wecom.chat.member_joined")], {}, "interest"),
    ("b2c", "aisceas", "interest", [ev("oa.message", 2), ev("oa.message", 1)], {}, "search"),
    ("b2c", "aisceas", "search", [ev("oa.view", d) for d in range(10)], {}, "comparison"),
    ("b2c", "aisceas", "search", [ev("biz.event.attended")], {}, "comparison"),
    ("b2c", "aisceas", "comparison", [ev("oa.message", d) for d in (1, 2, 3)], {}, "examination"),
    ("b2c", "aisceas", None, [ev("biz.order.paid", amount=59.9)], {}, "action"),
    ("b2c", "aisceas", "action", [ev("link.clicked", **SHARED)], {}, "share"),
    ("b2c", "aisceas", "action", [ev("biz.order.paid", 91)], {}, "lapsed"),
    ("b2c", "aisceas", "action", [ev("biz.order.paid", 60)], {}, None),
    (
        "b2c",
        "aisceas",
        "lapsed",
        [ev("biz.order.paid", 120), ev("biz.order.paid", 1)],
        {},
        "action",
    ),
    # ---- AARRR, B2C
    ("b2c", "aarrr", None, [ev("oa.subscribe")], {}, "acquisition"),
    ("b2c", "aarrr", None, [ev("biz.registered")], {}, "acquisition"),
    ("b2c", "aarrr", "acquisition", [ev("oa.message")], {}, "activation"),
    ("b2c", "aarrr", "acquisition", [ev("oa.click", 3), ev("link.clicked", 1)], {}, "activation"),
    ("b2c", "aarrr", "acquisition", [ev("oa.click", 3)], {}, None),
    (  # engaged this month and before: retention
        "b2c",
        "aarrr",
        "activation",
        [ev("oa.click", 45), ev("oa.view", 10), ev("link.clicked", 2)],
        {},
        "retention",
    ),
    (  # a burst of clicks in one fortnight is not retention
        "b2c",
        "aarrr",
        "activation",
        [ev("oa.click", 10), ev("oa.view", 5), ev("link.clicked", 2)],
        {},
        None,
    ),
    ("b2c", "aarrr", "activation", [ev("biz.order.paid")], {}, "revenue"),
    ("b2c", "aarrr", "revenue", [ev("link.clicked", **SHARED)], {}, "referral"),
    ("b2c", "aarrr", "revenue", [], {"tags": {"referrer"}}, "referral"),
    ("b2c", "aarrr", "activation", [ev("link.clicked", **SHARED)], {}, None),
    ("b2c", "aarrr", "revenue", [ev("biz.order.paid", 90)], {}, "lapsed"),
    ("b2c", "aarrr", "retention", [ev("oa.click", 95)], {}, "lapsed"),
    ("b2c", "aarrr", "revenue", [ev("biz.order.paid", 89)], {}, None),
    ("b2c", "aarrr", "activation", [ev("oa.click", 200)], {}, None),  # no rule from activation
    ("b2c", "aarrr", "lapsed", [ev("biz.order.paid", 120), ev("biz.order.paid", 4)], {}, "revenue"),
    ("b2c", "aarrr", "lapsed", [ev("oa.click", d) for d in (1, 2, 3)], {}, "retention"),
    ("b2c", "aarrr", "lapsed", [ev("oa.click", 2)], {}, None),
    # ---- AARRR, B2B
    ("b2b", "aarrr", None, [ev("biz.lead.created")], {}, "acquisition"),
    (
        "b2b",
        "aarrr",
        "acquisition",
        [ev("biz.content.downloaded", format="whitepaper")],
        {},
        "activation",
    ),
    ("b2b", "aarrr", "activation", [ev("biz.trial.started")], {}, "retention"),
    ("b2b", "aarrr", "retention", [ev("biz.contract.signed")], {}, "revenue"),
    ("b2b", "aarrr", "revenue", [ev("biz.event.attended", 10)], {}, "referral"),
    ("b2b", "aarrr", "revenue", [ev("biz.event.attended", 61)], {}, None),
    ("b2b", "aarrr", "revenue", [ev("biz.order.paid", 100)], {}, None),
    ("b2b", "aarrr", "revenue", [ev("biz.order.paid", 200)], {}, "lapsed"),
    ("b2b", "aarrr", "lapsed", [ev("biz.order.paid", 200), ev("biz.order.paid", 1)], {}, "revenue"),
    # ---- a custom model loaded from YAML text
    ("custom", "aidma", None, [ev("oa.scan")], {}, "attention"),
    ("custom", "aidma", "attention", [ev("oa.click", 2), ev("link.clicked")], {}, "interest"),
    ("custom", "aidma", "interest", [], {"score": 75.0}, "desire"),
    ("custom", "aidma", "desire", [ev("biz.registered", d) for d in (1, 2, 3)], {}, "memory"),
    ("custom", "aidma", "interest", [ev("biz.registered", d) for d in (1, 2, 3)], {}, None),
    ("custom", "aidma", None, [ev("biz.order.paid", amount=3000)], {}, "action"),
    (
        "custom",
        "aidma",
        "action",
        [ev("biz.order.paid", 100, amount=6000), ev("biz.order.paid", 2, amount=5000)],
        {},
        "vip",
    ),
    (
        "custom",
        "aidma",
        "vip",
        [ev("biz.order.paid", 20), ev("biz.complaint.filed")],
        {},
        "unhappy",
    ),
    ("custom", "aidma", "action", [ev("biz.order.paid", 95)], {}, "lapsed"),
    (
        "custom",
        "aidma",
        "unhappy",
        [ev("biz.complaint.filed", 20), ev("biz.order.paid")],
        {},
        "action",
    ),
]


def _model(mode: str, name: str) -> LifecycleModel:
    return CUSTOM if mode == "custom" else builtin_models(mode)[name]


@pytest.mark.parametrize(
    ("mode", "name", "start", "events", "extra", "expected"),
    JOURNEYS,
    ids=[f"{m}-{n}-{s}->{e}-{i}" for i, (m, n, s, _, _, e) in enumerate(JOURNEYS)],
)
def test_journey(mode, name, start, events, extra, expected):
    model = _model(mode, name)
    extra = {k: frozenset(v) if k == "tags" else v for k, v in extra.items()}
    facts = contact(
        *sorted(events, key=lambda e: e.occurred_at),
        stage=start,
        tenant_mode="b2b" if mode == "custom" else mode,
        **extra,
    )
    move = model.evaluate(facts, NOW)
    if expected is None:
        assert move is None
    else:
        assert move is not None
        assert (move.from_stage, move.to_stage) == (start, expected)
        assert move.cause
    # deterministic: the same facts give the same answer
    assert model.evaluate(facts, NOW) == move


def test_transition_causes_name_the_rule():
    model = builtin_models("b2b")["aisceas"]
    facts = contact(ev("biz.content.downloaded", 3), ev("oa.click", 1), stage="attention")
    assert model.evaluate(facts, NOW) == Transition(
        "attention",
        "interest",
        "stage interest: 2 of oa.click/oa.view/link.clicked/biz.content.downloaded within 30 days",
    )
    quiet = contact(ev("biz.order.paid", 200), stage="action")
    assert model.evaluate(quiet, NOW).cause.startswith("regress action -> lapsed: 200 days since")


def test_settle_applies_moves_until_none_is_left():
    model = builtin_models("b2b")["aisceas"]
    facts = contact(ev("biz.order.paid"), tags=frozenset({"referrer"}))
    moves = model.settle(facts, NOW)
    assert [(m.from_stage, m.to_stage) for m in moves] == [(None, "action"), ("action", "share")]
    assert model.settle(replace(facts, stage="share"), NOW) == []


def test_positions_and_builtin_packs():
    for mode in ("b2b", "b2c"):
        models = builtin_models(mode)
        assert set(models) == {"aarrr", "aisceas"}
        aarrr, aisceas = models["aarrr"], models["aisceas"]
        assert aarrr.stage_names == (
            "acquisition",
            "activation",
            "retention",
            "revenue",
            "referral",
        )
        assert aisceas.stage_names == (
            "attention",
            "interest",
            "search",
            "comparison",
            "examination",
            "action",
            "share",
        )
        assert aarrr.side_stages == aisceas.side_stages == ("lapsed",)
        assert aarrr.position("acquisition") == 0
        assert aisceas.position("share") == 6
        assert aisceas.position("lapsed") is None
        assert aisceas.position("nope") is None
        # an empty contact goes nowhere
        assert aarrr.evaluate(contact(tenant_mode=mode), NOW) is None
    assert builtin_models("b2b") == builtin_models("b2b")
    with pytest.raises(ValueError, match="mode"):
        builtin_models("b2x")


# --------------------------------------------------------------------------------------------
# Validation: (document, path named in the details, words of the message)

OK_STAGE = {"name": "attention", "when": {"event": "oa.subscribe"}}


def doc(*stages, **extra):
    return {"name": "custom", "stages": list(stages) or [OK_STAGE], **extra}


INVALID = [
    pytest.param(
        doc(
            OK_STAGE,
            {"name": "interest", "when": {"event": "oa.click"}},
            {"name": "search", "when": {"any": [{"event": "oa.nope"}]}},
        ),
        "stages[2].when.any[0].event",
        "Unknown event type",
        id="unknown-event-type",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": ["oa.click", "nope.*"]}}),
        "stages[0].when.event[1]",
        "matches no event type",
        id="bad-wildcard",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "mn": 2}}),
        "stages[0].when.mn",
        "Unknown field",
        id="unknown-option",
    ),
    pytest.param(
        doc({"name": "a", "when": {"evnt": "oa.click"}}),
        "stages[0].when.evnt",
        "Unknown condition kind",
        id="unknown-kind",
    ),
    pytest.param({**doc(), "colour": "red"}, "colour", "Unknown field", id="unknown-top-level-key"),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "any": [{"event": "oa.view"}]}}),
        "stages[0].when",
        "exactly one kind",
        id="two-kinds",
    ),
    pytest.param(
        doc(OK_STAGE, {"name": "attention", "when": {"event": "oa.click"}}),
        "stages[1].name",
        "defined twice",
        id="stage-named-twice",
    ),
    pytest.param(
        doc(side_stages=[{"name": "attention"}]),
        "side_stages[0].name",
        "defined twice",
        id="side-stage-named-twice",
    ),
    pytest.param(
        doc(regress=[{"from": ["attention"], "to": "gone", "when": {"event": "oa.unsubscribe"}}]),
        "regress[0].to",
        "Unknown stage 'gone'",
        id="regress-to-unknown",
    ),
    pytest.param(
        doc(
            regress=[{"from": ["attention", "x"], "to": "attention", "when": {"score": {"lte": 1}}}]
        ),
        "regress[0].from[1]",
        "Unknown stage 'x'",
        id="regress-from-unknown",
    ),
    pytest.param(
        doc(regress=[{"to": "attention", "when": {"score": {"lte": 1}}}]),
        "regress[0].from",
        "required",
        id="regress-no-from",
    ),
    pytest.param({"name": "custom", "stages": []}, "stages", "at least one", id="empty-stages"),
    pytest.param({"name": "custom"}, "stages", "required", id="no-stages"),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "min": 0}}),
        "stages[0].when.min",
        "greater than or equal to 1",
        id="min-zero",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "min": "two"}}),
        "stages[0].when.min",
        "Not a valid integer",
        id="min-not-a-number",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "within_days": -3}}),
        "stages[0].when.within_days",
        "greater than 0",
        id="negative-window",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": "oa.click", "within_days": True}}),
        "stages[0].when.within_days",
        "Not a valid number",
        id="boolean-window",
    ),
    pytest.param(
        doc({"name": "a", "when": {"score": {"gte": "high"}}}),
        "stages[0].when.score.gte",
        "Not a valid number",
        id="score-not-a-number",
    ),
    pytest.param(
        doc({"name": "a", "when": {"event": "biz.order.paid", "sum": "amount"}}),
        "stages[0].when.gte",
        "sum needs gte",
        id="sum-without-threshold",
    ),
    pytest.param(
        doc({"name": "a", "when": {"attribute": "city"}}),
        "stages[0].when.attribute",
        "exactly one of",
        id="attribute-without-operator",
    ),
    pytest.param(
        doc({"name": "a", "when": {"roles_engaged": {"gte": 2}}}),
        "stages[0].when.roles_engaged",
        "only valid inside an account",
        id="roles-outside-account",
    ),
    pytest.param(
        doc({"name": "a", "when": {"account": {"tag": "vip"}}}),
        "stages[0].when.account.tag",
        "only valid outside an account",
        id="tag-inside-account",
    ),
    pytest.param(
        doc({"name": "a", "when": {"not": {"stage_at_least": "b"}}}),
        "stages[0].when.not.stage_at_least",
        "unknown stage",
        id="stage-at-least-unknown",
    ),
    pytest.param(
        doc(
            {"name": "a", "when": {"event": "oa.click"}},
            {"name": "b", "when": {"all": [{"stage_at_least": "gone"}, {"event": "oa.view"}]}},
            side_stages=[{"name": "gone"}],
        ),
        "stages[1].when.all[0].stage_at_least",
        "side stage",
        id="stage-at-least-side-stage",
    ),
    pytest.param(
        doc({"name": "a", "when": {"any": []}}),
        "stages[0].when.any",
        "Shorter than minimum",
        id="empty-any",
    ),
    pytest.param(
        doc({"name": "Bad Name", "when": {"event": "oa.click"}}),
        "stages[0].name",
        "stage name",
        id="bad-stage-name",
    ),
    pytest.param(doc({"name": "a"}), "stages[0].when", "required", id="stage-without-when"),
    pytest.param(
        doc({"name": "a", "when": "oa.click"}),
        "stages[0].when",
        "mapping",
        id="condition-not-a-mapping",
    ),
    pytest.param("name: x\nstages: [", "_yaml", "", id="not-yaml"),
    pytest.param("- just\n- a list", "", "Not a mapping", id="not-a-mapping"),
]


@pytest.mark.parametrize(("document", "path", "words"), INVALID)
def test_invalid_models_name_the_path(document, path, words):
    with pytest.raises(ModelError) as info:
        load_model(document)
    err = info.value
    assert err.code == "invalid_model"
    assert path in err.paths, err.paths
    assert words in " ".join(err.paths[path])
    if path != "_yaml":
        assert path in err.message


def test_model_text_may_be_json_and_details_are_marshmallow_messages():
    model = load_model('{"name": "mini", "stages": [{"name": "in", "when": {"event": "biz.*"}}]}')
    assert model.title == "mini"
    assert model.stage_names == ("in",)
    with pytest.raises(ModelError) as info:
        load_model(doc({"name": "a", "when": {"any": [{"event": "oa.nope"}]}}))
    assert info.value.details == {
        "stages": {0: {"when": {"any": {0: {"event": ["Unknown event type 'oa.nope'."]}}}}}
    }


# --------------------------------------------------------------------------------------------
# Stage flags: what a stage means to others (evaluating: the no-discount guard; lapsed)

SIDE = {"name": "gone"}
FLAGS_ACCEPTED = [
    pytest.param(doc(), (), id="no-flags"),
    pytest.param(doc({**OK_STAGE, "flags": []}), (), id="empty-list"),
    pytest.param(
        doc({**OK_STAGE, "flags": ["evaluating"]}),
        (("attention", ("evaluating",)),),
        id="evaluating-funnel-stage",
    ),
    pytest.param(
        doc(side_stages=[{**SIDE, "flags": ["lapsed"]}]),
        (("gone", ("lapsed",)),),
        id="lapsed-side-stage",
    ),
    pytest.param(
        doc(side_stages=[{**SIDE, "flags": ["evaluating", "lapsed"]}]),
        (("gone", ("evaluating", "lapsed")),),
        id="side-stage-both",
    ),
]
FLAGS_REFUSED = [
    pytest.param(doc({**OK_STAGE, "flags": ["evaluatin"]}), "stages[0].flags[0]",
                 "Unknown stage flag 'evaluatin'. Valid: evaluating, lapsed.", id="unknown-flag"),
    pytest.param(doc(side_stages=[{**SIDE, "flags": ["comparing"]}]), "side_stages[0].flags[0]",
                 "Unknown stage flag 'comparing'. Valid: evaluating, lapsed.",
                 id="unknown-side-flag"),
    pytest.param(doc({**OK_STAGE, "flags": "evaluating"}), "stages[0].flags", "Not a valid list",
                 id="not-a-list"),
    pytest.param(doc({**OK_STAGE, "flags": [7]}), "stages[0].flags[0]", "Not a valid string",
                 id="not-a-string"),
    pytest.param(doc({**OK_STAGE, "flags": ["evaluating", "evaluating"]}), "stages[0].flags[1]",
                 "given twice", id="twice"),
    pytest.param(doc({**OK_STAGE, "flags": ["lapsed"]}), "stages[0].flags[0]",
                 "marks a side stage", id="lapsed-on-a-funnel-stage"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "flags"), FLAGS_ACCEPTED)
def test_stage_flags_accepted(document, flags):
    model = load_model(document)
    assert model.stage_flags == flags
    assert model.flagged("evaluating") == tuple(s for s, f in flags if "evaluating" in f)


@pytest.mark.parametrize(("document", "path", "words"), FLAGS_REFUSED)
def test_stage_flags_refused_name_the_path_and_the_valid_flags(document, path, words):
    with pytest.raises(ModelError) as info:
        load_model(document)
    assert info.value.code == "invalid_model"
    assert words in " ".join(info.value.paths[path]), info.value.paths


@pytest.mark.parametrize("mode", ["b2b", "b2c"])
def test_builtin_models_declare_what_their_stages_mean(mode):
    aisceas, aarrr = builtin_models(mode)["aisceas"], builtin_models(mode)["aarrr"]
    assert aisceas.flagged("evaluating") == ("comparison", "examination")
    assert aisceas.flagged("lapsed") == aarrr.flagged("lapsed") == ("lapsed",)
    assert aarrr.flagged("evaluating") == ()  # flagged (lapsed), so guarded by its flags: none
    assert aisceas.flags_of("comparison") == ("evaluating",)
    assert aisceas.flags_of("action") == ()


# --------------------------------------------------------------------------------------------
# Accounts: (model, account, member stages, expected stage or None, words of the cause)

B2B = builtin_models("b2b")

ACCOUNTS = [
    pytest.param(
        B2B["aisceas"],
        account(stage="interest"),
        ["attention", "comparison", None, "lapsed"],
        "comparison",
        "members reached comparison (1 of 4 members)",
        id="highest-member",
    ),
    pytest.param(
        B2B["aisceas"],
        account(),
        ["interest", "interest"],
        "interest",
        "members reached interest (2 of 2 members)",
        id="new-account-from-members",
    ),
    pytest.param(
        B2B["aisceas"],
        account(stage="examination"),
        ["attention", "comparison"],
        None,
        "",
        id="forward-only",
    ),
    pytest.param(
        B2B["aisceas"],
        account(stage="search", events=(ev("biz.order.paid", 3, amount=128000),)),
        ["search", "interest"],
        "action",
        "account facts: stage action: 1 of biz.contract.signed/biz.order.paid",
        id="order-on-account-means-action",
    ),
    pytest.param(
        B2B["aisceas"],
        account(stage="action", events=(ev("biz.order.paid", 30),)),
        ["share", "action"],
        "share",
        "members reached share",
        id="member-above-facts",
    ),
    pytest.param(
        B2B["aisceas"],
        account(
            stage="search",
            roles_engaged=frozenset({"technical", "business", "decision_maker"}),
        ),
        ["search"],
        "comparison",
        "account facts: stage comparison",
        id="committee-forms",
    ),
    pytest.param(B2B["aisceas"], account(), [], None, "", id="nothing"),
    pytest.param(
        B2B["aarrr"],
        account(stage="activation", events=(ev("biz.order.paid"),)),
        ["activation"],
        "revenue",
        "account facts: stage revenue",
        id="aarrr-order-means-revenue",
    ),
    pytest.param(
        B2B["aisceas"],
        account(stage="lapsed", events=(ev("biz.order.paid", 300),)),
        ["share"],
        None,
        "",
        id="lapsed-stays-without-new-order",
    ),
    pytest.param(
        B2B["aisceas"],
        account(stage="lapsed", events=(ev("biz.order.paid", 300), ev("biz.order.paid", 2))),
        ["attention"],
        "action",
        "regress lapsed -> action",
        id="lapsed-back-on-order",
    ),
]


@pytest.mark.parametrize(("model", "acct", "members", "expected", "words"), ACCOUNTS)
def test_evaluate_account(model, acct, members, expected, words):
    move = evaluate_account(model, acct, members, NOW)
    if expected is None:
        assert move is None
    else:
        assert move is not None
        assert (move.from_stage, move.to_stage) == (acct.stage, expected)
        assert words in move.cause


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        # The buyer paid 200 days ago and no member acted since: the account lapses (B2B: 180).
        ((ev("biz.order.paid", 200, amount=5000),), "lapsed"),
        # A member's own click last week keeps it a customer, though it placed no new order.
        ((ev("biz.order.paid", 200, amount=5000), ev("oa.click", 7)), None),
        # A staff action is no activity of the customer's (docs/domain.md "Activity").
        ((ev("biz.order.paid", 200, amount=5000), ev("biz.lead.created", 7)), "lapsed"),
    ],
)
def test_an_account_lapses_when_none_of_its_members_acted(activity, expected):
    acct = account(stage="action", events=(ev("biz.order.paid", 200, amount=5000),))
    move = evaluate_account(AISCEAS_B2B, acct, ["lapsed", None], NOW, activity)
    assert (move.to_stage if move else None) == expected
    if move:
        assert move.cause.startswith("regress action -> lapsed: ")
    # Without the members' events the rules see the business events only, as before.
    assert evaluate_account(AISCEAS_B2B, acct, ["lapsed"], NOW) == evaluate_account(
        AISCEAS_B2B, acct, ["lapsed"], NOW, acct.events
    )


@pytest.mark.parametrize(
    ("rule", "reads"),
    [
        ({"attribute": "role", "equals": "technical"}, False),
        ({"stage_at_least": "search"}, False),
        ({"score": {"gte": 10}}, False),
        ({"tag": "vip"}, False),
        ({"event": "biz.order.paid"}, True),
        ({"days_since_last_event": {"gte": 30}}, True),
        ({"all": [{"tag": "vip"}, {"any": [{"score": {"gte": 1}},
                                           {"not": {"event": "oa.subscribe"}}]}]}, True),
        ({"account": {"roles_engaged": {"includes": ["finance"]}}}, False),
        ({"account": {"event": "biz.contract.signed"}}, True),
    ],
)  # fmt: skip
def test_a_condition_says_whether_it_reads_touchpoints(rule, reads):
    assert load_condition(rule).reads_events() is reads
