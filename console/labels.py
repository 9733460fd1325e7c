"""The display names of the domain's codes, in one place for every page (docs/console.md
"Languages"): stages of the built-in models, buying roles, risk flags and roles; content
formats and channels; campaigns' statuses and exclusion reasons. Msgids are English; the Chinese
is the catalogue's (console/translations/). A code without a label (a custom model's stage) is
shown as the model names it."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext

from console import stage_titles
from services.outreach.uplift import MIN_ARM, MIN_EVENTS

STAGES = {
    # AISCEAS (B2B)
    "attention": _l("Attention"),
    "interest": _l("Interest"),
    "search": _l("Search"),
    "comparison": _l("Comparison"),
    "examination": _l("Examination"),
    "action": _l("Action"),
    "share": _l("Share"),
    # AARRR (B2C)
    "acquisition": _l("Acquisition"),
    "activation": _l("Activation"),
    "retention": _l("Retention"),
    "revenue": _l("Revenue"),
    "referral": _l("Referral"),
    # side stage of both
    "lapsed": _l("Lapsed"),
}

BUYING_ROLES = {
    "decision_maker": _l("Decision maker"),
    "technical": _l("Technical"),
    "finance": _l("Finance"),
    "compliance": _l("Compliance/Legal"),
    "business": _l("Business"),
    "procurement": _l("Procurement"),
}

RISK_FLAGS = {
    "payment_risk": _l("Payment risk"),
    "churn_risk": _l("Churn risk"),
    "lost": _l("Lost customers"),
    "inactive": _l("Inactive"),
    "new": _l("New"),
    "growing": _l("Growing"),
}

# Why a contact is lost (services/segment/lost.py REASONS).
LOST_REASONS = {
    "customer_deleted_staff": _l("The customer deleted the staff member"),
    "staff_deleted_customer": _l("The staff member deleted the customer"),
}

# What moved a subject between stages (stage_history.moved_by).
MOVED_BY = {
    "event": _l("A touchpoint"),
    "time": _l("Time passing"),
    "recompute": _l("Recompute"),
    "staff": _l("Staff"),
}

# Content formats (services/outreach/model.py FORMATS).
CONTENT_FORMATS = {
    "whitepaper": _l("Whitepaper"),
    "industry_report": _l("Industry report"),
    "case_study": _l("Case study"),
    "review": _l("Review"),
    "webinar_invite": _l("Webinar invitation"),
    "class_invite": _l("Class invitation"),
    "product_spec": _l("Product specification"),
    "proposal": _l("Proposal"),
    "article": _l("Article"),
    "event_invite": _l("Event invitation"),
    "onboarding_guide": _l("Onboarding guide"),
    "promotion": _l("Promotion"),
    "service_notice": _l("Service notice"),
}

# Sending channels (shared/vocabulary.py CHANNELS).
CHANNELS = {
    "wecom_single": _l("WeCom 1:1 message"),
    "wecom_group": _l("WeCom customer group"),
    "oa_template": _l("OA template message"),
    "oa_mass": _l("OA mass send"),
    "oa_custom": _l("OA customer-service message"),
}

# A content item's payloads (content.payloads keys): the WeCom one serves both WeCom channels.
PAYLOADS = {
    "wecom": _l("WeCom (1:1 and customer groups)"),
    "oa_template": CHANNELS["oa_template"],
    "oa_mass": CHANNELS["oa_mass"],
    "oa_custom": CHANNELS["oa_custom"],
}

USER_ROLES = {
    "viewer": _l("Viewer"),
    "operator": _l("Operator"),
    "admin": _l("Administrator"),
}


CAMPAIGN_STATUSES = {
    "draft": _l("Draft"),
    "active": _l("Active"),
    "paused": _l("Paused"),
    "ended": _l("Ended"),
    "archived": _l("Archived"),
}

RUN_STATUSES = {
    "pending": _l("Pending"),
    "running": _l("Running"),
    "done": _l("Done"),
    "failed": _l("Failed"),
    "cancelled": _l("Cancelled"),
}

DELIVERY_STATUSES = {
    "pending": _l("Pending"),
    "sending": _l("Sending"),
    "sent": _l("Sent"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
    "excluded": _l("Excluded"),
    "unknown": _l("Unknown (may have gone out)"),
}

# Why a recipient is left out (services/outreach/policies.py; ``excluded:<rule>`` is the
# campaign's own exclusion rule, see ``exclusion``).
EXCLUSIONS = {
    "no_wecom_id": _l("No WeCom contact"),
    "no_openid": _l("Not an OA follower (no openid)"),
    "deleted_contact": _l("Deleted the WeCom contact"),
    "unsubscribed": _l("Unfollowed the OA"),
    "group_dismissed": _l("Group dismissed"),
    "no_discount_unknown_audience": _l("Promotion to an OA tag of a B2B tenant"),
    "series_finished": _l("Has received the whole series"),
    "no_fitting_content": _l("No content fits the stage and role"),
    "not_a_notice": _l("Not a service notice (OA template messages carry notices only)"),
    "no_discount_comparing": _l("No discounts while comparing (B2B)"),
    "no_discount_unflagged_model": _l("No discounts: the model flags no evaluating stage"),
    "no_discount_b2b": _l("No promotions to B2B contacts"),
    "cap_day": _l("Daily frequency cap"),
    "cap_week": _l("Weekly frequency cap"),
    "group_cap_day": _l("Group daily frequency cap"),
    "group_cap_week": _l("Group weekly frequency cap"),
    "quota_wecom_customer_day": _l("WeCom daily quota per customer"),  # runs before 0022
    "platform_budget": _l("WeCom group-send budget used for this period"),
    "outside_cs_window": _l("Outside the 48-hour customer-service window"),
    "quota_oa_custom": _l("OA customer-service quota"),
    "quota_oa_mass_month": _l("OA monthly mass-message quota"),
    "erased": _l("Erased (privacy request)"),
    "held_out": _l("Held out (the campaign's control group)"),
}
EXCLUDED_BY_RULE = _l("Campaign exclusion rule: %(rule)s")

# The rules of a campaign's ``exclude`` (services/outreach/model.py FilterSchema's fields; every
# one labelled: tests/unit/console/test_labels.py).
EXCLUSION_RULES = {
    "segments": _l("segments"),
    "stages": _l("stages"),
    "roles": _l("buying roles"),
    "accounts": _l("accounts"),
    "account_stages": _l("account stages"),
    "risk_flags": _l("risk flags"),
    "tags": _l("tags"),
    "behaviour": _l("behaviour"),
    "groups": _l("customer groups"),
    "contacts": _l("contacts"),
    "mode": _l("B2B or B2C"),
    "oa_followers": _l("OA followers"),
    "min_score": _l("minimum score"),
    "oa_tag_id": _l("OA tag"),
}


def _label(table: dict, code: str | None, fallback: str = "") -> str:
    if code is None:
        return fallback
    found = table.get(code)
    return str(found) if found is not None else code


def stage(code: str | None) -> str:
    """As the tenant's custom model titles the stage, even one reusing a built-in name (its
    model's words win); else a built-in stage's label; else its code."""
    if code is None:
        return "—"
    title = stage_titles.titles().get(code)
    return title if title else _label(STAGES, code)


def buying_role(code: str | None) -> str:
    return _label(BUYING_ROLES, code)


def risk_flag(code: str | None) -> str:
    return _label(RISK_FLAGS, code)


def lost_reason(code: str | None) -> str:
    return _label(LOST_REASONS, code)


def moved_by(code: str | None) -> str:
    return _label(MOVED_BY, code, "—")


def user_role(code: str | None) -> str:
    return _label(USER_ROLES, code)


# A segment's build (GET /api/v1/segments: status).
SEGMENT_STATUSES = {
    "building": _l("Building"),
    "ready": _l("Ready"),
    "failed": _l("Disabled (rule failed)"),
}


def segment_status(code: str | None) -> str:
    return _label(SEGMENT_STATUSES, code, "—")


def segment_subject() -> str:
    """What a segment's members are: contacts (docs/domain.md "Segments")."""
    return str(_l("Contacts"))


