"""Campaign and content names against the tenant's catalogue (siyu.catalogue.v1): a custom model's
stages and the segment ids are checked like the built-in names, and refused with a reason while
no catalogue has arrived. Pure: TenantNames in, Unknowns out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from marshmallow import ValidationError

from services.outreach.catalogue import Catalogue
from services.outreach.names import (
    campaign_unknowns,
    content_unknowns,
    names_of,
    settings_unknowns,
)
from shared import messages
from shared.api.names import unknown_names
from shared.vocabulary import stages_of

FUNNEL = Catalogue("funnel", ("lead", "trial", "customer", "churned"), ("it-leads", "vip"))
FELL_BACK = Catalogue("aisceas", stages_of("aisceas"), ())  # the custom model is missing

WITH_CATALOGUE = names_of("funnel", FUNNEL)
WITHOUT_CATALOGUE = names_of("funnel", None)
BUILTIN_ONLY = names_of("aisceas", None)


def test_names_of_picks_the_source_of_each_name():
    assert WITH_CATALOGUE.stages == FUNNEL.stages
    assert WITH_CATALOGUE.segments == FUNNEL.segments
    assert WITHOUT_CATALOGUE.stages is None
    assert WITHOUT_CATALOGUE.segments is None
    # Built-in stages come from the vocabulary, with or without a catalogue.
    assert BUILTIN_ONLY.stages == stages_of("aisceas")
    assert BUILTIN_ONLY.segments is None
    assert names_of("aisceas", FUNNEL).stages == stages_of("aisceas")
    # Segment evaluates with the mode's default when the custom model is missing: its names.
    assert names_of("funnel", FELL_BACK).model == "aisceas"
    assert names_of("funnel", FELL_BACK).stages == stages_of("aisceas")


NOT_YET = "has not published this tenant's catalogue"

# (what, names, campaign body, [(field, bad value, a valid value or the unchecked reason)])
CASES = [
    ("custom stage known", WITH_CATALOGUE, {"audience": {"stages": ["trial"]}}, []),
    ("custom stage misspelled", WITH_CATALOGUE, {"audience": {"stages": ["trail"]}},
     [("audience.stages[0]", "trail", "trial")]),
    ("custom side stage", WITH_CATALOGUE, {"audience": {"stages": ["churned"]}}, []),
    ("built-in stage in a custom tenant", WITH_CATALOGUE,
     {"audience": {"stages": ["lead", "attention"]}}, [("audience.stages[1]", "attention", "lead")]),
    ("custom account stage", WITH_CATALOGUE, {"audience": {"account_stages": ["custmer"]}},
     [("audience.account_stages[0]", "custmer", "customer")]),
    ("excluded custom stage", WITH_CATALOGUE, {"audience": {"exclude": {"stages": ["led"]}}},
     [("audience.exclude.stages[0]", "led", "lead")]),
    ("trigger stage", WITH_CATALOGUE,
     {"trigger": {"event": {"stage_entered": "custommer"}}},
     [("trigger.event.stage_entered", "custommer", "customer")]),
    ("segment known", WITH_CATALOGUE, {"audience": {"segments": ["vip"]}}, []),
    ("segment unknown", WITH_CATALOGUE, {"audience": {"segments": ["vip", "it-lead"]}},
     [("audience.segments[1]", "it-lead", "it-leads")]),
    ("excluded segment unknown", WITH_CATALOGUE,
     {"audience": {"exclude": {"segments": ["nobody"]}}},
     [("audience.exclude.segments[0]", "nobody", "vip")]),
    ("custom stage, no catalogue yet", WITHOUT_CATALOGUE, {"audience": {"stages": ["trial"]}},
     [("audience.stages[0]", "trial", NOT_YET)]),
    ("trigger stage, no catalogue yet", WITHOUT_CATALOGUE,
     {"trigger": {"event": {"stage_entered": "trial"}}},
     [("trigger.event.stage_entered", "trial", NOT_YET)]),
    ("segment, no catalogue yet", BUILTIN_ONLY, {"audience": {"segments": ["vip"]}},
     [("audience.segments[0]", "vip", NOT_YET)]),
    ("built-in stages need no catalogue", BUILTIN_ONLY, {"audience": {"stages": ["interest"]}},
     []),
    ("built-in misspelled, no catalogue", BUILTIN_ONLY, {"audience": {"stages": ["intrest"]}},
     [("audience.stages[0]", "intrest", "interest")]),
    ("no names, no catalogue", WITHOUT_CATALOGUE, {"audience": {"roles": ["technical"]}}, []),
]  # fmt: skip


@pytest.mark.parametrize(("names", "body", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_campaign_names_against_the_catalogue(names, body, expected):
    found = campaign_unknowns(body, names)
    assert [(u.field, u.value) for u in found] == [(f, v) for f, v, _ in expected]
    for unknown, (_, _, hint) in zip(found, expected, strict=True):
        assert hint in unknown.message() + " ".join(unknown.valid)


def test_an_unknown_segment_is_a_400_with_the_valid_ids_and_a_guess():
    error = unknown_names(campaign_unknowns({"audience": {"segments": ["vips"]}}, WITH_CATALOGUE))
    assert error.status == 400
    assert error.code == "invalid_request"
    assert error.details["valid"] == {"audience.segments[0]": ["it-leads", "vip"]}
    assert error.details["audience.segments[0]"] == [
        "Unknown segment 'vips'. Valid: it-leads, vip. Did you mean 'vip'?"
    ]


def test_without_a_catalogue_the_400_says_why_and_lists_nothing():
    error = unknown_names(campaign_unknowns({"audience": {"stages": ["trial"]}}, WITHOUT_CATALOGUE))
    (message,) = error.details["audience.stages[0]"]
    assert message.startswith("Cannot check stage of the funnel model 'trial': the segment service")
    assert "siyu segment consume" in message
    assert error.details["valid"] == {"audience.stages[0]": []}


@pytest.mark.parametrize(
    ("names", "stages", "fields"),
    [
        (WITH_CATALOGUE, ["lead", "trail"], ["stages[1]"]),
        (WITHOUT_CATALOGUE, ["lead"], ["stages[0]"]),
        (WITHOUT_CATALOGUE, [], []),
        (BUILTIN_ONLY, ["interest"], []),
    ],
)
def test_content_stage_tags_against_the_catalogue(names, stages, fields):
    assert [u.field for u in content_unknowns({"stages": stages}, names)] == fields


CATALOGUE_VALUE = {
    "tenant_id": "acme",
    "model": {"name": "funnel", "builtin": False, "stages": ["lead", "trial"],
              "side_stages": ["churned"], "flags": {"trial": ["evaluating"]}},
    "segments": [{"segment_id": "vip", "name": "VIP"}],
    "published_at": datetime(2026, 11, 29, 10, tzinfo=UTC),
}  # fmt: skip


def test_the_catalogue_message_round_trips_through_its_schema():
    decoded = messages.decode(
        messages.CATALOGUE, messages.encode(messages.CATALOGUE, CATALOGUE_VALUE)
    )
    assert {**decoded, "schema": None} == {**CATALOGUE_VALUE, "schema": None}


def test_a_catalogue_from_before_stage_flags_is_still_read():
    model = {k: v for k, v in CATALOGUE_VALUE["model"].items() if k != "flags"}
    old = json.dumps({**CATALOGUE_VALUE, "schema": "catalogue/1", "model": model,
                      "published_at": "2026-11-29T10:00:00+00:00"}).encode()  # fmt: skip
    assert messages.decode(messages.CATALOGUE, old)["model"]["flags"] is None


@pytest.mark.parametrize(
    ("names", "setting", "fields"),
    [
        (WITH_CATALOGUE, ["lead", "trail"], ["guard_unflagged_model[1]"]),
        (WITH_CATALOGUE, "block_all_b2b_promotions", []),
        (WITHOUT_CATALOGUE, ["lead"], ["guard_unflagged_model[0]"]),  # cannot be checked yet
        (BUILTIN_ONLY, ["comparison", "demo"], ["guard_unflagged_model[1]"]),
    ],
)
def test_stages_the_unflagged_guard_lists_are_the_models(names, setting, fields):
    found = settings_unknowns({"guard_unflagged_model": setting}, names)
    assert [u.field for u in found] == fields


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"name": "funnel", "builtin": False}},  # no stages
        {"segments": [{"name": "VIP"}]},  # no segment_id
        {"published_at": "2026-11-29T10:00:00"},  # no offset
        {"schema": "catalogue/2"},
    ],
)
def test_a_catalogue_that_breaks_the_contract_is_refused(change):
    with pytest.raises(ValidationError):
        messages.encode(messages.CATALOGUE, {**CATALOGUE_VALUE, **change})
