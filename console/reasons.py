"""The services' sentences in the reader's language (docs/console.md "Languages"): the reasons
of an account's risk flags (services/segment/risk.py) and the causes of stage changes
(services/segment/lifecycle: a stage's rule and its evidence, a member's stage, a regress rule,
a staff override). The services write them in English with the figures inline; each known
sentence is matched, its figures kept, and put in the catalogue's words. What no pattern knows
(a future sentence) is shown as the service wrote it, never dropped."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l

from console import labels

_NUM = r"\d[\d,]*(?:\.\d+)?"

# One pattern per sentence risk.py writes (a flag's reason joins several with "; ");
# tests/unit/console/test_reasons.py makes risk.py write each and checks it is matched.
RISK_REASONS = [
    (
        r"(?P<count>\d+) invoices? overdue, (?P<amount>.+), oldest (?P<days>\d+) days?",
        _l("%(count)s invoices overdue, %(amount)s, the oldest %(days)s days"),
    ),
    (
        rf"slow payment: (?P<count>\d+) invoices? paid (?P<mean>{_NUM}) days after issue on "
        rf"average \(limit (?P<limit>{_NUM})\)",
        _l(
            "slow payment: %(count)s invoices paid %(mean)s days after issue on average "
            "(limit %(limit)s)"
        ),
    ),
    (r"low credit rating: (?P<rating>.+)", _l("low credit rating: %(rating)s")),
    (
        rf"interactions fell to (?P<recent>\d+) in the last (?P<window>{_NUM}) days from an "
        rf"average of (?P<average>{_NUM}) per {_NUM} days over the (?P<baseline>{_NUM}) days "
        r"before \(-(?P<drop>\d+%)\)",
        _l(
            "interactions fell to %(recent)s in the last %(window)s days, from an average of "
            "%(average)s over the %(baseline)s days before (-%(drop)s)"
        ),
    ),
    (
        rf"(?P<count>\d+) engaged members? left in the last (?P<days>{_NUM}) days "
        r"\((?P<exits>.+)\)",
        _l("%(count)s engaged members left in the last %(days)s days (%(exits)s)"),
    ),
    (
        r"(?P<count>\d+) members? lost \((?P<exits>.+)\)",
        _l("%(count)s members lost (%(exits)s)"),
    ),
    (
        rf"(?P<count>\d+) complaints? in the last (?P<days>{_NUM}) days",
        _l("%(count)s complaints in the last %(days)s days"),
    ),
    (
        rf"no interactions or orders for (?P<days>\d+) days \(limit (?P<limit>{_NUM})\)",
        _l("no interactions or orders for %(days)s days (limit %(limit)s)"),
    ),
    (
        rf"no interactions or orders since first seen (?P<days>\d+) days ago "
        rf"\(limit (?P<limit>{_NUM})\)",
        _l("no interactions or orders since first seen %(days)s days ago (limit %(limit)s)"),
    ),
    (
        rf"account created (?P<days>\d+) days? ago: golden maintenance period "
        rf"\(first (?P<limit>{_NUM}) days\)",
        _l("account created %(days)s days ago: golden maintenance period (first %(limit)s days)"),
    ),
    (
        rf"account first seen (?P<days>\d+) days? ago: golden maintenance period "
        rf"\(first (?P<limit>{_NUM}) days\)",
        _l(
            "account first seen %(days)s days ago: golden maintenance period (first %(limit)s days)"
        ),
    ),
    (
        rf"orders (?P<recent>.+) in the last (?P<days>{_NUM}) days vs (?P<previous>.+) in the "
        rf"{_NUM} days before \(x(?P<ratio>{_NUM})\)",
        _l(
            "orders %(recent)s in the last %(days)s days, %(previous)s in the %(days)s days "
            "before (x%(ratio)s)"
        ),
    ),
]
RISK_REASONS = [(re.compile(rf"^{p}$"), t) for p, t in RISK_REASONS]

# The parts of a churn reason's member exits (risk.EXIT_TYPES) and of a lost reason
# (risk.LOST_REASONS).
EXITS = [
    (re.compile(r"^(?P<count>\d+) unfollowed the OA$"), _l("%(count)s unfollowed the OA")),
    (
        re.compile(r"^(?P<count>\d+) deleted their staff contact$"),
        _l("%(count)s deleted their staff contact"),
    ),
    (re.compile(r"^(?P<count>\d+) deleted by staff$"), _l("%(count)s deleted by staff")),
]
MIXED = "(mixed currencies)"


def _match(table, text: str) -> tuple[re.Pattern, dict] | None:
    for pattern, template in table:
        found = pattern.match(text)
        if found:
            return template, found.groupdict()
    return None


SEPARATOR = _l("; ")


def risk_reason(text: str | None) -> str:
    """A risk flag's reason, sentence by sentence (unknown ones as written)."""
    if not text:
        return ""
    out = []
    for part in text.split("; "):
        hit = _match(RISK_REASONS, part)
        if hit is None:
            out.append(part)
            continue
        template, values = hit
        if "exits" in values:
            values["exits"] = ", ".join(
                str(h[0]) % h[1] if (h := _match(EXITS, e)) else e
                for e in values["exits"].split(", ")
            )
        for key in ("amount", "recent", "previous"):
            if key in values:
                values[key] = values[key].replace(MIXED, str(_l("(mixed currencies)")))
        out.append(str(template) % values)
    return str(SEPARATOR).join(out)