def content_format(code: str | None) -> str:
    return _label(CONTENT_FORMATS, code)


def channel(code: str | None) -> str:
    return _label(CHANNELS, code)


def campaign_status(code: str | None) -> str:
    return _label(CAMPAIGN_STATUSES, code)


def run_status(code: str | None) -> str:
    return _label(RUN_STATUSES, code)


def delivery_status(code: str | None) -> str:
    return _label(DELIVERY_STATUSES, code)


def exclusion(code: str | None) -> str:
    """An exclusion reason; the campaign's own rule (``excluded:segments``) says which."""
    if code and code.startswith("excluded:"):
        rule = code.removeprefix("excluded:")
        return str(EXCLUDED_BY_RULE) % {"rule": _label(EXCLUSION_RULES, rule)}
    return _label(EXCLUSIONS, code, "—")


def payload(code: str | None) -> str:
    return _label(PAYLOADS, code)


# Touchpoint types as ingest writes them (shared/envelope.py EVENT_TYPES; every one labelled:
# tests/unit/console/test_labels.py).
EVENT_TYPES = {
    "oa.subscribe": _l("Followed the Official Account"),
    "oa.unsubscribe": _l("Unfollowed the Official Account"),
    "oa.scan": _l("Scanned a QR code"),
    "oa.click": _l("Clicked a menu"),
    "oa.view": _l("Opened a menu link"),
    "oa.location": _l("Reported a location"),
    "oa.template_send_finished": _l("Template message result"),
    "oa.mass_send_finished": _l("Mass send result"),
    "oa.message": _l("Sent a message"),
    "wecom.contact.added": _l("Added as a WeCom contact"),
    "wecom.contact.half_added": _l("Added as a WeCom contact (unconfirmed)"),
    "wecom.contact.edited": _l("Contact edited by staff"),
    "wecom.contact.deleted": _l("Contact deleted by staff"),
    "wecom.contact.follow_user_deleted": _l("Deleted the staff member"),
    "wecom.contact.transfer_failed": _l("Contact transfer failed"),
    "wecom.contact.enriched": _l("Profile fetched from WeCom"),
    "wecom.chat.created": _l("Customer group created"),
    "wecom.chat.member_joined": _l("Joined a customer group"),
    "wecom.chat.member_left": _l("Left a customer group"),
    "wecom.chat.member_enriched": _l("Group join source fetched from WeCom"),
    "wecom.chat.owner_changed": _l("Group owner changed"),
    "wecom.chat.renamed": _l("Group renamed"),
    "wecom.chat.notice_changed": _l("Group notice changed"),
    "wecom.chat.dismissed": _l("Customer group dismissed"),
    "wecom.tag.changed": _l("Corp tag changed"),
    "link.clicked": _l("Opened a tracked link"),
    "biz.registered": _l("Registered"),
    "biz.lead.created": _l("Lead created"),
    "biz.demo.requested": _l("Requested a demo"),
    "biz.trial.started": _l("Trial started"),
    "biz.trial.ended": _l("Trial ended"),
    "biz.quote.sent": _l("Quotation sent"),
    "biz.contract.signed": _l("Contract signed"),
    "biz.order.paid": _l("Order paid"),
    "biz.order.refunded": _l("Order refunded"),
    "biz.invoice.issued": _l("Invoice issued"),
    "biz.invoice.overdue": _l("Invoice overdue"),
    "biz.payment.received": _l("Payment received"),
    "biz.webinar.registered": _l("Registered for a webinar"),
    "biz.webinar.attended": _l("Attended a webinar"),
    "biz.event.attended": _l("Attended an event"),
    "biz.content.downloaded": _l("Downloaded content"),
    "biz.complaint.filed": _l("Filed a complaint"),
    "biz.contact.updated": _l("Contact updated from CRM"),
    "biz.account.updated": _l("Account updated from CRM"),
}


