"""What the campaign pages show and accept (docs/console.md "Campaigns"): the wizard's form read
into the body POST /api/v1/campaigns takes, its errors placed on the form's fields, the choices it
offers (what the tenant has), a schedule's next run times in words and dates, and the list, runs,
preview and delivery log labelled for display. Reads go through the outreach service's own
functions (api_campaigns, api_deliveries, names, schedule)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from marshmallow import ValidationError

from console import labels, messages
from console.pages import stage_title
from services.outreach import notices
from services.outreach.api_campaigns import campaign_rows, run_rows
from services.outreach.api_deliveries import delivery_rows
from services.outreach.model import CHANNEL_PAYLOAD, CampaignInSchema, ScheduleSchema
from services.outreach.names import tenant_names
from services.outreach.plan import tenant_settings
from services.outreach.schedule import (
    ScheduleError,
    frequency_error,
    next_due,
    parsed_schedule,
    shortest_gap,
)
from shared.vocabulary import BUYING_ROLES, CHANNELS, RISK_FLAGS

LIST_LIMIT = 100
RUNS_SHOWN = 20
DELIVERIES_PAGE = 50
NEXT_RUNS = 5
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CRON_SIMPLE = re.compile(r"^(\d{1,2}) (\d{1,2}) (\*|\d{1,2}) \* (\*|[A-Z,]+)$")


def weekday_names() -> dict[str, str]:
    return {
        "MON": _("Monday"),
        "TUE": _("Tuesday"),
        "WED": _("Wednesday"),
        "THU": _("Thursday"),
        "FRI": _("Friday"),
        "SAT": _("Saturday"),
        "SUN": _("Sunday"),
    }


# --- what the tenant has -------------------------------------------------------------------------


def choices(conn, tenant_id: str) -> dict:
    """What the wizard offers: the tenant's segments (outreach's catalogue), stages, roles, risk
    flags, active content items (with the channels their payloads can go out on), channels and
    the tenant's caps and default quiet hours (settings of their own: shown, not set here)."""
    names = tenant_names(conn, tenant_id)
    row = conn.execute(
        "SELECT segments FROM catalogue WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    titled = (
        {s["segment_id"]: s.get("name") or s["segment_id"] for s in (row or {}).get("segments", [])}
        if row
        else {}
    )
    items = conn.execute(
        "SELECT content_id, title, format, promotional, payloads FROM content WHERE tenant_id = %s "
        "AND status = 'active' ORDER BY created_at DESC, content_id DESC LIMIT 500",
        (tenant_id,),
    ).fetchall()
    settings = tenant_settings(conn, tenant_id)
    return {
        "segments": [{"name": s, "label": titled.get(s, s)} for s in names.segments or ()],
        "stages": [{"name": s, "label": stage_title(s)} for s in names.stages or ()],
        "roles": [{"name": r, "label": labels.buying_role(r)} for r in BUYING_ROLES],
        "flags": [{"name": f, "label": labels.risk_flag(f)} for f in RISK_FLAGS],
        "channels": [{"name": c, "label": labels.channel(c)} for c in CHANNELS],
        "items": [
            {
                **i,
                "channels": [
                    labels.channel(c)
                    for c in CHANNELS
                    if CHANNEL_PAYLOAD[c] in i["payloads"]
                    and notices.allowed(c, i["format"], i["promotional"])
                ],
            }
            for i in items
        ],
        "weekdays": weekday_names(),
        "caps": settings["caps"],
        "quiet_hours": settings["quiet_hours"],
    }


# --- the wizard's form ---------------------------------------------------------------------------


def _cron_of(form: dict) -> str | None:
    """The cron expression of the wizard's simple schedules (daily, weekly at a time)."""
    found = _HHMM.match(form.get("time", ""))
    if not found:
        return None
    hour, minute = int(found.group(1)), int(found.group(2))
    if form.get("schedule_kind") == "daily":
        return f"{minute} {hour} * * *"
    days = [d for d in form.get("weekdays", []) if d in WEEKDAYS]
    return f"{minute} {hour} * * {','.join(days)}" if days else None


