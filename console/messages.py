"""The validation messages a form can show, in the reader's language (docs/console.md
"Languages"). The services answer in English (marshmallow's standard messages, the names check of
shared/api/names.py, the segment grammar, the schedule and content checks, a campaign's status
conflicts); a console page passes each through ``translated``, which matches it against a table
of patterns and rebuilds it from the catalogue, keeping the names and numbers it carries. A
message the table does not know is shown as it came, its text also in a tooltip.

tests/unit/console/test_messages.py produces every message from the real schemas and functions,
so a changed message fails there rather than reaching a form in English.
"""

from __future__ import annotations

import html
import re

from flask_babel import lazy_gettext as _l

from console import labels

# What a name should be, in "Unknown <kind> 'x'" (shared/api/names.py and model.py _one_of).
KINDS = {
    "stage": _l("stage"),
    "funnel stage": _l("stage"),
    "buying role": _l("buying role"),
    "role": _l("buying role"),
    "risk flag": _l("risk flag"),
    "segment": _l("segment"),
    "channel": _l("channel"),
    "format": _l("format"),
    "content item": _l("content item"),
    "contact attribute": _l("contact attribute"),
    "account attribute": _l("account attribute"),
    "event type": _l("event type"),
    "value": _l("value"),
    "behaviour": _l("behaviour"),
    "behaviour tag": _l("behaviour tag"),
    "risk tag": _l("risk tag"),
    "stage flag": _l("stage flag"),
    "time zone": _l("time zone"),
}

# A repr'd value ('x', "x's", 12, None) or any text; a kind only one KINDS knows, so that
# "Unknown condition kind; expected ..." is left to its own rule, not read as kind "condition".
_GROUPS = {
    "value": r"""'[^']*'|"[^"]*"|\S+""",
    "close": r"""'[^']*'|"[^"]*"|\S+""",
    "kind": "|".join(re.escape(k) for k in sorted(KINDS, key=len, reverse=True)),
}


def _p(pattern: str) -> re.Pattern:
    """A message pattern: ``{name}`` stands for any text, kept and put back in the translation."""

    def group(m: re.Match) -> str:
        return f"(?P<{m[1]}>{_GROUPS.get(m[1], '.+?')})"

    return re.compile("^" + re.sub(r"\{(\w+)\}", group, pattern) + "$", re.DOTALL)


