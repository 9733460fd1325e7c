"""A campaign's effect report (docs/console.md "Effect report"): what moved, treated against the
holdout, per campaign and per content item, with the uplift and its verdict; and its CSV.
Viewers may read it (the API's ``GET /campaigns/<id>/effect`` asks the same role)."""

from __future__ import annotations

import re

from flask import Response, g, render_template, request

from console import effect
from console.views import console, require
from shared.api.context import connection


def _filename(campaign_id: str, days: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"effect-{campaign_id}-{days}d.csv")


@console.route("/campaigns/<campaign_id>/effect")
@require("viewer")
def campaign_effect(campaign_id: str):
    raw = request.args.get("days", "")[:10]
    days, error = effect.days_of(raw)
    with connection() as conn:
        found = effect.report(conn, g.console_user["tenant_id"], campaign_id[:300], days)
    page = render_template("effect.html", report=found, days_text=raw or str(days), error=error)
    return page, 400 if error else 200


@console.route("/campaigns/<campaign_id>/effect.csv")
@require("viewer")
def campaign_effect_csv(campaign_id: str):
    days, error = effect.days_of(request.args.get("days", "")[:10])
    if error:
        return campaign_effect(campaign_id)
    with connection() as conn:
        found = effect.report(conn, g.console_user["tenant_id"], campaign_id[:300], days)
    text = effect.csv_text(found, g.console_tenant["timezone"])
    return Response(text.encode("utf-8"), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{_filename(found["campaign_id"], days)}"'
    })  # fmt: skip
