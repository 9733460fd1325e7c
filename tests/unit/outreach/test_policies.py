"""Outreach's pure rules: policies per recipient, series picking, schedules and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from services.outreach.model import (
    CampaignInSchema,
    ContentInSchema,
    OutreachSettingsSchema,
    is_promotional,
)
from services.outreach.policies import (
    Guard,
    Item,
    Policy,
    Recipient,
    Tally,
    decide,
    guard_of,
    pick,
)
from services.outreach.schedule import latest_due, next_due, quiet_until
from services.segment.lifecycle.grammar import builtin_models, load_model

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
CAPS = {"contact_per_day": 1, "contact_per_week": 3, "group_per_day": 1, "group_per_week": 2}
QUOTAS = {"wecom_budget": "month", "oa_mass_per_month": 4, "oa_custom_window_hours": 48,
          "oa_custom_per_window": 5}  # fmt: skip
ARTICLE = Item("cnt_article", promotional=False)
PROMO = Item("cnt_promo", promotional=True)
NOTICE = Item("cnt_notice", promotional=False, format="service_notice")


def contact(**kw) -> Recipient:
    base = {"kind": "contact", "id": "c1", "address": "wmX", "mode": "b2b", "stage": "interest"}
    return Recipient(**{**base, **kw})


def catalogue_flags(model) -> dict[str, list[str]]:
    """A model's flags as its catalogue carries them (services/segment/catalogue.py)."""
    return {stage: list(flags) for stage, flags in model.stage_flags}


AISCEAS = guard_of(catalogue_flags(builtin_models("b2b")["aisceas"]), "block_all_b2b_promotions")


def policy(channel="wecom_single", **kw) -> Policy:
    return Policy(channel=channel, caps=CAPS, quotas=QUOTAS, **{"guard": AISCEAS, **kw})


@pytest.mark.parametrize(
    ("recipient", "item", "rules", "reason"),
    [
        (contact(), ARTICLE, policy(), None),
        (contact(excluded_by=("segments",)), ARTICLE, policy(), "excluded:segments"),
        (contact(address=None), ARTICLE, policy(), "no_wecom_id"),
        (contact(wecom_contact=False), ARTICLE, policy(), "deleted_contact"),
        (contact(address=None), ARTICLE, policy("oa_template"), "no_openid"),
        (contact(oa_follower=False), ARTICLE, policy("oa_template"), "unsubscribed"),
        # The no-discount guard.
        (contact(stage="comparison"), PROMO, policy(), "no_discount_comparing"),
        (contact(account_stage="examination"), PROMO, policy(), "no_discount_comparing"),
        (contact(stage="comparison"), PROMO, policy(allow_b2b_promotion=True),
         "no_discount_comparing"),
        (contact(), PROMO, policy(), "no_discount_b2b"),
        (contact(), PROMO, policy(allow_b2b_promotion=True), None),
        (contact(mode="b2c", stage="activation"), PROMO, policy(), None),
        (contact(stage="comparison"), ARTICLE, policy(), None),  # professional content is fine
        # Caps (every channel's exposures) and platform quotas.
        (contact(exposures_day=1, exposures_week=1), ARTICLE, policy(), "cap_day"),
        (contact(exposures_week=3), ARTICLE, policy(), "cap_week"),
        (contact(budget_used=31), ARTICLE, policy(budget=31), "platform_budget"),
        (contact(quota_used=4), ARTICLE, policy("oa_mass"), "quota_oa_mass_month"),
        (contact(), ARTICLE, policy("oa_custom"), "outside_cs_window"),
        (contact(oa_last_message_at=NOW - timedelta(hours=49)), ARTICLE, policy("oa_custom"),
         "outside_cs_window"),
        (contact(oa_last_message_at=NOW - timedelta(hours=47)), ARTICLE, policy("oa_custom"),
         None),
        (contact(oa_last_message_at=NOW - timedelta(hours=1), quota_used=5), ARTICLE,
         policy("oa_custom"), "quota_oa_custom"),
        # oa_template carries notices only (a campaign active since before that rule).
        (contact(), NOTICE, policy("oa_template"), None),
        (contact(), ARTICLE, policy("oa_template"), "not_a_notice"),
        (contact(), Item("cnt_offer", True, format="service_notice"), policy("oa_template"),
         "not_a_notice"),
        (contact(mode="b2c"), PROMO, policy("oa_template"), "not_a_notice"),
        (contact(), NOTICE, policy(), None),
    ],
    ids=[
        "sent", "excluded by a segment", "no WeCom id", "deleted WeCom contact", "no openid",
        "unsubscribed", "promo while comparing", "promo while the account examines",
        "promo while comparing, even with b2b promotion", "promo to b2b", "promo to b2b allowed",
        "promo to b2c", "article while comparing", "day cap", "week cap", "WeCom budget used",
        "OA mass month quota", "custom message, never messaged",
        "custom message, last message 49h ago", "custom message, last message 47h ago",
        "custom message, window quota used", "notice on oa_template",
        "article on oa_template", "notice with an offer on oa_template",
        "promo on oa_template", "notice on wecom",
    ],
)  # fmt: skip
def test_policies_per_contact(recipient, item, rules, reason):
    decision = decide(recipient, [item], rules, NOW, series=False)
    assert decision.reason == reason
    assert decision.send is (reason is None)


