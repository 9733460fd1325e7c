"""The lifecycle funnel report (``/reports/funnel``): counts per stage, conversion, time in stage.

Counted by PostgreSQL (funnel_query.py) over the scope queries below, assembled and drawn by
funnel.py; the model documents are looked up as /lifecycle does (api_lifecycle.py).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Response
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.segment.api_common import current_tenant, segment_connection
from services.segment.api_lifecycle import active_model_name, find_document, model_view
from services.segment.funnel import FIGURES, FunnelSpec, assemble, render_svg
from services.segment.funnel_query import funnel_tallies
from services.segment.report_slots import REPORTS, claim_slot
from shared.api import (
    Blueprint,
    invalid,
    not_found,
    require,
)
from shared.source_channels import SOURCE_CHANNELS
from shared.vocabulary import MODES

SUBJECT_OF_MODE = {"b2b": "accounts", "b2c": "contacts"}


# The longest period a report covers: its weekly rows stay a few hundred.
MAX_PERIOD_DAYS = 3660
# Without `from`, the period is the last 90 days ending at `to` (today by default): a report
# reads the history of its period only, so the default one stays quick on a big tenant.
DEFAULT_PERIOD_DAYS = 90
# Days a period may name: weeks and day ends are computed past `to`, which must stay a date.
DAYS = validate.Range(
    min=date(1970, 1, 1), max=date(9998, 12, 31), error="must be between {min} and {max}"
)


class FunnelQuerySchema(Schema):
    model = fields.String(
        load_default=None, metadata={"description": "Default: the tenant's active model"}
    )
    from_ = fields.Date(
        data_key="from",
        load_default=None,
        validate=DAYS,
        metadata={
            "description": "The period's first day, in the tenant's time zone (default: "
            f"{DEFAULT_PERIOD_DAYS} days ending at to; for all time, a day before the history "
            f"begins, within {MAX_PERIOD_DAYS} days of to)"
        },
    )
    to = fields.Date(
        load_default=None,
        validate=DAYS,
        metadata={
            "description": "The period's last day (inclusive), in the tenant's time zone "
            "(default: today there)"
        },
    )
    mode = fields.String(
        load_default=None,
        validate=validate.OneOf(MODES),
        metadata={"description": "b2b: accounts, b2c: contacts (default: the tenant's mode)"},
    )
    subject = fields.String(load_default=None, validate=validate.OneOf(["contacts", "accounts"]))
    segment = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Contacts in this segment (accounts: with a member in it)"},
    )
    account_id = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    source_channel = fields.String(
        load_default=None,
        validate=validate.OneOf(SOURCE_CHANNELS),
        metadata={
            "description": "Subjects whose FIRST source channel is this "
            '(docs/domain.md "Channel codes")'
        },
    )
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "svg"]))

    @validates_schema
    def _consistent(self, data: dict, **kwargs) -> None:
        first, last = data.get("from_"), data.get("to")
        if first and last and first > last:
            raise ValidationError(
                f"The period is empty: from ({first}) is after to ({last}).", "from"
            )
        if first and last and (last - first).days >= MAX_PERIOD_DAYS:
            raise ValidationError(
                f"The period is longer than {MAX_PERIOD_DAYS} days; ask for a shorter one.",
                "from",
            )
        mode, subject = data.get("mode"), data.get("subject")
        if mode and subject and SUBJECT_OF_MODE[mode] != subject:
            raise ValidationError(f"mode {mode} reports on {SUBJECT_OF_MODE[mode]}.", "subject")


def _figure(name: str, **kwargs) -> dict:
    return {"required": True, "metadata": {"description": FIGURES[name]}, **kwargs}


class FunnelStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    position = fields.Integer(required=True)
    entered = fields.Integer(**_figure("entered"))
    now = fields.Integer(**_figure("now"))
    converted = fields.Integer(**_figure("converted", allow_none=True))
    conversion = fields.Float(**_figure("conversion", allow_none=True))
    median_days = fields.Float(**_figure("median_days", allow_none=True))
    stays = fields.Integer(**_figure("stays"))


class FunnelSideStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    entered = fields.Integer(**_figure("entered"))
    now = fields.Integer(**_figure("now"))
    median_days = fields.Float(**_figure("median_days", allow_none=True))
    stays = fields.Integer(**_figure("stays"))


class ConversionSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", required=True)
    to = fields.String(required=True)
    entered = fields.Integer(
        required=True, metadata={"description": "Subjects that entered the from stage"}
    )
    converted = fields.Integer(**_figure("converted"))
    rate = fields.Float(**_figure("conversion", allow_none=True))


class FunnelWeekSchema(Schema):
    week = fields.String(required=True, metadata={"description": "ISO week, e.g. 2026-W02"})
    start = fields.DateTime(
        required=True, metadata={"description": "Monday 00:00 in the tenant's time zone"}
    )
    end = fields.DateTime(required=True, metadata={"description": "The next Monday 00:00"})
    entered = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Per stage: distinct subjects that entered it that week"},
    )


class FunnelPeriodSchema(Schema):
    from_ = fields.Date(
        data_key="from",
        attribute="from",
        required=True,
        metadata={"description": f"As asked, or {DEFAULT_PERIOD_DAYS} days ending at to"},
    )
    to = fields.Date(required=True, metadata={"description": "As asked, or today"})
    start = fields.DateTime(
        required=True,
        metadata={"description": "from's 00:00 in the tenant's time zone, with its offset"},
    )
    end = fields.DateTime(
        required=True,
        metadata={"description": "The day after to, 00:00 (exclusive), with its offset"},
    )
    time_zone = fields.String(required=True, metadata={"description": "The tenant's zone"})


class FunnelFiltersSchema(Schema):
    segment = fields.String(allow_none=True)
    account_id = fields.String(allow_none=True)
    source_channel = fields.String(allow_none=True)


class FunnelSchema(Schema):
    model = fields.String(required=True)
    title = fields.String(required=True)
    active = fields.Boolean(required=True, metadata={"description": "The tenant's active model"})
    subject = fields.String(required=True, metadata={"enum": ["contacts", "accounts"]})
    generated_at = fields.DateTime(
        required=True, metadata={"description": "In the tenant's time zone, with its offset"}
    )
    period = fields.Nested(FunnelPeriodSchema, required=True)
    filters = fields.Nested(FunnelFiltersSchema, required=True)
    total = fields.Integer(required=True, metadata={"description": "Subjects in scope"})
    unstaged = fields.Integer(required=True)
    figures = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "What each figure of the report means"},
    )
    stages = fields.List(fields.Nested(FunnelStageSchema), required=True)
    side_stages = fields.List(fields.Nested(FunnelSideStageSchema), required=True)
    conversions = fields.List(fields.Nested(ConversionSchema), required=True)
    weeks = fields.List(
        fields.Nested(FunnelWeekSchema), required=True, metadata={"description": FIGURES["weeks"]}
    )


reports = Blueprint("reports", __name__, description="Reports: the lifecycle funnel")

_SCOPE = {
    "contacts": """SELECT c.contact_id AS subject_id, c.stage, c.stage_since FROM contacts c
        WHERE c.tenant_id = %(tenant)s
          AND (%(account)s::text IS NULL OR c.account_id = %(account)s)
          AND (%(segment)s::text IS NULL OR EXISTS (
                SELECT 1 FROM segment_members m WHERE m.tenant_id = c.tenant_id
                   AND m.segment_id = %(segment)s AND m.contact_id = c.contact_id))""",
    "accounts": """SELECT a.account_id AS subject_id, a.stage, a.stage_since FROM accounts a
        WHERE a.tenant_id = %(tenant)s AND a.merged_into IS NULL
          AND (%(account)s::text IS NULL OR a.account_id = %(account)s)
          AND (%(segment)s::text IS NULL OR EXISTS (
                SELECT 1 FROM contacts c JOIN segment_members m
                    ON m.tenant_id = c.tenant_id AND m.contact_id = c.contact_id
                 WHERE c.tenant_id = a.tenant_id AND c.account_id = a.account_id
                   AND m.segment_id = %(segment)s))""",
}


# The cut by first source channel, appended to a scope only when asked for: a statement of its
# own, so that its plan (psycopg prepares a statement run often) reads the partial index on
# first_channel instead of filtering every subject (bench/funnel.py).
_SOURCE_CUT = {
    "contacts": "\n          AND c.first_channel = %(source)s",
    "accounts": "\n          AND a.first_channel = %(source)s",
}


def _spec(name: str, document: dict) -> FunnelSpec:
    view = model_view(name, document, builtin=False, active=False)
    return FunnelSpec(
        name=name,
        title=view["title"],
        stages=tuple((s["name"], s["title"]) for s in view["stages"]),
        side_stages=tuple((s["name"], s["title"]) for s in view["side_stages"]),
    )


def _day_start(day, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _period(first: date | None, last: date | None, tz: ZoneInfo) -> tuple[date, date]:
    """The period's first and last days: `to` defaults to today in the tenant's zone, `from`
    to the last DEFAULT_PERIOD_DAYS days ending at `to`. (Both given: checked by the schema.)"""
    last = last or datetime.now(tz).date()
    if first is None:
        return last - timedelta(days=DEFAULT_PERIOD_DAYS - 1), last
    if first > last:
        raise invalid(
            f"The period is empty: from ({first}) is after to ({last}, today).",
            {"from": ["after to"]},
        )
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise invalid(
            f"The period is longer than {MAX_PERIOD_DAYS} days (to is today, {last}); "
            "ask for a shorter one.",
            {"from": [f"longer than {MAX_PERIOD_DAYS} days"]},
        )
    return first, last


def _period_text(first: date, last: date, zone: str) -> str:
    """The chart's period line (Chinese, like its legend)."""
    return f"统计期：{first} 至 {last}（{zone}）"


