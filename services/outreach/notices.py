"""OA template messages carry service notices only (docs/platform.md "OA template messages:
service notices only"): the platform forbids marketing there, and penalises an account that
sends it. The one rule, used wherever content meets a channel: a campaign's create, change and
launch (api_campaigns.py), an edit of an item an active campaign sends (api_content.py) and the
console's wizard, which offers a channel for an item only when the rule allows it.
"""

from __future__ import annotations

from collections.abc import Iterable

# Formats that are service notices (services/outreach/model.py FORMATS): an order, appointment or
# event reminder to someone already served. Every other format is content, i.e. marketing.
NOTICE_FORMATS = frozenset({"service_notice"})
# Channels that may carry only notices.
NOTICE_ONLY_CHANNELS = frozenset({"oa_template"})
# The error code of a refusal (the API's 400 ``code``).
CODE = "oa_template_not_notice"


def is_notice(fmt: str, promotional: bool) -> bool:
    """A notice: a notice format and no offer in it (a coupon in a reminder is marketing)."""
    return fmt in NOTICE_FORMATS and not promotional


def allowed(channel: str, fmt: str, promotional: bool) -> bool:
    """Whether an item of this format and flag may go out on ``channel``."""
    return channel not in NOTICE_ONLY_CHANNELS or is_notice(fmt, promotional)


def not_notices(channel: str, items: Iterable[dict]) -> list[str]:
    """The ids of ``items`` (content_id, format, promotional) that ``channel`` may not carry."""
    return [i["content_id"] for i in items if not allowed(channel, i["format"], i["promotional"])]


def refusal(content_ids: list[str]) -> str:
    """Why a campaign on oa_template cannot send these items, and where to send them instead."""
    return (
        "oa_template carries service notices only (the platform forbids marketing there); "
        f"not a notice: {', '.join(content_ids)}. Send content on wecom_single or wecom_group, "
        "OA articles on oa_mass."
    )


def edit_refusal(campaign_ids: list[str]) -> str:
    """Why an item sent by active oa_template campaigns must stay a notice."""
    return (
        "oa_template carries service notices only (the platform forbids marketing there); "
        f"this item is sent by the active campaigns {', '.join(campaign_ids)}; keep it a "
        "service_notice without an offer, or pause them and move them to another channel."
    )