def group(*members: Recipient, **kw) -> Recipient:
    base = {"kind": "group", "id": "wrG", "address": "wrG", "sender": "zhangwei"}
    return Recipient(**{**base, "members": members, **kw})


@pytest.mark.parametrize(
    ("recipient", "item", "rules", "reason"),
    [
        (group(contact()), ARTICLE, policy("wecom_group"), None),
        (group(contact(), dismissed=True), ARTICLE, policy("wecom_group"), "group_dismissed"),
        # One buyer still comparing blocks a promotion to the whole group.
        (group(contact(mode="b2c"), contact(id="c2", stage="comparison")), PROMO,
         policy("wecom_group", allow_b2b_promotion=True), "no_discount_comparing"),
        (group(contact(mode="b2c"), contact(id="c2")), PROMO, policy("wecom_group"),
         "no_discount_b2b"),
        (group(contact(mode="b2c")), PROMO, policy("wecom_group"), None),
        (group(contact(), exposures_day=1, exposures_week=1), ARTICLE, policy("wecom_group"),
         "group_cap_day"),
        (group(contact(), exposures_week=2), ARTICLE, policy("wecom_group"), "group_cap_week"),
    ],
    ids=[
        "sent", "dismissed group", "promo, one member comparing", "promo, one b2b member",
        "promo, b2c members", "group day cap", "group week cap",
    ],
)  # fmt: skip
def test_policies_per_group(recipient, item, rules, reason):
    assert decide(recipient, [item], rules, NOW, series=False).reason == reason


# The guard per model: the stages are the ones the tenant's model flags `evaluating` (as its
# catalogue carries them), never names written in outreach.

PIPELINE = {
    "name": "pipeline",
    "stages": [
        {"name": "lead", "when": {"event": "biz.lead.created"}},
        {"name": "demo", "when": {"event": "biz.demo.requested"}, "flags": ["evaluating"]},
        {"name": "negotiation", "when": {"event": "biz.quote.sent"}, "flags": ["evaluating"]},
        {"name": "customer", "when": {"event": "biz.order.paid"}},
    ],
    "side_stages": [{"name": "churned", "flags": ["lapsed"]}],
}
UNFLAGGED = {**PIPELINE, "stages": [{k: v for k, v in st.items() if k != "flags"}
                                    for st in PIPELINE["stages"]],
             "side_stages": [{"name": "churned"}]}  # fmt: skip
MODELS = {
    "aisceas": catalogue_flags(builtin_models("b2b")["aisceas"]),
    "aarrr": catalogue_flags(builtin_models("b2b")["aarrr"]),
    "pipeline": catalogue_flags(load_model(PIPELINE)),
    "unflagged": catalogue_flags(load_model(UNFLAGGED)),  # {}
    "old catalogue": None,  # from before stages had flags
}
BLOCK, ALLOW = "block_all_b2b_promotions", "allow"


