"""The display names of the domain's codes, in one place for every page (docs/console.md
"Languages"): stages of the built-in models, buying roles, risk flags, roles, content formats
and channels. Msgids are English; the Chinese is the catalogue's (console/translations/). A code
without a label (a custom model's stage) is shown as the model names it."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

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
    "inactive": _l("Inactive"),
    "new": _l("New"),
    "growing": _l("Growing"),
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


def _label(table: dict, code: str | None, fallback: str = "") -> str:
    if code is None:
        return fallback
    found = table.get(code)
    return str(found) if found is not None else code


def stage(code: str | None) -> str:
    return _label(STAGES, code, "—")


def buying_role(code: str | None) -> str:
    return _label(BUYING_ROLES, code)


def risk_flag(code: str | None) -> str:
    return _label(RISK_FLAGS, code)


def moved_by(code: str | None) -> str:
    return _label(MOVED_BY, code, "—")


def user_role(code: str | None) -> str:
    return _label(USER_ROLES, code)


def content_format(code: str | None) -> str:
    return _label(CONTENT_FORMATS, code)


def channel(code: str | None) -> str:
    return _label(CHANNELS, code)


def payload(code: str | None) -> str:
    return _label(PAYLOADS, code)
