"""What the settings pages read and how their forms become the API's bodies (docs/console.md
"Settings", "API tokens", "Audit log"): the outreach settings as GET/PUT /api/v1/settings/outreach
load them (OutreachSettingsSchema), a token's expiry typed as on the command line, the audit log's
page. The writes themselves are the services' functions, called by console/views_settings.py."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.outreach.model import OutreachSettingsSchema
from shared.api.audit import list_audit
from shared.expiry import check_expiry, parse_expires

# The form's fields: (section, field, label); every one a whole number the schema checks.
NUMBERS = (
    ("caps", "contact_per_day", _l("Messages per contact per day")),
    ("caps", "contact_per_week", _l("Messages per contact per week")),
    ("caps", "group_per_day", _l("Messages per customer group per day")),
    ("caps", "group_per_week", _l("Messages per customer group per week")),
    ("quotas", "oa_mass_per_month", _l("Official Account mass messages per follower per month")),
    ("quotas", "oa_custom_window_hours", _l("Official Account service window (hours)")),
    ("quotas", "oa_custom_per_window", _l("Official Account service messages per window")),
    # Group sends are staff tasks (docs/platform.md): reminding members who have not sent.
    ("reminders", "first_after_minutes", _l("First reminder after (minutes)")),
    ("reminders", "every_minutes", _l("Then every (minutes)")),
    ("reminders", "per_day", _l("Reminders per group send per 24 h (at most 3)")),
)
# The corp's WeCom rule for group sends (docs/platform.md "The platform's budget of group sends").
BUDGET_MODES = (
    ("month", _l("As many a month as it has days (WeCom's default)")),
    ("week", _l("7 a week")),
    ("day", _l("1 a day")),
)
AUDIT_PAGE = 50
MAX_NUMBER = 1_000_000


def settings_form(stored: dict) -> dict:
    """The form's values (strings, as typed) of stored settings."""
    form = {f"{section}.{name}": str(stored[section][name]) for section, name, _ in NUMBERS}
    form["quotas.wecom_budget"] = stored["quotas"]["wecom_budget"]
    quiet = stored.get("quiet_hours")
    form["quiet"] = "1" if quiet else ""
    form["quiet_start"] = quiet["start"] if quiet else "21:00"
    form["quiet_end"] = quiet["end"] if quiet else "08:00"
    return form


def settings_body(form: dict, stored: dict) -> tuple[dict | None, dict]:
    """The PUT body of a submitted form (the fields the page does not show kept as stored), or
    None and the errors by form field."""
    errors: dict = {}
    body: dict = {
        "caps": {},
        "quotas": {},
        "reminders": {"enabled": stored["reminders"]["enabled"]},
    }
    for section, name, _ in NUMBERS:
        key = f"{section}.{name}"
        if section == "reminders" and key not in form:  # a form from before: kept as stored
            body[section][name] = stored[section][name]
            continue
        text = form.get(key, "").strip()
        # isdigit() alone takes "²" and other digits int() does not read: ASCII ones only.
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_NUMBER:
            errors[key] = _l("A whole number from 0 to 1000000.")
            continue
        body[section][name] = int(text)
    body["quotas"]["wecom_budget"] = form.get("quotas.wecom_budget", "").strip()
    if form.get("quiet"):
        body["quiet_hours"] = {"start": form.get("quiet_start", "").strip(),
                               "end": form.get("quiet_end", "").strip()}  # fmt: skip
    else:
        body["quiet_hours"] = None
    body["min_schedule_interval_minutes"] = stored["min_schedule_interval_minutes"]
    body["guard_unflagged_model"] = stored["guard_unflagged_model"]
    body["default_welcome"] = stored["default_welcome"]  # set through the API (welcome on add)
    if errors:
        return None, errors
    try:
        return OutreachSettingsSchema().load(body), {}
    except ValidationError as exc:
        return None, _schema_errors(exc.messages)


def _schema_errors(messages: dict) -> dict:
    errors: dict = {}
    for section, fields in messages.items():
        if section == "quiet_hours":
            for name in fields if isinstance(fields, dict) else ("start",):
                errors[f"quiet_{name}"] = _l("A time of day as HH:MM, e.g. 21:00.")
        elif isinstance(fields, dict):
            for name in fields:
                errors[f"{section}.{name}"] = (
                    _l("Choose one of the listed rules.")
                    if name == "wecom_budget"
                    else _l("This number is out of range.")
                )
        else:
            errors["form"] = _l("The settings were refused: %(why)s", why=str(fields))
    return errors


def token_expiry(text: str, zone: str) -> datetime | None:
    """A token's expiry as typed: empty for never, a duration (30d, 12h, 90m, 2w) or a date or
    date and time, in the tenant's zone unless it names one; BadExpiry otherwise."""
    text = text.strip()
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return parse_expires(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(zone))
    return check_expiry(at)


EXPIRY_ERROR = _l(
    "Give a duration such as 30d, 12h, 90m or 2w, or a date such as 2027-01-31, in the future "
    "and at most ten years ahead; leave it empty for a token that never expires."
)


def audit_page(conn, tenant_id: str, *, action=None, actor=None, before=None) -> dict:
    """One page of the tenant's audit log, newest first, older than entry ``before``."""
    rows = list_audit(
        conn, tenant_id=tenant_id, limit=AUDIT_PAGE + 1, after_id=before, action=action,
        actor=actor,
    )  # fmt: skip
    more = len(rows) > AUDIT_PAGE
    rows = rows[:AUDIT_PAGE]
    return {"rows": rows, "next": rows[-1]["id"] if more else None}
