"""The demo library `siyu dev --demo` seeds (sandbox/console_demo.py): it must show a newcomer
every part of the console, so it covers the model's funnel, the buying roles and both kinds of
campaign, and every campaign's content is an item of the library."""

from __future__ import annotations

import pytest

from sandbox.console_demo import corp_tags, library
from sandbox.population.model import STAFF
from services.outreach.channel_codes import CODE_ID
from shared.source_channels import SOURCE_CHANNELS
from shared.vocabulary import BUILTIN_STAGES, BUYING_ROLES

MODELS = {"b2b": "aisceas", "b2c": "aarrr"}


@pytest.mark.parametrize("mode", sorted(MODELS))
def test_every_funnel_stage_has_content(mode):
    covered = {stage for item in library(mode).content for stage in item["stages"]}
    assert set(BUILTIN_STAGES[MODELS[mode]]) <= covered


def test_b2b_content_speaks_to_every_buying_role():
    covered = {role for item in library("b2b").content for role in item["roles"]}
    assert covered == set(BUYING_ROLES)


@pytest.mark.parametrize("mode", sorted(MODELS))
def test_one_scheduled_series_to_groups_and_one_stage_triggered_campaign(mode):
    kinds = {
        (c["channel"], next(iter(c["trigger"])), "_series" in c) for c in library(mode).campaigns
    }
    assert ("wecom_group", "schedule", True) in kinds
    assert any(trigger == "event" for _channel, trigger, _series in kinds)


@pytest.mark.parametrize("mode", sorted(MODELS))
def test_campaign_content_names_items_of_the_library(mode):
    demo = library(mode)
    titles = {item["title"] for item in demo.content}
    for campaign in demo.campaigns:
        wanted = campaign.get("_series") or [campaign["_item"]]
        assert set(wanted) <= titles, campaign["name"]
    assert len(demo.segments) == 2
    assert len(titles) == len(demo.content)  # titles identify items when seeding again


@pytest.mark.parametrize(("tenant", "mode"), [("acme", "b2b"), ("bloom", "b2c")])
def test_channel_codes_name_what_exists_and_welcome_a_new_contact(tenant, mode):
    """A scanned customer is new to outreach (no stage yet): only a general item (no stages, no
    roles) fits it, so every code's welcome starts with one; the rest follow the stage."""
    demo = library(mode)
    items = {item["title"]: item for item in demo.content}
    tags = corp_tags(tenant, mode, seed=1, contacts=300)
    assert len(demo.codes) == 2 and any(code.get("daily_cap") for code in demo.codes)
    for code in demo.codes:
        assert code["channel"] in SOURCE_CHANNELS and set(code["staff"]) <= set(STAFF)
        assert CODE_ID.match(code["code_id"])
        first = items[code["_welcome"][0]]
        assert (first["stages"], first["roles"]) == ([], [])
        assert set(code["_welcome"]) <= set(items)
        assert set(code["_tags"]) <= set(tags)


@pytest.mark.parametrize("mode", sorted(MODELS))
def test_one_campaign_keeps_a_10_percent_holdout_on_a_contact_channel(mode):
    (held,) = [c for c in library(mode).campaigns if c.get("holdout_percent")]
    assert (held["channel"], held["holdout_percent"]) == ("wecom_single", 10)