def event_type(code: str | None) -> str:
    return _label(EVENT_TYPES, code, "—")


# What the audit log's entries record (shared/api/audit.py's ``action``); an action without a
# label is shown as its code.
AUDIT_ACTIONS = {
    "console.login": _l("Logged in"),
    "console.login_failed": _l("Failed login"),
    "console.lockout": _l("User locked out"),
    "console.login_throttled": _l("Logins from an address throttled"),
    "console.logout": _l("Logged out"),
    "console.password_change": _l("Changed own password"),
    "user.create": _l("User created"),
    "user.role": _l("User's role changed"),
    "user.unlock": _l("User unlocked"),
    "user.remove": _l("User removed"),
    "token.create": _l("API token created"),
    "token.revoke": _l("API token revoked"),
    "ingest_token.create": _l("Event API token created"),
    "ingest_token.revoke": _l("Event API token revoked"),
    "settings.outreach": _l("Outreach settings changed"),
    "tenant.create": _l("Tenant created"),
    "tenant.update": _l("Tenant changed"),
    "tenant.delete": _l("Tenant deleted"),
    "content.create": _l("Content created"),
    "content.update": _l("Content changed"),
    "content.archive": _l("Content archived"),
    "campaign.create": _l("Campaign created"),
    "campaign.update": _l("Campaign changed"),
    "campaign.launch": _l("Campaign launched"),
    "campaign.pause": _l("Campaign paused"),
    "campaign.archive": _l("Campaign archived"),
    "campaign.promotion_override": _l("Campaign promotion guard overridden"),
    "segment.create": _l("Segment created"),
    "segment.replace": _l("Segment changed"),
    "segment.delete": _l("Segment deleted"),
    "segment.disable": _l("Segment disabled"),
    "segment.backfill": _l("Segment backfilled"),
    "lifecycle.create": _l("Lifecycle model created"),
    "lifecycle.replace": _l("Lifecycle model changed"),
    "lifecycle.delete": _l("Lifecycle model deleted"),
    "contact.stage_override": _l("Contact's stage set by staff"),
    "contact.role_override": _l("Contact's buying role set by staff"),
    "account.stage_override": _l("Account's stage set by staff"),
    "account.merge": _l("Accounts merged"),
    "contact.erase": _l("Person erased"),
    "channel_code.create": _l("Channel code created"),
    "channel_code.update": _l("Channel code changed"),
    "channel_code.delete": _l("Channel code deleted"),
    "group_welcome.create": _l("Group welcome template created"),
    "group_welcome.update": _l("Group welcome template changed"),
    "group_welcome.delete": _l("Group welcome template deleted"),
    "user.wecom_userid": _l("User's WeCom member linked"),
}


