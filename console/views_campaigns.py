"""The console's campaign pages (docs/console.md "Campaigns"): the list, the wizard (a new
campaign), a campaign (its schedule, preview, launch / pause / archive, runs, delivery log).

Every change goes through the outreach API's own functions (api_campaigns.create and
transition, api_preview.queue_preview), audited as ``console:<login>``; what an operator may do
is not shown to a viewer, and refused (403) if a viewer posts it anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import abort, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from console import campaigns as pages
from console.views import console, may, require, who
from services.outreach.api_campaigns import TRANSITIONS, campaign_row, create, transition
from services.outreach.api_deliveries import STATUSES as DELIVERY_STATUSES
from services.outreach.api_preview import preview_job, queue_preview
from services.outreach.plan import tenant_settings
from shared import jobs
from shared.api.context import connection
from shared.api.errors import ApiError

MULTI = ("segments", "stages", "roles", "exclude_segments", "series", "weekdays")
SINGLE = (
    "name",
    "channel",
    "trigger_kind",
    "schedule_kind",
    "time",
    "cron",
    "rrule",
    "event_stage",
    "event_flag",
    "event_subject",
    "delay_minutes",
    "content_kind",
    "item",
    "quiet_start",
    "quiet_end",
    "holdout_percent",
)
PREVIEW_SAMPLES = 10


def _tenant() -> tuple[str, str]:
    """(the user's tenant, its time zone)."""
    return g.console_user["tenant_id"], g.console_tenant["timezone"]


def _form(source) -> dict:
    form = {k: source.get(k, "").strip()[:500] for k in SINGLE}
    form.update({k: [v.strip()[:200] for v in source.getlist(k) if v.strip()][:100] for k in MULTI})
    return form


# --- the list and the wizard ---------------------------------------------------------------------


@console.route("/campaigns")
@require("viewer")
def campaigns():
    tenant, zone = _tenant()
    with connection() as conn:
        rows = pages.listing(conn, tenant, zone, datetime.now(UTC))
    return render_template("campaigns.html", campaigns=rows, can_edit=may("operator"))


def _wizard(form: dict, errors: dict, status: int = 200):
    tenant, zone = _tenant()
    with connection() as conn:
        offered = pages.choices(conn, tenant)
    schedule = _schedule_preview(form) if form.get("trigger_kind") == "schedule" else None
    return render_template(
        "campaign_new.html", form=form, errors=errors, choices=offered, schedule=schedule, zone=zone
    ), status


@console.route("/campaigns/new", methods=["GET"])
@require("operator")
def campaign_new():
    form = _form(request.args)
    form.update(
        trigger_kind=form["trigger_kind"] or "schedule",
        schedule_kind=form["schedule_kind"] or "weekly",
        time=form["time"] or "10:00",
        content_kind=form["content_kind"] or "item",
        weekdays=form["weekdays"] or ["TUE"],
    )
    return _wizard(form, {})


@console.route("/campaigns/new", methods=["POST"])
@require("operator")
def campaign_create():
    """The wizard's campaign, saved by the API's ``create`` (a draft, audited as the user)."""
    tenant, _zone = _tenant()
    form = _form(request.form)
    body, errors = pages.body_of(form)
    loaded, schema_errors = pages.validated(body)
    errors = {**schema_errors, **errors}
    if errors:
        return _wizard(form, errors, 400)
    try:
        with connection() as conn:
            row = create(conn, tenant, loaded, who(), g.console_user["role"])
    except ApiError as exc:
        if exc.status != 400:
            raise
        return _wizard(form, pages.form_errors(exc.details, exc.message), 400)
    return redirect(url_for("console.campaign", campaign_id=row["campaign_id"], done="create"))


@console.route("/campaigns/schedule.json")
@require("operator")
def campaign_schedule():
    """The wizard's schedule in words and its next run times, for console/static/campaigns.js."""
    return jsonify(_schedule_preview(_form(request.args)))


def _schedule_preview(form: dict) -> dict:
    """The schedule's words and next runs, checked against the tenant's minimum interval."""
    tenant, zone = _tenant()
    with connection() as conn:
        minutes = tenant_settings(conn, tenant)["min_schedule_interval_minutes"]
    return pages.schedule_preview(form, zone, datetime.now(UTC), timedelta(minutes=minutes))


# --- a campaign ----------------------------------------------------------------------------------


@console.route("/campaigns/<campaign_id>")
@require("viewer")
def campaign(campaign_id: str):
    return _campaign_page(campaign_id[:300])


def _delivery_cursor(text: str) -> int | None:
    """The deliveries' ``?after=`` (a delivery id, a bigint); None for anything else."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    return int(text) if 0 < int(text) < 2**63 else None


def _campaign_page(campaign_id: str, *, error: str | None = None, status: int = 200):
    tenant, zone = _tenant()
    wanted = request.args.get("status") or None
    if wanted not in (None, *DELIVERY_STATUSES):
        wanted = None
    after = _delivery_cursor(request.args.get("after", ""))
    job_id = request.args.get("preview", "")[:100] or None
    with connection() as conn:
        row = campaign_row(conn, tenant, campaign_id)
        shown = pages.detail(conn, row, tenant, zone, datetime.now(UTC))
        log = pages.deliveries(conn, tenant, campaign_id, status=wanted, after=after)
        job = result = None
        if job_id and may("operator"):
            job = preview_job(conn, tenant, campaign_id, job_id)
            if job["status"] == "done":
                result = pages.preview_view(conn, tenant, job["result"])
    messages = {
        "create": _("Campaign saved as a draft. Preview it, then launch it."),
        "launch": _("Campaign launched."),
        "pause": _("Campaign paused."),
        "archive": _("Campaign archived."),
    }
    return render_template(
        "campaign.html",
        campaign=shown,
        deliveries=log,
        status_filter=wanted or "",
        delivery_statuses=DELIVERY_STATUSES,
        can_edit=may("operator"),
        job=job,
        preview=result,
        done=messages.get(request.args.get("done", "")),
        error=error,
    ), status


@console.route("/campaigns/<campaign_id>/<action>", methods=["POST"])
@require("operator")
def campaign_action(campaign_id: str, action: str):
    """Launch, pause or archive: the API's ``transition``, audited as the user."""
    if action not in TRANSITIONS:
        abort(404)
    tenant, _zone = _tenant()
    try:
        with connection() as conn:
            transition(conn, tenant, campaign_id[:300], action, who())
    except ApiError as exc:
        if exc.status not in (400, 409):
            raise
        return _campaign_page(campaign_id[:300], error=exc.message, status=exc.status)
    return redirect(url_for("console.campaign", campaign_id=campaign_id, done=action))


@console.route("/campaigns/<campaign_id>/preview", methods=["POST"])
@require("operator")
def campaign_preview(campaign_id: str):
    """Queue the API's preview job, then show the campaign's page polling it."""
    tenant, _zone = _tenant()
    try:
        with connection() as conn:
            job = queue_preview(
                conn,
                tenant,
                campaign_id[:300],
                PREVIEW_SAMPLES,
                created_by=who(),
            )
    except ApiError as exc:
        if exc.code == "job_in_progress":  # the tenant's running preview: show that one
            job = {"job_id": exc.details["job_id"]}
            if not exc.details["location"].endswith(f"/{campaign_id}/preview/{job['job_id']}"):
                return _campaign_page(
                    campaign_id[:300],
                    error=_("Another campaign's preview is running. Try again in a moment."),
                    status=409,
                )
        elif exc.status == 400:
            return _campaign_page(campaign_id[:300], error=exc.message, status=400)
        else:
            raise
    jobs.wake()  # the app's job runners claim it at once
    return redirect(
        url_for(
            "console.campaign", campaign_id=campaign_id, preview=job["job_id"], _anchor="preview"
        )
    )


@console.route("/campaigns/<campaign_id>/preview/<job_id>.json")
@require("operator")
def campaign_preview_status(campaign_id: str, job_id: str):
    """A preview job's status, for console/static/campaigns.js to reload the page when done."""
    tenant, _zone = _tenant()
    with connection() as conn:
        job = preview_job(conn, tenant, campaign_id[:300], job_id[:100])
    return jsonify({"status": job["status"], "progress": job["progress"]})
