"""Every name a user gives is checked against the tenant's model and catalogue (issue 13, item
3): a misspelled stage, an AARRR stage in an AISCEAS tenant, an unknown role, attribute, flag,
behaviour, channel, content item or time zone is a 400 naming the field, the bad value and the
valid values, never a campaign or segment that silently matches nobody.

acme is B2B on AISCEAS, bloom B2C on AARRR (the demo tenants).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.api.test_segment_people import people as _people_fixture  # noqa: F401

WECOM = {"wecom": {"text": "本周白皮书"}}


@pytest.fixture
def people(_people_fixture):  # noqa: F811 - the imported fixture, under its own name
    """The API over both services' schemas, with acme's and bloom's people (segment tests')."""
    return _people_fixture


def _item(api, who: str = "operator") -> str:
    body = {"title": "白皮书", "format": "whitepaper", "payloads": WECOM}
    response = api.call("POST", "/content", who, json=body)
    assert response.status_code == 201, response.json
    return response.json["content_id"]


def _campaign(item: str, **changes) -> dict:
    return {
        "name": "每周二", "channel": "wecom_single", "audience": {"stages": ["attention"]},
        "content": {"item": item}, "trigger": {"schedule": {"cron": "0 10 * * TUE"}}, **changes,
    }  # fmt: skip


def _refused(response, field: str, value: str, valid: str, code: str = "invalid_request"):
    """A 400 whose details name the field (as a path or nested by location), the value and a
    valid value."""
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == code, error
    text = json.dumps(error["details"], ensure_ascii=False)
    leaf = field.rsplit(".", 1)[-1].split("[")[0]
    assert field in error["details"] or f'"{leaf}"' in text, (field, error)
    assert value in text, error
    assert valid in text, error
    return error


# (what, campaign changes, field, bad value, a valid value)
CAMPAIGN_CASES = [
    ("misspelled stage", {"audience": {"stages": ["attension"]}},
     "audience.stages[0]", "attension", "attention"),
    ("Chinese stage name", {"audience": {"stages": ["兴趣"]}}, "audience.stages[0]", "兴趣",
     "interest"),
    ("capitalised stage", {"audience": {"stages": ["Interest"]}}, "audience.stages[0]",
     "Interest", "interest"),
    ("AARRR stage in an AISCEAS tenant", {"audience": {"stages": ["attention", "acquisition"]}},
     "audience.stages[1]", "acquisition", "examination"),
    ("side stage misspelled", {"audience": {"stages": ["lapse"]}}, "audience.stages[0]", "lapse",
     "lapsed"),
    ("excluded stage", {"audience": {"stages": ["interest"], "exclude": {"stages": ["actoin"]}}},
     "audience.exclude.stages[0]", "actoin", "action"),
    ("account stage", {"audience": {"account_stages": ["lead"]}}, "audience.account_stages[0]",
     "lead", "comparison"),
    ("role", {"audience": {"roles": ["cto"]}}, "audience.roles", "cto", "technical"),
    ("risk flag", {"audience": {"risk_flags": ["payment"]}}, "audience.risk_flags[0]", "payment",
     "payment_risk"),
    ("behaviour", {"audience": {"behaviour": ["loyl"]}}, "audience.behaviour[0]", "loyl",
     "loyal"),
    ("channel", {"channel": "sms"}, "channel", "sms", "wecom_group"),
    ("content item", {"content": {"item": "cnt_nope"}}, "content.item", "cnt_nope", "cnt_"),
    ("content in a series", {"content": {"series": ["ITEM", "cnt_gone"]}}, "content.series[1]",
     "cnt_gone", "cnt_"),
    ("time zone", {"trigger": {"schedule": {"cron": "0 10 * * *", "timezone": "Asia/Shangai"}}},
     "timezone", "Asia/Shangai", "Asia/Shanghai"),
    ("time zone that is a directory", {"trigger": {"schedule": {"cron": "0 10 * * *",
                                                                "timezone": "Asia"}}},
     "timezone", "Asia", "Asia/Shanghai"),
    ("stage a trigger waits for", {"trigger": {"event": {"stage_entered": "serch"}}},
     "trigger.event.stage_entered", "serch", "search"),
    ("risk flag a trigger waits for", {"trigger": {"event": {"risk_flag": "churn"}}},
     "trigger.event.risk_flag", "churn", "churn_risk"),
]  # fmt: skip


def _with_item(changes: dict, item: str) -> dict:
    return json.loads(json.dumps(changes).replace('"ITEM"', json.dumps(item)))


@pytest.mark.parametrize(("what", "changes", "field", "value", "valid"), CAMPAIGN_CASES,
                         ids=[c[0] for c in CAMPAIGN_CASES])  # fmt: skip
def test_a_campaign_with_an_unknown_name_is_not_created(people, what, changes, field, value,
                                                        valid):  # fmt: skip
    item = _item(people)
    body = _campaign(item, **_with_item(changes, item))
    _refused(people.call("POST", "/campaigns", "operator", json=body), field, value, valid)
    assert people.call("GET", "/campaigns", "viewer").json["items"] == []


@pytest.mark.parametrize(("what", "changes", "field", "value", "valid"), CAMPAIGN_CASES,
                         ids=[c[0] for c in CAMPAIGN_CASES])  # fmt: skip
def test_a_campaign_patch_with_an_unknown_name_changes_nothing(people, what, changes, field,
                                                               value, valid):  # fmt: skip
    item = _item(people)
    created = people.call("POST", "/campaigns", "operator", json=_campaign(item))
    assert created.status_code == 201, created.json
    path = f"/campaigns/{created.json['campaign_id']}"
    response = people.call("PATCH", path, "operator", json=_with_item(changes, item))
    _refused(response, field, value, valid)
    assert people.call("GET", path, "viewer").json == created.json


def test_the_error_says_what_was_meant(people):
    item = _item(people)
    body = _campaign(item, audience={"stages": ["attension", "Interest"]})
    error = people.call("POST", "/campaigns", "operator", json=body).json["error"]
    assert error["details"]["audience.stages[0]"] == [
        "Unknown stage of the aisceas model 'attension'. Valid: attention, interest, search, "
        "comparison, examination, action, share, lapsed. Did you mean 'attention'?"
    ]
    assert "Did you mean 'interest'?" in error["details"]["audience.stages[1]"][0]
    assert error["details"]["valid"]["audience.stages[1]"][:2] == ["attention", "interest"]
    assert error["message"].startswith("audience.stages[0]: Unknown stage")


def test_each_tenant_is_checked_against_its_own_model(people):
    item = _item(people, "bloom")
    aarrr = _campaign(item, audience={"stages": ["acquisition", "lapsed"]},
                      trigger={"event": {"stage_entered": "revenue"}})  # fmt: skip
    assert people.call("POST", "/campaigns", "bloom", json=aarrr).status_code == 201
    aisceas = _campaign(item, audience={"stages": ["attention"]})
    _refused(people.call("POST", "/campaigns", "bloom", json=aisceas), "audience.stages[0]",
             "attention", "acquisition")  # fmt: skip


def test_a_stored_campaign_with_an_unknown_name_does_not_launch(people):
    item = _item(people)
    created = people.call("POST", "/campaigns", "operator", json=_campaign(item)).json
    # as a campaign stored before names were checked would be
    with people.pool.connection() as conn:
        conn.execute(
            "UPDATE campaigns SET audience = %s WHERE campaign_id = %s",
            ('{"stages": ["attension"]}', created["campaign_id"]),
        )
    response = people.call("POST", f"/campaigns/{created['campaign_id']}/launch", "operator")
    _refused(response, "audience.stages[0]", "attension", "attention")


CONTENT_CASES = [
    ("stage tag", {"stages": ["attension"]}, "stages[0]", "attension", "attention"),
    ("role tag", {"roles": ["ceo"]}, "roles", "ceo", "decision_maker"),
    ("format", {"format": "ebook"}, "format", "ebook", "whitepaper"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "changes", "field", "value", "valid"), CONTENT_CASES,
                         ids=[c[0] for c in CONTENT_CASES])  # fmt: skip
def test_content_with_an_unknown_name_is_refused(people, what, changes, field, value, valid):
    body = {"title": "白皮书", "format": "whitepaper", "payloads": WECOM, **changes}
    _refused(people.call("POST", "/content", "operator", json=body), field, value, valid)
    item = _item(people)
    response = people.call("PATCH", f"/content/{item}", "operator", json=changes)
    _refused(response, field, value, valid)


# (what, rule, field, bad value, a valid value)
RULE_CASES = [
    ("funnel stage", {"stage_at_least": "examinaton"}, "rule.stage_at_least", "examinaton",
     "examination"),
    ("side stage as a funnel stage", {"stage_at_least": "lapsed"}, "rule.stage_at_least",
     "lapsed", "attention"),
    ("AARRR stage", {"all": [{"event": "oa.click"}, {"stage_at_least": "activation"}]},
     "rule.all[1].stage_at_least", "activation", "interest"),
    ("stage value", {"attribute": "stage", "in": ["interest", "Intrest"]}, "rule.in[1]",
     "Intrest", "interest"),
    ("account stage value", {"attribute": "account_stage", "equals": "won"}, "rule.equals",
     "won", "action"),
    ("role value", {"attribute": "role", "equals": "technial"}, "rule.equals", "technial",
     "technical"),
    ("attribute", {"any": [{"attribute": "rol", "equals": "technical"}]},
     "rule.any[0].attribute", "rol", "role"),
    ("behaviour feature", {"attribute": "recency_day", "lte": 30}, "rule.attribute",
     "recency_day", "recency_days"),
    ("account attribute", {"account": {"attribute": "industy", "equals": "machinery"}},
     "rule.account.attribute", "industy", "industry"),
    ("engaged role", {"account": {"roles_engaged": {"includes": ["finace"]}}},
     "rule.account.roles_engaged.includes[0]", "finace", "finance"),
    ("behaviour tag", {"not": {"tag": "behaviour:loyl"}}, "rule.not.tag", "behaviour:loyl",
     "behaviour:loyal"),
    ("risk tag", {"tag": "risk:payment"}, "rule.tag", "risk:payment", "risk:payment_risk"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "rule", "field", "value", "valid"), RULE_CASES,
                         ids=[c[0] for c in RULE_CASES])  # fmt: skip
def test_a_segment_rule_with_an_unknown_name_is_refused(people, what, rule, field, value, valid):
    body = {"segment_id": "typo", "name": "Typo", "rule": rule}
    response = people.call("POST", "/segments", "admin", json=body)
    _refused(response, field, value, valid, code="invalid_segment")
    assert people.call("GET", "/segments/typo", "viewer").status_code == 404
    replaced = people.call("PUT", "/segments/deciders", "admin",
                           json={"name": "Deciders", "rule": rule})  # fmt: skip
    _refused(replaced, field, value, valid, code="invalid_segment")
    stored = people.call("GET", "/segments/deciders", "viewer").json
    assert stored["rule"] == {"attribute": "role", "equals": "decision_maker"}


def test_segment_rules_with_known_names_are_accepted(people):
    rule = {"all": [
        {"attribute": "role", "in": ["technical", "finance"]},
        {"stage_at_least": "interest"},
        {"attribute": "stage", "in": ["interest", "lapsed"]},
        {"attribute": "recency_days", "lte": 30},
        {"account": {"attribute": "industry", "equals": "machinery"}},
        {"account": {"roles_engaged": {"includes": ["technical"]}}},
        {"not": {"tag": "risk:payment_risk"}},
        {"any": [{"tag": "behaviour:loyal"}, {"tag": "vip"}]},
    ]}  # fmt: skip
    body = {"segment_id": "known", "name": "Known", "rule": rule}
    response = people.call("POST", "/segments", "admin", json=body)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize("timezone", ["Asia", "Asia/Shangai", "zone.tab"])
def test_a_tenant_time_zone_is_checked_by_name(people, timezone):
    # ZoneInfo("Asia") raises IsADirectoryError, which made this a 500
    response = people.call("PATCH", "/tenants/acme", "platform", json={"timezone": timezone})
    _refused(response, "timezone", timezone, "Asia/Shanghai")
    created = people.call("POST", "/tenants", "platform", json={
        "tenant_id": "tz-test", "name": "TZ", "mode": "b2c", "timezone": timezone,
    })  # fmt: skip
    _refused(created, "timezone", timezone, "Asia/Shanghai")


# (what, path, query, field, bad value, a valid value)
FILTER_CASES = [
    ("contacts by stage", "/contacts", {"stage": "attension"}, "stage", "attension", "attention"),
    ("contacts by role", "/contacts", {"role": "cto"}, "role", "cto", "technical"),
    ("contacts by segment", "/contacts", {"segment": "decider"}, "segment", "decider",
     "deciders"),
    ("contacts by behaviour", "/contacts", {"behaviour": "loyl"}, "behaviour", "loyl", "loyal"),
    ("accounts by stage", "/accounts", {"stage": "Action"}, "stage", "Action", "action"),
    ("accounts by risk flag", "/accounts", {"risk_flag": "churn"}, "risk_flag", "churn",
     "churn_risk"),
    ("content by stage", "/content", {"stage": "acquisition"}, "stage", "acquisition",
     "attention"),
    ("content by role", "/content", {"role": "boss"}, "role", "boss", "decision_maker"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "path", "query", "field", "value", "valid"), FILTER_CASES,
                         ids=[c[0] for c in FILTER_CASES])  # fmt: skip
def test_a_filter_naming_nothing_the_tenant_has_is_a_400(people, what, path, query, field,
                                                         value, valid):  # fmt: skip
    _refused(people.call("GET", path, "viewer", query_string=query), field, value, valid)
    known = {k: valid for k in query}
    assert people.call("GET", path, "viewer", query_string=known).status_code == 200