def audit_action(code: str | None) -> str:
    return _label(AUDIT_ACTIONS, code)


# "Active" is a campaign's status too, said differently in Chinese: a context keeps them apart.
TOKEN_STATUS = {
    "active": lazy_pgettext("token status", "Active"),
    "expired": _l("Expired"),
    "revoked": _l("Revoked"),
}


def token_status(code: str | None) -> str:
    return _label(TOKEN_STATUS, code)


# --- effect report ---
# What an effect report's numbers allow one to say (services/outreach/uplift.py's verdicts).
EFFECT_VERDICTS = {
    "no_holdout": _l("No holdout to compare with: give the campaign a holdout share."),
    "item_without_holdout": _l(
        "No contact was held out of this item: a series holds contacts out where they first "
        "meet it. Compare at the campaign's level."
    ),
    "too_small": _l(
        "Sample too small to tell: each group needs at least %(arm)s contacts and "
        "the two together at least %(events)s stage advances."
    ),
    "uplift": _l("The campaign moved contacts: their advance rate is higher than the holdout's."),
    "negative": _l("Contacts who received it advanced less than the holdout."),
    "no_difference": _l("No clear difference from the holdout: the interval includes zero."),
}


def effect_verdict(code: str | None) -> str:
    found = EFFECT_VERDICTS.get(code or "")
    return str(found) % {"arm": MIN_ARM, "events": MIN_EVENTS} if found is not None else code or ""


# A staff member's part of a group send (docs/platform.md "Group sends are staff tasks").
GROUP_TASK_STATUSES = {
    "pending": _l("Waiting for the member"),
    "sent": _l("Sent by the member"),
    "failed": _l("Sent, none received"),
    "cancelled": _l("Cancelled"),
    "expired": _l("Expired (not confirmed in 3 days)"),
}


def group_task_status(code: str | None) -> str:
    return _label(GROUP_TASK_STATUSES, code)


# Welcome on add (services/outreach/welcome.py) and why none was sent.
WELCOME_STATUSES = {
    "claimed": _l("Sending"),
    "sent": _l("Sent"),
    "already_sent": _l("Already sent (by another app)"),
    "missed": _l("Missed (past WeCom's 20 s)"),
    "failed": _l("Failed"),
    "no_content": _l("No welcome fits"),
}


def welcome_status(code: str | None) -> str:
    return _label(WELCOME_STATUSES, code, "—")


# Source channels (shared/source_channels.py SOURCE_CHANNELS) and channel code kinds.
SOURCE_CHANNELS = {
    "expo": _l("Trade fair"),
    "article": _l("Article"),
    "ad": _l("Advertising"),
    "sales_card": _l("Sales card"),
    "website": _l("Website"),
    "event": _l("Event"),
    "store": _l("Store"),
    "referral": _l("Referral"),
    "other": _l("Other"),
}
CODE_KINDS = {"contact": _l("Contact me (staff)"), "group": _l("Group join code")}
CAP_STATUSES = {"ok": _l("Within the cap"), "all_capped": _l("Every staff member reached the cap")}


def source_channel(code: str | None) -> str:
    return _label(SOURCE_CHANNELS, code, "—")


def code_kind(code: str | None) -> str:
    return _label(CODE_KINDS, code)


def cap_status(code: str | None) -> str:
    return _label(CAP_STATUSES, code)
