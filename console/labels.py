"""The display names of the domain's codes, in one place for every page (docs/console.md
"Languages"): stages of the built-in models, buying roles, risk flags and roles. Msgids are
English; the Chinese is the catalogue's (console/translations/). A code without a label (a
custom model's stage) is shown as the model names it."""

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
