"""A campaign's effect report on the console (docs/console.md "Effect report"): the figures of
``GET /api/v1/campaigns/<id>/effect`` (services/outreach/api_effect.py ``campaign_effect``, the
same function) shaped for the page, and its CSV export.

The CSV is UTF-8 with a byte-order mark (Excel otherwise reads it as the system's code page and
garbles Chinese) and safe from formula injection: a text cell starting with ``= + - @`` (or a
tab or carriage return) is prefixed with ``'`` so a spreadsheet shows it instead of running it.
Figures are written as numbers, never as text, so they need no prefix; a figure the channel
cannot have (replies where no reply comes back) is "—", not 0.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask_babel import gettext as _

from console import labels, pages
from services.outreach.api_effect import campaign_effect
from services.outreach.effect_report import DEFAULT_DAYS, MAX_DAYS

BOM = "\ufeff"
NONE = "—"  # a figure the channel cannot have (replies over WeCom), not a zero
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def days_of(text: str | None) -> tuple[int, str | None]:
    """The window asked for (``?days=``) and an error in the reader's words, or None."""
    if not text:
        return DEFAULT_DAYS, None
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_DAYS:
        return int(text), None
    return DEFAULT_DAYS, _("Give the window as a whole number of days, 1 to %(max)s.", max=MAX_DAYS)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def points(value: float | None) -> str:
    """A difference of rates in percentage points, signed."""
    return "—" if value is None else f"{value * 100:+.1f}"


def _scope(effect: dict[str, Any]) -> dict[str, Any]:
    u = effect["uplift"]
    return {
        **effect,
        "treated_rate": percent(effect["treated"]["rate"]),
        "holdout_rate": percent(effect["holdout"]["rate"]),
        "difference": points(u["difference"]),
        "interval": None if u["low"] is None else f"{points(u['low'])} … {points(u['high'])}",
        "verdict_text": labels.effect_verdict(u["verdict"]),
    }


def report(conn, tenant: str, campaign_id: str, days: int) -> dict[str, Any]:
    """The page's data: the campaign's scope and one per content item."""
    found = campaign_effect(conn, tenant, campaign_id, days)
    return {**_scope(found), "per_item": [_scope(c) for c in found["content"]]}


def safe(cell: Any) -> Any:
    """A text cell a spreadsheet will not run as a formula; numbers as they are."""
    if isinstance(cell, str) and cell.startswith(_FORMULA):
        return "'" + cell
    return cell


def _rate(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def csv_text(found: dict[str, Any], zone: str) -> str:
    """The report as CSV (with its BOM): a row per scope and group."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("Scope"), _("Content ID"), _("Group"), _("Contacts"), _("Delivered"),
                     _("Failed"), _("Confirmed by WeCom"), _("Clicked"), _("Replied"),
                     _("Advanced a stage"), _("Advance rate"), _("Uplift"), _("CI low (95%)"),
                     _("CI high (95%)"), _("Verdict"), _("Window (days)"), _("First run"),
                     _("Last run")])  # fmt: skip
    scopes = [(found["name"], "", found)] + [
        (c["title"] or c["content_id"], c["content_id"], c) for c in found["per_item"]
    ]
    for name, content_id, scope in scopes:
        u = scope["uplift"]
        for group, arm in ((_("Received it"), scope["treated"]), (_("Holdout"), scope["holdout"])):
            writer.writerow([safe(v) for v in (
                name, content_id, group, arm["contacts"], arm.get("delivered", ""),
                arm.get("failed", ""), arm["confirmed"], arm["clicked"],
                NONE if arm["replied"] is None else arm["replied"], arm["advanced"],
                _rate(arm["rate"]), _rate(u["difference"]), _rate(u["low"]), _rate(u["high"]),
                scope["verdict_text"], found["days"],
                pages.local(scope["first_run_at"], zone), pages.local(scope["last_run_at"], zone),
            )])  # fmt: skip
    return BOM + out.getvalue()
