"""OA template messages carry service notices only (services/outreach/notices.py, docs/platform.md
"OA template messages: service notices only"): every format × promotional × channel."""

from __future__ import annotations

import pytest

from services.outreach import notices
from services.outreach.model import FORMATS, ContentInSchema
from shared.vocabulary import CHANNELS

CASES = [
    # (format, promotional, channel, allowed)
    ("service_notice", False, "oa_template", True),
    ("service_notice", True, "oa_template", False),  # a coupon in a reminder is marketing
    ("promotion", True, "oa_template", False),
    ("whitepaper", False, "oa_template", False),
    ("webinar_invite", False, "oa_template", False),
    ("event_invite", False, "oa_template", False),
    ("case_study", True, "oa_template", False),
    # every other channel carries content and notices alike
    *[(f, p, c, True) for c in CHANNELS if c != "oa_template"
      for f in ("whitepaper", "promotion", "service_notice") for p in (False, True)],
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "promotional", "channel", "allowed"), CASES)
def test_the_rule(fmt, promotional, channel, allowed):
    assert notices.allowed(channel, fmt, promotional) is allowed


@pytest.mark.parametrize("fmt", FORMATS)
def test_only_a_notice_format_without_an_offer_goes_on_oa_template(fmt):
    assert notices.allowed("oa_template", fmt, False) is (fmt == "service_notice")
    assert notices.allowed("oa_template", fmt, True) is False


def test_the_notice_formats_are_formats_an_item_may_have():
    assert set(FORMATS) >= notices.NOTICE_FORMATS
    assert set(CHANNELS) >= notices.NOTICE_ONLY_CHANNELS
    loaded = ContentInSchema().load({"title": "预约提醒", "format": "service_notice", "payloads": {
        "oa_template": {"template_id": "T", "data": {"first": {"value": "您的预约"}}}}})  # fmt: skip
    assert loaded["format"] == "service_notice"


def test_the_refusal_names_the_items_the_rule_and_the_channels_to_use():
    items = [
        {"content_id": "cnt_ok", "format": "service_notice", "promotional": False},
        {"content_id": "cnt_wp", "format": "whitepaper", "promotional": False},
        {"content_id": "cnt_promo", "format": "promotion", "promotional": True},
    ]
    refused = notices.not_notices("oa_template", items)
    assert refused == ["cnt_wp", "cnt_promo"]
    assert notices.not_notices("wecom_single", items) == []
    message = notices.refusal(refused)
    assert "cnt_wp, cnt_promo" in message
    assert "service notices only" in message and "marketing" in message
    assert all(c in message for c in ("wecom_single", "wecom_group", "oa_mass"))