# --- stage causes --------------------------------------------------------------------------------

CAUSES = [
    (re.compile(r"^manual: (?P<reason>.*)$", re.S), _l("staff: %(reason)s")),
    (
        re.compile(r"^account facts: stage (?P<stage>[^:]+): (?P<why>.*)$", re.S),
        _l("the account's own facts reached %(stage)s: %(why)s"),
    ),
    (
        re.compile(
            r"^members reached (?P<stage>.+) \((?P<count>\d+) of (?P<members>\d+) members\)$"
        ),
        _l("members reached %(stage)s (%(count)s of %(members)s members)"),
    ),
    (
        re.compile(r"^regress (?P<from>\S+) -> (?P<to>[^:]+): (?P<why>.*)$", re.S),
        _l("back from %(from)s to %(to)s: %(why)s"),
    ),
    (re.compile(r"^stage (?P<stage>[^:]+): (?P<why>.*)$", re.S), _l("reached %(stage)s: %(why)s")),
]
_TYPES = re.compile(r"\b[a-z]+(?:\.[a-z_*]+)+\b")
# The words of a condition's evidence (services/segment/lifecycle/conditions.py ``explain``).
PHRASES = [
    (re.compile(rf"\b(?P<count>{_NUM}) of (?P<types>[\w.*/]+)"), _l("%(types)s ×%(count)s")),
    (re.compile(rf" within (?P<days>{_NUM}) days"), _l(" within %(days)s days")),
    (re.compile(rf" older than (?P<days>{_NUM}) days"), _l(" older than %(days)s days")),
    (
        re.compile(rf" with (?P<field>\w+) sum (?P<total>{_NUM}) >= (?P<limit>{_NUM})"),
        _l(" with %(field)s adding up to %(total)s >= %(limit)s"),
    ),
    (
        re.compile(rf"\b(?P<days>{_NUM}) days since last event"),
        _l("%(days)s days since the last event"),
    ),
    (re.compile(rf"\b(?P<days>{_NUM}) days since creation"), _l("%(days)s days since creation")),
    (
        re.compile(r"\bstage (?P<stage>\w+) >= (?P<least>\w+)"),
        _l("stage %(stage)s, at least %(least)s"),
    ),
    (re.compile(r"\broles engaged\b"), _l("roles engaged")),
    (re.compile(r"\battribute (?P<name>\w+)"), _l("attribute %(name)s")),
    (re.compile(r"\bscore (?=\d|-)"), _l("score ")),
    (re.compile(r"\btag (?P<tag>\S+)"), _l("tag %(tag)s")),
    (re.compile(r"^account "), _l("account ")),
    (re.compile(r" and "), _l(" and ")),
    (re.compile(r" where "), _l(" where ")),
]


def _stage_name(name: str) -> str:
    return labels.stage(name.strip())


def _types(codes: str) -> str:
    return "/".join(
        labels.event_type(c) if c in labels.EVENT_TYPES else c for c in codes.split("/")
    )


def evidence(text: str) -> str:
    """A condition's evidence in the reader's words (event types and stages by their labels)."""
    for pattern, template in PHRASES:

        def put(found, template=template):
            values = found.groupdict()
            if "types" in values:
                values["types"] = _types(values["types"])
            for key in ("stage", "least"):
                if key in values:
                    values[key] = _stage_name(values[key])
            return str(template) % values

        text = pattern.sub(put, text)
    return _TYPES.sub(
        lambda m: labels.event_type(m[0]) if m[0] in labels.EVENT_TYPES else m[0], text
    )


def stage_cause(text: str | None) -> str:
    """What a stage change's cause says, in the reader's words (unknown ones as written)."""
    if not text:
        return ""
    hit = _match(CAUSES, text)
    if hit is None:
        return evidence(text)
    template, values = hit
    for key in ("stage", "from", "to"):
        if key in values:
            values[key] = _stage_name(values[key])
    if "why" in values:
        values["why"] = evidence(values["why"])
    return str(template) % values