def funnel_report(
    conn, tenant, name: str, document: dict, *, active: bool, subject: str, params: dict,
    since: datetime, until: datetime,
) -> dict:  # fmt: skip
    """The funnel of model ``name`` (``document``) over ``subject`` (contacts or accounts) that
    entered stages in [since, until): GET /reports/funnel's figures, the console's too.

    Counted by PostgreSQL (funnel_query): the caller holds a few rows per stage, never the
    tenant's contacts or history. Subjects' stage columns belong to the active model; another
    model's funnel is read from its recorded history alone.
    """
    tz = ZoneInfo(tenant.timezone)
    spec = _spec(name, document)
    scope = _SCOPE[subject] + (_SOURCE_CUT[subject] if params.get("source") else "")
    tallies = funnel_tallies(
        conn, spec, scope, params, kind=subject.removesuffix("s"), active=active,
        since=since, until=until, tz=tz,
    )  # fmt: skip
    return assemble(spec, tallies, since=since, until=until, tz=tz)


def default_period(tenant) -> tuple[datetime, datetime]:
    """The default period of the report (the last DEFAULT_PERIOD_DAYS days to today, in the
    tenant's zone) as instants: [since, until)."""
    tz = ZoneInfo(tenant.timezone)
    first, last = _period(None, None, tz)
    return _day_start(first, tz), _day_start(last + timedelta(days=1), tz)