@pytest.mark.parametrize(
    ("model", "default", "who", "allowed", "reason"),
    [
        # Built-in AISCEAS: comparison and examination are evaluating; the default is unused.
        ("aisceas", BLOCK, contact(stage="comparison"), True, "no_discount_comparing"),
        ("aisceas", ALLOW, contact(account_stage="examination"), True, "no_discount_comparing"),
        ("aisceas", BLOCK, contact(stage="action"), True, None),
        ("aisceas", BLOCK, contact(stage="action"), False, "no_discount_b2b"),
        # Built-in AARRR flags lapsed only: no stage is evaluating, and the default is unused.
        ("aarrr", BLOCK, contact(stage="retention"), True, None),
        ("aarrr", BLOCK, contact(stage="comparison"), True, None),  # not a stage of it
        ("aarrr", BLOCK, contact(stage="retention"), False, "no_discount_b2b"),
        # A custom model with flags, on stage names of its own.
        ("pipeline", BLOCK, contact(stage="demo"), True, "no_discount_comparing"),
        ("pipeline", BLOCK, contact(stage="lead", account_stage="negotiation"), True,
         "no_discount_comparing"),
        ("pipeline", BLOCK, contact(stage="customer"), True, None),
        ("pipeline", BLOCK, contact(stage="demo", mode="b2c"), False, None),  # B2C: no guard
        # A custom model without flags: the tenant's default.
        ("unflagged", BLOCK, contact(stage="customer"), True, "no_discount_unflagged_model"),
        ("unflagged", BLOCK, contact(stage="demo", mode="b2c"), False, None),
        ("unflagged", ALLOW, contact(stage="demo"), True, None),
        ("unflagged", ALLOW, contact(stage="demo"), False, "no_discount_b2b"),
        ("unflagged", ["demo"], contact(stage="demo"), True, "no_discount_comparing"),
        ("unflagged", ["demo"], contact(account_stage="demo"), True, "no_discount_comparing"),
        ("unflagged", ["demo"], contact(stage="customer"), True, None),
        # Flags not known (no catalogue, or one from before flags): blocked whatever the default.
        ("old catalogue", BLOCK, contact(stage="comparison"), True,
         "no_discount_unflagged_model"),
        ("old catalogue", ["demo"], contact(stage="comparison"), True,
         "no_discount_unflagged_model"),
        ("old catalogue", ALLOW, contact(stage="action"), True, "no_discount_unflagged_model"),
    ],
)  # fmt: skip
def test_the_guard_follows_the_tenants_model(model, default, who, allowed, reason):
    rules = policy(guard=guard_of(MODELS[model], default), allow_b2b_promotion=allowed)
    assert decide(who, [PROMO], rules, NOW, series=False).reason == reason
    assert decide(who, [ARTICLE], rules, NOW, series=False).reason is None  # never content


def test_an_unflagged_model_blocks_a_group_with_one_b2b_member():
    rules = policy("wecom_group", guard=guard_of({}, BLOCK), allow_b2b_promotion=True)
    mixed = group(contact(mode="b2c"), contact(id="c2", stage=None))
    assert decide(mixed, [PROMO], rules, NOW, series=False).reason == "no_discount_unflagged_model"
    b2c = group(contact(mode="b2c"))
    assert decide(b2c, [PROMO], rules, NOW, series=False).reason is None


def test_a_policy_without_a_guard_blocks_every_b2b_promotion():
    bare = Policy(channel="wecom_single", caps=CAPS, quotas=QUOTAS, allow_b2b_promotion=True)
    assert bare.guard == Guard(every_stage=True)
    assert decide(contact(), [PROMO], bare, NOW, series=False).reason == (
        "no_discount_unflagged_model"
    )


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        (None, "block_all_b2b_promotions"),  # the default
        ("allow", "allow"),
        ("block_all_b2b_promotions", "block_all_b2b_promotions"),
        (["demo", "negotiation", "demo"], ["demo", "negotiation"]),
        ("block", ValidationError),
        ([], ValidationError),
        ([""], ValidationError),
        ([3], ValidationError),
        ({"stages": ["demo"]}, ValidationError),
    ],
)
def test_the_unflagged_model_setting(value, loaded):
    body = {} if value is None else {"guard_unflagged_model": value}
    if loaded is ValidationError:
        with pytest.raises(ValidationError) as info:
            OutreachSettingsSchema().load(body)
        (message,) = info.value.messages["guard_unflagged_model"]
        assert "Valid: block_all_b2b_promotions, allow, or a non-empty list" in message
    else:
        assert OutreachSettingsSchema().load(body)["guard_unflagged_model"] == loaded


SERIES = [
    Item("wp", False, stages=frozenset({"attention", "interest"})),
    Item("spec", False, roles=frozenset({"technical"})),
    Item("roi", False, roles=frozenset({"decision_maker"})),
]


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        (contact(stage="interest", role="technical"), ("wp", None)),
        (contact(stage="interest", role="technical", received=frozenset({"wp"})), ("spec", None)),
        (contact(stage="comparison", role="technical"), ("spec", None)),  # wp is for early stages
        (contact(stage="comparison", role="finance"), (None, "no_fitting_content")),
        (contact(role="decision_maker", received=frozenset({"wp", "roi"})),
         (None, "no_fitting_content")),
        (contact(received=frozenset({"wp", "spec", "roi"})), (None, "series_finished")),
        (group(received=frozenset({"wp"})), ("spec", None)),  # groups follow the series order
    ],
)  # fmt: skip
def test_series_gives_each_recipient_the_next_item_that_fits(recipient, expected):
    item, reason = pick(SERIES, recipient, series=True)
    assert ((item.content_id if item else None), reason) == expected