def schedule_of(form: dict) -> tuple[dict | None, dict]:
    """(the schedule the form describes, or None; errors by field)."""
    kind = form.get("schedule_kind")
    if kind in ("daily", "weekly"):
        cron = _cron_of(form)
        if cron is None:
            if not _HHMM.match(form.get("time", "")):
                return None, {"time": _("Give a time of day as HH:MM, e.g. 10:00.")}
            return None, {"weekdays": _("Choose at least one day of the week.")}
        return {"cron": cron}, {}
    if kind == "cron":
        return (
            ({"cron": form["cron"]}, {})
            if form.get("cron")
            else (None, {"cron": _("Give a cron expression, e.g. 0 10 * * TUE.")})
        )
    if kind == "rrule":
        return (
            ({"rrule": form["rrule"]}, {})
            if form.get("rrule")
            else (None, {"rrule": _("Give a repeat rule, e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=10.")})
        )
    return None, {"schedule_kind": _("Choose how often the campaign runs.")}


def body_of(form: dict) -> tuple[dict, dict]:
    """The campaign body of the wizard's form (as POST /api/v1/campaigns takes it) and the
    errors found before the schema sees it (by field)."""
    errors: dict = {}
    audience: dict = {}
    for key in ("segments", "stages", "roles"):
        if form.get(key):
            audience[key] = form[key]
    if form.get("exclude_segments"):
        audience["exclude"] = {"segments": form["exclude_segments"]}
    if not audience:
        errors["audience"] = _("Choose who receives it: a segment, stages or buying roles.")
    trigger: dict = {}
    kind = form.get("trigger_kind")
    if kind == "schedule":
        schedule, errors_ = schedule_of(form)
        errors.update(errors_)
        if schedule is not None:
            trigger["schedule"] = schedule
    elif kind in ("stage_entered", "risk_flag"):
        event: dict = {kind: form.get("event_stage" if kind == "stage_entered" else "event_flag")}
        event["subject"] = "account" if form.get("event_subject") == "account" else "contact"
        try:
            event["delay_minutes"] = int(form.get("delay_minutes") or 0)
        except ValueError:
            errors["delay_minutes"] = _("Give the delay as a whole number of minutes.")
        trigger["event"] = event
    else:
        errors["trigger_kind"] = _("Choose when it runs: on a schedule or on a trigger.")
    content = (
        {"series": form.get("series") or []}
        if form.get("content_kind") == "series"
        else {"item": form.get("item") or None}
    )
    body = {
        "name": form.get("name", ""),
        "channel": form.get("channel", ""),
        "audience": audience,
        "content": content,
        "trigger": trigger,
    }
    if form.get("quiet_start") or form.get("quiet_end"):
        body["quiet_hours"] = {
            "start": form.get("quiet_start", ""),
            "end": form.get("quiet_end", ""),
        }
    # The effect report's control group (docs/console.md "Effect report").
    if form.get("holdout_percent"):
        try:
            body["holdout_percent"] = int(form["holdout_percent"])
        except ValueError:
            errors["holdout_percent"] = _("Give the holdout as a whole percentage, 0 to 50.")
    return body, errors


def validated(body: dict) -> tuple[dict | None, dict]:
    """The body loaded by the API's own schema (CampaignInSchema), or its errors by field."""
    try:
        return CampaignInSchema().load(body), {}
    except ValidationError as exc:
        return None, form_errors(exc.messages)


# Where an error of a body path is shown on the wizard (the longest prefix wins).
_FIELDS = (
    ("audience.exclude", "exclude_segments"),
    ("audience.segments", "segments"),
    ("audience.stages", "stages"),
    ("audience.roles", "roles"),
    ("audience", "audience"),
    ("trigger.event.stage_entered", "event_stage"),
    ("trigger.event.risk_flag", "event_flag"),
    ("trigger.event.delay_minutes", "delay_minutes"),
    ("trigger.event", "trigger_kind"),
    ("trigger.schedule", "schedule_kind"),
    ("trigger", "trigger_kind"),
    ("content.series", "series"),
    ("content.item", "item"),
    ("content", "content_kind"),
    ("channel", "channel"),
    ("quiet_hours", "quiet"),
    ("holdout_percent", "holdout_percent"),
    ("name", "name"),
)