@reports.route("/reports/funnel", methods=["GET"])
@require("viewer")
@reports.arguments(FunnelQuerySchema, location="query")
@reports.response(200, FunnelSchema)
@reports.doc(
    responses={
        "200": {
            "description": "The report (JSON), or with format=svg its chart",
            "content": {
                "image/svg+xml": {
                    "schema": {"type": "string", "description": "With format=svg: a bar chart"}
                }
            },
        }
    }
)
@REPORTS.per_tenant
def funnel(args: dict):
    """The lifecycle funnel: counts per stage, step conversion, median time in stage

    Subjects are contacts (B2C) or accounts (B2B) by default; the period `from`/`to` is days
    in the tenant's time zone, applied to when subjects entered stages (default: the last 90
    days ending at `to`, today by default), and every instant in the report is in that zone.
    `figures` says what each number means; `weeks` is the stage movement per ISO week.
    `format=svg` returns a chart with a legend (in Chinese).
    """
    tenant = current_tenant()
    subject = args["subject"] or SUBJECT_OF_MODE[args["mode"] or tenant.mode]
    tz = ZoneInfo(tenant.timezone)
    first, last = _period(args["from_"], args["to"], tz)
    since, until = _day_start(first, tz), _day_start(last + timedelta(days=1), tz)
    params = {"tenant": tenant.id, "account": args["account_id"], "segment": args["segment"],
              "source": args["source_channel"]}  # fmt: skip
    with segment_connection() as conn:
        active = active_model_name(conn, tenant)
        name = args["model"] or active
        document, _ = find_document(conn, tenant, name)
        if (
            args["segment"]
            and not conn.execute(
                "SELECT 1 FROM segments WHERE tenant_id = %s AND segment_id = %s",
                (tenant.id, args["segment"]),
            ).fetchone()
        ):
            raise not_found("segment", args["segment"])
        if (
            args["account_id"]
            and not conn.execute(
                "SELECT 1 FROM accounts WHERE tenant_id = %s AND account_id = %s",
                (tenant.id, args["account_id"]),
            ).fetchone()
        ):
            raise not_found("account", args["account_id"])
        claim_slot(conn, tenant.id)  # the database's CPU: a few reports per tenant, cluster-wide
        report = funnel_report(
            conn, tenant, name, document, active=name == active, subject=subject,
            params=params, since=since, until=until,
        )  # fmt: skip
    filters = {k: args[k] for k in ("segment", "account_id", "source_channel")}
    period = {"from": first, "to": last, "start": since, "end": until,
              "time_zone": tenant.timezone}  # fmt: skip
    report = {
        **report,
        "active": name == active,
        "subject": subject,
        "generated_at": datetime.now(tz),
        "period": period,
        "filters": filters,
    }
    if args["format"] == "svg":
        shown = [subject, _period_text(first, last, tenant.timezone)]
        shown += [f"{k} {v}" for k, v in filters.items() if v is not None]
        return Response(render_svg(report, subtitle=", ".join(shown)), mimetype="image/svg+xml")
    return report