def test_tally_counts_distinct_people_across_groups():
    tally = Tally()
    a, b, c = contact(id="a", address="wmA"), contact(id="b", address="wmB"), contact(address="wmC")
    tally.add(group(a, b, id="g1"), decide(group(a, b), [ARTICLE], policy("wecom_group"), NOW,
                                           series=False))  # fmt: skip
    tally.add(group(b, c, id="g2"), decide(group(b, c), [ARTICLE], policy("wecom_group"), NOW,
                                           series=False))  # fmt: skip
    tally.add(
        group(c, id="g3", dismissed=True),
        decide(group(c, dismissed=True), [ARTICLE], policy("wecom_group"), NOW, series=False),
    )
    assert tally.result() == {"recipients": 3, "to_send": 2, "excluded": {"group_dismissed": 1},
                              "people_reached": 3}  # fmt: skip


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ({"cron": "0 10 * * TUE"}, NOW - timedelta(minutes=1), NOW),
        ({"cron": "0 10 * * TUE"}, NOW, NOW + timedelta(days=7)),
        ({"cron": "0 10 * * TUE", "timezone": "UTC"}, NOW, NOW + timedelta(hours=8)),
        ({"rrule": "FREQ=WEEKLY;BYDAY=TU;BYHOUR=10;BYMINUTE=0;BYSECOND=0"},
         NOW - timedelta(minutes=1), NOW),
        ({"cron": "0 10 * * TUE", "end": NOW + timedelta(days=1)}, NOW, None),
        ({"cron": "0 10 * * TUE", "start": NOW + timedelta(days=14)}, NOW,
         NOW + timedelta(days=14)),
    ],
)  # fmt: skip
def test_next_due_in_the_tenant_time_zone(schedule, after, expected):
    assert next_due(schedule, "Asia/Shanghai", after) == expected


def test_a_worker_back_from_an_outage_sends_the_latest_missed_slot_once():
    due, missed = latest_due(
        {"cron": "0 10 * * TUE"},
        "Asia/Shanghai",
        NOW - timedelta(days=21, minutes=1),
        NOW + timedelta(hours=1),
    )
    assert (due, missed) == (NOW, 4)  # fmt: skip


@pytest.mark.parametrize(
    ("local_hour", "quiet", "resume_hour"),
    [
        (22, {"start": "21:00", "end": "08:00"}, 8),  # next morning
        (3, {"start": "21:00", "end": "08:00"}, 8),  # same morning
        (10, {"start": "21:00", "end": "08:00"}, None),
        (13, {"start": "12:00", "end": "14:00"}, 14),
        (14, {"start": "12:00", "end": "14:00"}, None),
        (22, None, None),
    ],
)
def test_quiet_hours_defer_to_their_end(local_hour, quiet, resume_hour):
    at = datetime(2026, 12, 1, local_hour, 30, tzinfo=UTC) - timedelta(hours=8)  # Shanghai
    resume = quiet_until(quiet, "Asia/Shanghai", at)
    if resume_hour is None:
        assert resume is None
    else:
        local = resume + timedelta(hours=8)
        assert (local.hour, local.minute) == (resume_hour, 0)
        assert resume > at
        assert resume - at < timedelta(hours=12)


def test_a_promotion_is_promotional_whatever_the_request_says():
    body = {"title": "双十二", "format": "promotion", "payloads": {"wecom": {"text": "8折"}}}
    assert is_promotional(ContentInSchema().load(body))
    with pytest.raises(ValidationError) as exc:
        ContentInSchema().load({**body, "promotional": False})
    assert "promotional" in exc.value.messages


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"trigger": {"schedule": {"cron": "every tuesday"}}}, "trigger"),
        ({"trigger": {"schedule": {"cron": "0 10 * * 2", "rrule": "FREQ=DAILY"}}}, "trigger"),
        ({"trigger": {"schedule": {"cron": "0 10 * * 2", "timezone": "Mars/Olympus"}}}, "trigger"),
        ({"trigger": {}}, "trigger"),
        ({"content": {"item": "a", "series": ["b"]}}, "content"),
        ({"channel": "sms"}, "channel"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours"),
        ({"audience": {"roles": ["ceo"]}}, "audience"),
        ({"audience": {"segmnts": ["x"]}}, "audience"),
    ],
)
def test_campaign_validation_names_the_field(patch, field):
    body = {"name": "weekly", "channel": "wecom_group", "audience": {"segments": ["it"]},
            "content": {"item": "cnt_1"}, "trigger": {"schedule": {"cron": "0 10 * * 2"}}}  # fmt: skip
    CampaignInSchema().load(body)
    with pytest.raises(ValidationError) as exc:
        CampaignInSchema().load({**body, **patch})
    assert field in exc.value.messages