# (pattern, translation): the pattern's {names} fill the translation's %(names)s.
RULES: list[tuple[re.Pattern, object]] = [
    # marshmallow's standard messages
    (_p(r"Missing data for required field\."), _l("Required.")),
    (_p(r"Field may not be null\."), _l("Required.")),
    # Length checks a text's characters and a list's items alike; the message does not say which
    (_p(r"Shorter than minimum length {min}\."), _l("A length of at least %(min)s.")),
    (_p(r"Longer than maximum length {max}\."), _l("A length of at most %(max)s.")),
    (
        _p(r"Length must be between {min} and {max}\."),
        _l("A length from %(min)s to %(max)s."),
    ),
    (_p(r"Length must be {equal}\."), _l("A length of exactly %(equal)s.")),
    (
        _p(r"Must be greater than or equal to {min} and less than or equal to {max}\."),
        _l("A number from %(min)s to %(max)s."),
    ),
    (_p(r"Must be greater than or equal to {min}\."), _l("At least %(min)s.")),
    (_p(r"Must be less than or equal to {max}\."), _l("At most %(max)s.")),
    (_p(r"Must be greater than {min}\."), _l("More than %(min)s.")),
    (_p(r"Must be less than {max}\."), _l("Less than %(max)s.")),
    (_p(r"Must be one of: {choices}\."), _l("Must be one of: %(choices)s.")),
    (_p(r"Not a valid integer\."), _l("Not a whole number.")),
    (_p(r"Not a valid number\."), _l("Not a number.")),
    (_p(r"Not a valid string\."), _l("Not text.")),
    (_p(r"Not a valid boolean\."), _l("Not yes or no (true or false).")),
    (_p(r"Not a valid boolean \(true or false\)\."), _l("Not yes or no (true or false).")),
    (_p(r"Not a valid list\."), _l("Not a list.")),
    (_p(r"Not a valid mapping type\."), _l("Not a mapping.")),
    (_p(r"Invalid input type\."), _l("Not a value of the right type.")),
    (_p(r"Not a valid URL\."), _l("Not a valid web address (URL).")),
    (_p(r"Not a valid email address\."), _l("Not a valid email address.")),
    (_p(r"Not a valid datetime\."), _l("Not a valid date and time.")),
    (_p(r"Not a valid date\."), _l("Not a valid date.")),
    (_p(r"Not a valid time\."), _l("Not a valid time of day.")),
    (_p(r"Unknown field\."), _l("Not a field this form takes.")),
    (_p(r"Invalid value\."), _l("Not a valid value.")),
    # names the tenant does not have (shared/api/names.py, model.py _one_of)
    (
        _p(r"Unknown {kind} {value}\. Valid: {valid}\. Did you mean {close}\?"),
        _l("Unknown %(kind)s %(value)s. Valid: %(valid)s. Did you mean %(close)s?"),
    ),
    (
        _p(r"Unknown {kind} {value}\. Valid: {valid}\."),
        _l("Unknown %(kind)s %(value)s. Valid: %(valid)s."),
    ),
    (
        _p(r"Unknown {kind} {value}\. Did you mean {close}\?"),
        _l("Unknown %(kind)s %(value)s. Did you mean %(close)s?"),
    ),
    (_p(r"Unknown {kind} {value}\."), _l("Unknown %(kind)s %(value)s.")),
    (
        _p(r"Unknown time zone {value}\. Give an IANA name such as Asia/Shanghai\."),
        _l("Unknown time zone %(value)s. Give an IANA name such as Asia/Shanghai."),
    ),
    (_p(r"Cannot check {kind} {value}: {why}"), _l("Cannot check %(kind)s %(value)s: %(why)s")),
    # the segment grammar (services/segment/lifecycle/grammar.py)
    (_p(r"Give gte and/or lte\."), _l("Give gte, lte or both.")),
    (_p(r"Give gte and/or includes\."), _l("Give gte, includes or both.")),
    (
        _p(r"A condition is a mapping with one of: {kinds}\."),
        _l("A condition is a mapping with one of: %(kinds)s."),
    ),
    (
        _p(r"Unknown condition kind; expected one of: {kinds}\."),
        _l("Unknown condition kind; expected one of: %(kinds)s."),
    ),
    (
        _p(r"A condition has exactly one kind key; found {found}\."),
        _l("A condition has exactly one kind key; found %(found)s."),
    ),
    (
        _p(r"{key} is only valid inside an account condition\."),
        _l("%(key)s is only valid inside an account condition."),
    ),
    (
        _p(r"{key} is only valid outside an account condition\."),
        _l("%(key)s is only valid outside an account condition."),
    ),
    (
        _p(r"Not an event type or a non-empty list of event types\."),
        _l("Not an event type or a non-empty list of event types."),
    ),
    (_p(r"Not a non-empty list of event types\."), _l("Not a non-empty list of event types.")),
    (
        _p(r"Give exactly one of equals, in, exists, or gte/lte\."),
        _l("Give exactly one of equals, in, exists, or gte/lte."),
    ),
    (_p(r"sum needs gte \(the threshold\)\."), _l("sum needs gte (the threshold).")),
    (
        _p(r"gte needs sum \(the attribute to add up\)\."),
        _l("gte needs sum (the attribute to add up)."),
    ),
    (_p(r"Must be less than within_days\."), _l("Must be less than within_days.")),
    (_p(r"Give types once \(here or inside\)\."), _l("Give types once (here or inside).")),
    (_p(r"Not a valid event type name\."), _l("Not a valid event type name.")),
    (
        _p(r"Wildcard {value} matches no event type\."),
        _l("The wildcard %(value)s matches no event type."),
    ),
    (_p(r"invalid condition: {detail}"), _l("The condition is not valid: %(detail)s")),
    (_p(r"invalid segment rule: {detail}"), _l("The rule is not valid: %(detail)s")),
    # schedules (services/outreach/schedule.py, model.py)
    (_p(r"not a cron expression: {value}"), _l("Not a cron expression: %(value)s")),
    (_p(r"not an RRULE: {why}"), _l("Not an RRULE: %(why)s")),
    (
        _p(r"RRULE part {part} is not supported; use {parts}"),
        _l("The RRULE part %(part)s is not supported; use %(parts)s"),
    ),
    (
        _p(r"COUNT may be at most {max}; give an UNTIL for a longer series"),
        _l("COUNT may be at most %(max)s; give an UNTIL for a longer series"),
    ),
    (
        _p(r"BYMONTHDAY takes days every month has: 1 to 28, or -1 to -28 from the end"),
        _l("BYMONTHDAY takes days every month has: 1 to 28, or -1 to -28 from the end"),
    ),
    (
        _p(r"give one RRULE line, e\.g\. {example} \(no DTSTART, RDATE, EXDATE\)"),
        _l("Give one RRULE line, e.g. %(example)s (no DTSTART, RDATE, EXDATE)"),
    ),
    (_p(r"give exactly one of cron or rrule"), _l("Give either a cron expression or an RRULE.")),
    (_p(r"end must be after start"), _l("The end must be after the start.")),
    (_p(r"the schedule never fires: {why}"), _l("The schedule never fires: %(why)s")),
    (
        _p(
            r"the schedule fires {gap} minutes? apart; this tenant's minimum interval is "
            r"{minimum} minutes? \(min_schedule_interval_minutes in /settings/outreach\)"
        ),
        _l(
            "The schedule fires %(gap)s min apart; this tenant's minimum interval is "
            "%(minimum)s min (Settings)."
        ),
    ),
    (
        _p(r"more than {max} occurrences to look at"),
        _l("More than %(max)s occurrences to look at."),
    ),
    (_p(r"give exactly one of schedule or event"), _l("Choose a schedule or a trigger.")),
    (
        _p(r"give exactly one of stage_entered or risk_flag"),
        _l("Choose a stage entered or a risk flag."),
    ),
    (_p(r"give exactly one of item or series"), _l("Choose one content item or a series.")),
    (_p(r"oa_tag_id is for the oa_mass channel"), _l("An OA tag is for OA mass sends only.")),
    (
        _p(r"oa_tag_id cannot be combined with other filters"),
        _l("An OA tag cannot be combined with other audience filters."),
    ),
    # content payloads (services/outreach/model.py)
    (
        _p(r"a {kind} attachment needs its {field}"),
        _l("A %(kind)s attachment needs its %(field)s."),
    ),
    (_p(r"a link needs title and url"), _l("A link needs a title and a url.")),
    (
        _p(
            r"an image's media_id expires after 3 days and Siyu cannot upload it again: give the "
            r"image's https url instead \(Siyu uploads it and refreshes it before it expires\)"
        ),
        _l(
            "An image's media_id expires after 3 days and cannot be uploaded again: give the "
            "image's https url instead (Siyu uploads it and refreshes it before it expires)."
        ),
    ),
    (
        _p(r"an image needs url \(https, a JPG or PNG\) or pic_url"),
        _l("An image needs a url (https, a JPG or PNG) or a pic_url."),
    ),
    (
        _p(r"a miniprogram needs title, appid and page"),
        _l("A mini program needs a title, an appid and a page."),
    ),
    (_p(r"give text, attachments or both"), _l("Give text, attachments or both.")),
    (_p(r"mpnews needs media_id"), _l("mpnews needs a media_id.")),
    (_p(r"text needs text"), _l("A text message needs its text.")),
    (_p(r"news needs news\.url"), _l("news needs news.url.")),
    (
        _p(r"give a payload for at least one channel"),
        _l("Give a payload for at least one channel."),
    ),
    (_p(r"a promotion is promotional"), _l("A promotion is promotional.")),
    # OA template messages carry notices only (services/outreach/notices.py)
    (
        _p(
            r"oa_template carries service notices only \(the platform forbids marketing there\); "
            r"not a notice: {items}\. Send content on wecom_single or wecom_group, OA articles "
            r"on oa_mass\."
        ),
        _l(
            "OA template messages carry service notices only (WeChat forbids marketing there); "
            "not a notice: %(items)s. Send content as a WeCom 1:1 message or to customer groups, "
            "OA articles by OA mass send."
        ),
    ),
    (
        _p(
            r"oa_template carries service notices only \(the platform forbids marketing there\); "
            r"this item is sent by the active campaigns {campaigns}; keep it a service_notice "
            r"without an offer, or pause them and move them to another channel\."
        ),
        _l(
            "OA template messages carry service notices only (WeChat forbids marketing there), "
            "and the active campaigns %(campaigns)s send this item by template message: keep it "
            "a service notice without an offer, or pause them and move them to another channel."
        ),
    ),
    # a campaign's status conflicts (services/outreach/api_campaigns.py)
    (
        _p(r"a campaign that is {status} cannot be changed; pause it"),
        _l("A campaign that is %(status)s cannot be changed; pause it first."),
    ),
    (
        _p(r"a campaign that is {status} cannot be launched"),
        _l("A campaign that is %(status)s cannot be launched."),
    ),
    (
        _p(r"a campaign that is {status} cannot be paused"),
        _l("A campaign that is %(status)s cannot be paused."),
    ),
    (
        _p(r"a campaign that is {status} cannot be archived"),
        _l("A campaign that is %(status)s cannot be archived."),
    ),
]