def field_of(path: str) -> str:
    for prefix, field in _FIELDS:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return field
    return "form"


def _flat(messages, path: str = ""):
    if isinstance(messages, dict):
        for key, value in messages.items():
            inner = (
                key if not path else (f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
            )
            if key == "_schema":
                inner = path
            yield from _flat(value, inner)
    elif isinstance(messages, list) and messages and not all(isinstance(m, str) for m in messages):
        for value in messages:
            yield from _flat(value, path)
    else:
        for message in messages if isinstance(messages, list) else [messages]:
            yield path, str(message)


def form_errors(details: dict | None, message: str | None = None) -> dict:
    """Errors by wizard field from an API error's details (or a schema's messages); the valid
    values an unknown name could have been (``details["valid"]``) under ``<field>_valid``."""
    errors: dict = {}
    details = dict(details or {})
    valid = details.pop("valid", {}) or {}
    for path, text in _flat(details):
        field = field_of(path.removeprefix("body."))
        text = messages.plain(text)
        errors[field] = f"{errors[field]} {text}" if field in errors else text
    for path, values in valid.items():
        errors[field_of(path) + "_valid"] = values
    if not errors and message:
        errors["form"] = messages.plain(message)
    return errors


# --- schedules in words and dates ----------------------------------------------------------------


def schedule_words(trigger: dict, zone: str) -> str:
    """When a campaign runs, in words (the wizard's simple schedules; an expression else)."""
    if trigger.get("event"):
        event = trigger["event"]
        if event.get("stage_entered"):
            text = _("When a contact enters %(stage)s", stage=stage_title(event["stage_entered"]))
            if event.get("subject") == "account":
                text = _(
                    "When an account enters %(stage)s", stage=stage_title(event["stage_entered"])
                )
        else:
            text = _(
                "When an account is flagged %(flag)s", flag=labels.risk_flag(event.get("risk_flag"))
            )
        delay = event.get("delay_minutes") or 0
        return text + (_(", %(n)s minutes later", n=delay) if delay else "")
    schedule = trigger.get("schedule") or {}
    where = schedule.get("timezone") or zone
    found = _CRON_SIMPLE.match(schedule.get("cron") or "")
    if found:
        minute, hour, day, days = found.groups()
        clock = f"{int(hour):02d}:{int(minute):02d}"
        names = weekday_names()
        if day == "*" and days == "*":
            text = _("Every day at %(time)s", time=clock)
        elif day == "*" and all(d in names for d in days.split(",")):
            listed = "、".join(names[d] for d in days.split(","))
            text = _("Every %(days)s at %(time)s", days=listed, time=clock)
        elif days == "*":
            text = _("On day %(day)s of every month at %(time)s", day=day, time=clock)
        else:
            text = _("Cron schedule %(expression)s", expression=schedule["cron"])
    elif schedule.get("cron"):
        text = _("Cron schedule %(expression)s", expression=schedule["cron"])
    elif schedule.get("rrule"):
        text = _("Repeat rule %(rule)s", rule=schedule["rrule"])
    else:
        return "—"
    return f"{text} ({where})"


def next_runs(schedule: dict, zone: str, after: datetime, n: int = NEXT_RUNS) -> list[datetime]:
    """The schedule's next ``n`` times after ``after`` (the scheduler's own next_due)."""
    times: list[datetime] = []
    try:
        while len(times) < n:
            found = next_due(schedule, zone, times[-1] if times else after)
            if found is None:
                break
            times.append(found)
    except (ScheduleError, ValueError):
        return times
    return times


def when(moment: datetime | None, zone: str) -> str:
    """A time in the tenant's zone with its weekday, e.g. 2026-12-01 (Tuesday) 10:00 CST."""
    if moment is None:
        return "—"
    there = moment.astimezone(ZoneInfo(zone))
    day = weekday_names()[WEEKDAYS[there.weekday()]]
    return f"{there:%Y-%m-%d} ({day}) {there:%H:%M %Z}"


def schedule_preview(form: dict, zone: str, now: datetime, minimum: timedelta) -> dict:
    """The wizard's live schedule line: words and the next run times, or why there are none or
    why saving would refuse it (firing more often than the tenant's ``minimum`` interval, the
    save's own check, services/outreach/api_campaigns.py)."""
    schedule, errors = schedule_of(form)
    if schedule is None:
        return {"words": "", "times": [], "error": next(iter(errors.values()))}
    try:
        loaded = ScheduleSchema().load(schedule)
    except ValidationError as exc:
        return {
            "words": "",
            "times": [],
            "error": " ".join(messages.plain(m) for _, m in _flat(exc.messages)),
        }
    times = next_runs(loaded, zone, now)
    error = None if times else _("The schedule never runs again.")
    if times and frequency_error(parsed_schedule(loaded), minimum):
        error = _too_frequent(parsed_schedule(loaded), minimum)
    return {
        "words": schedule_words({"schedule": schedule}, zone),
        "times": [when(t, zone) for t in times],
        "error": error,
    }


def _too_frequent(schedule: dict, minimum: timedelta) -> str:
    try:
        gap = shortest_gap(schedule)
    except ValueError:
        return _("The schedule never runs again.")
    gap_minutes = "%g" % ((gap or minimum).total_seconds() / 60)
    minimum_minutes = "%g" % (minimum.total_seconds() / 60)
    return _(
        "This schedule runs as often as every %(gap)s minutes; the tenant's minimum interval is "
        "%(minimum)s minutes (Settings), so saving will refuse it.",
        gap=gap_minutes, minimum=minimum_minutes,
    )  # fmt: skip


# --- the list, a campaign, its runs, preview and deliveries --------------------------------------


def audience_text(audience: dict, segments: dict[str, str]) -> str:
    parts = []
    if audience.get("segments"):
        parts.append(
            _("Segments") + ": " + "、".join(segments.get(s, s) for s in audience["segments"])
        )
    if audience.get("stages"):
        parts.append(_("Stages") + ": " + "、".join(stage_title(s) for s in audience["stages"]))
    if audience.get("roles"):
        parts.append(
            _("Buying roles") + ": " + "、".join(labels.buying_role(r) for r in audience["roles"])
        )
    if audience.get("oa_tag_id") is not None:
        parts.append(_("OA tag %(tag)s", tag=audience["oa_tag_id"]))
    other = sorted(set(audience) - {"segments", "stages", "roles", "oa_tag_id", "exclude"})
    parts += [f"{k}: {audience[k]}" for k in other]
    if (audience.get("exclude") or {}).get("segments"):
        parts.append(
            _("Except")
            + ": "
            + "、".join(segments.get(s, s) for s in audience["exclude"]["segments"])
        )
    return "; ".join(parts) or "—"


def _segment_titles(conn, tenant_id: str) -> dict[str, str]:
    row = conn.execute(
        "SELECT segments FROM catalogue WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    return {
        s["segment_id"]: s.get("name") or s["segment_id"] for s in (row or {}).get("segments") or []
    }


def next_run(campaign: dict, zone: str, now: datetime) -> datetime | None:
    """An active scheduled campaign's next run (from where its scheduler stands, or now)."""
    schedule = (campaign["trigger"] or {}).get("schedule")
    if campaign["status"] != "active" or not schedule:
        return None
    loaded = ScheduleSchema().load(schedule)
    after = max(filter(None, (now, campaign.get("scheduled_until"))))
    times = next_runs(loaded, zone, after, 1)
    return times[0] if times else None


def run_view(run: dict) -> dict:
    stats = run["stats"] or {}
    return {
        **run,
        "status_label": labels.run_status(run["status"]),
        "counts": [
            (labels.delivery_status(s), n)
            for s, n in sorted((stats.get("by_status") or {}).items())
        ],
        "excluded": [(labels.exclusion(r), n) for r, n in (stats.get("excluded") or {}).items()],
        "people_reached": stats.get("people_reached"),
    }


def listing(conn, tenant_id: str, zone: str, now: datetime) -> list[dict]:
    """The tenant's campaigns, newest first, with their next run and last run's stats."""
    rows = campaign_rows(conn, tenant_id, status=None, after=None, limit=LIST_LIMIT)
    segments = _segment_titles(conn, tenant_id)
    shown = []
    for row in rows:
        last = run_rows(conn, tenant_id, row["campaign_id"], after=None, limit=1)
        shown.append(
            {
                **row,
                "status_label": labels.campaign_status(row["status"]),
                "channel_label": labels.channel(row["channel"]),
                "audience_text": audience_text(row["audience"], segments),
                "schedule_text": schedule_words(row["trigger"], zone),
                "next_run": next_run(row, zone, now),
                "last_run": run_view(last[0]) if last else None,
            }
        )
    return shown


def detail(conn, campaign: dict, tenant_id: str, zone: str, now: datetime) -> dict:
    """A campaign's page: what it is, its next runs, its newest runs with their stats."""
    segments = _segment_titles(conn, tenant_id)
    content = campaign["content"]
    ids = content.get("series") or [content.get("item")]
    titles = content_titles(conn, tenant_id, ids)
    schedule = (campaign["trigger"] or {}).get("schedule")
    upcoming: list[datetime] = []
    if schedule and campaign["status"] in ("draft", "paused", "active"):
        after = max(filter(None, (now, campaign.get("scheduled_until"))))
        upcoming = next_runs(ScheduleSchema().load(schedule), zone, after)
    runs = run_rows(conn, tenant_id, campaign["campaign_id"], after=None, limit=RUNS_SHOWN)
    return {
        **campaign,
        "status_label": labels.campaign_status(campaign["status"]),
        "channel_label": labels.channel(campaign["channel"]),
        "audience_text": audience_text(campaign["audience"], segments),
        "schedule_text": schedule_words(campaign["trigger"], zone),
        "upcoming": [when(t, zone) for t in upcoming],
        "content_list": [{"id": i, "title": titles.get(i, i)} for i in ids],
        "series": bool(content.get("series")),
        "runs": [run_view(r) for r in runs],
    }


def content_titles(conn, tenant_id: str, ids: list[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT content_id, title FROM content WHERE tenant_id = %s AND content_id = ANY(%s)",
        (tenant_id, list(ids)),
    ).fetchall()
    return {r["content_id"]: r["title"] for r in rows}


def preview_view(conn, tenant_id: str, result: dict) -> dict:
    """A preview's result labelled: exclusions by reason, samples with their content's title."""
    ids = list(result["content"]) + [
        s["content_id"] for s in result["samples"] + result["excluded_samples"] if s["content_id"]
    ]
    titles = content_titles(conn, tenant_id, ids)

    def sample(s: dict) -> dict:
        return {
            **s,
            "stage_label": labels.stage(s["stage"]) if s["stage"] else "—",
            "role_label": labels.buying_role(s["role"]) or "—",
            "content_title": titles.get(s["content_id"], s["content_id"] or "—"),
            "excluded_label": labels.exclusion(s["excluded"]) if s["excluded"] else "",
        }

    return {
        **result,
        "excluded_list": sorted(
            ((labels.exclusion(r), n) for r, n in result["excluded"].items()), key=lambda x: -x[1]
        ),
        "content_list": [(titles.get(c, c), n) for c, n in result["content"].items()],
        "sample_rows": [sample(s) for s in result["samples"]],
        "excluded_rows": [sample(s) for s in result["excluded_samples"]],
    }


def deliveries(
    conn, tenant_id: str, campaign_id: str, *, status: str | None, after: int | None
) -> dict:
    """One page of a campaign's delivery log, newest first (the API's delivery_rows)."""
    rows = delivery_rows(
        conn,
        tenant_id,
        campaign_id=campaign_id,
        status=status,
        after=after,
        limit=DELIVERIES_PAGE + 1,
    )
    more = len(rows) > DELIVERIES_PAGE
    rows = rows[:DELIVERIES_PAGE]
    titles = content_titles(conn, tenant_id, [r["content_id"] for r in rows if r["content_id"]])
    shown = [
        {
            **r,
            "status_label": labels.delivery_status(r["status"]),
            "reason_label": (
                labels.exclusion(r["reason"]) if r["status"] == "excluded" else r["reason"] or ""
            ),
            "content_title": titles.get(r["content_id"], r["content_id"] or "—"),
        }
        for r in rows
    ]
    return {"rows": shown, "next": rows[-1]["delivery_id"] if more and rows else None}
