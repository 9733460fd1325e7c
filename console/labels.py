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
}


def audit_action(code: str | None) -> str:
    return _label(AUDIT_ACTIONS, code)


TOKEN_STATUS = {
    "active": _l("Active"),
    "expired": _l("Expired"),
    "revoked": _l("Revoked"),
}


def token_status(code: str | None) -> str:
    return _label(TOKEN_STATUS, code)