# Where one message carries another: "<path>: <message> (and 2 more)".
_AND_MORE = re.compile(r"^(?P<head>.+) \(and (?P<n>\d+) more\)$", re.DOTALL)
_PATH = re.compile(r"^(?P<path>[\w.\[\]]+|\(root\)): (?P<rest>.+)$", re.DOTALL)
# The grammar's list of bad fields: "all[0].attribute: ...; any: ..." (grammar.py _invalid).
_FIELDS = re.compile(r"; (?=[\w.\[\]]+: |\(root\): )")


def _fill(name: str, value: str) -> str:
    if name == "kind":
        found = KINDS.get(value)
        return str(found) if found is not None else value
    if name == "status" and value in labels.CAMPAIGN_STATUSES:
        return labels.campaign_status(value)
    if name in ("detail", "rest"):
        return translated(value) or value
    return value


def translated(text: object) -> str | None:
    """``text`` in the reader's language, or None when the table does not know it."""
    if text is None:
        return None
    text = str(text)
    if m := _AND_MORE.match(text):
        head = translated(m["head"])
        return None if head is None else str(_l("%(first)s (and %(n)s more)", first=head, n=m["n"]))
    for pattern, translation in RULES:
        if m := pattern.match(text):
            return str(translation) % {k: _fill(k, v) for k, v in m.groupdict().items()}
    parts = _FIELDS.split(text)
    if len(parts) > 1:  # each field's message on its own; one not known stays as it came
        found = [translated(part) for part in parts]
        if all(f is None for f in found):
            return None
        return "; ".join(f if f is not None else p for f, p in zip(found, parts, strict=True))
    if m := _PATH.match(text):
        rest = translated(m["rest"])
        return None if rest is None else f"{m['path']}: {rest}"
    return None


def escape(text: str) -> str:
    """As Jinja's autoescape writes it (``&#34;``, ``&#39;``), so pages read alike."""
    return html.escape(text).replace("&quot;", "&#34;").replace("&#x27;", "&#39;")


class Html(str):
    """Text Jinja's autoescape takes as HTML (its ``__html__``), already escaped here."""

    def __html__(self) -> str:
        return self


def shown(text: object) -> Html:
    """The ``|message`` filter: ``text`` translated, or as it came with itself as a tooltip."""
    if text is None or text == "":
        return Html("")
    if isinstance(text, (list, tuple)):
        return Html(" ".join(shown(t) for t in text))
    original = escape(str(text))
    found = translated(text)
    if found is not None:
        return Html(f'<span title="{original}">{escape(found)}</span>')
    return Html(f'<span class="untranslated" title="{original}">{original}</span>')


def plain(text: object) -> str:
    """For JSON answers (the live previews): the translation, or the text as it came."""
    found = translated(text)
    return found if found is not None else ("" if text is None else str(text))


def register(app) -> None:
    app.add_template_filter(shown, "message")
