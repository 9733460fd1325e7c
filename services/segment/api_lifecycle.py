"""Admin routes of lifecycle models and the funnel report (``/lifecycle``, ``/reports/funnel``).

Models: the built-in packs for the tenant's mode (``rules/*.yaml``) and the tenant's custom
models (table ``lifecycle_models``, migration 0005), stored as the same documents and validated
by ``lifecycle.grammar.load_model``. The active one is what ``tenant_model.model_for``
evaluates with.

Views are thin: the schema validates, lifecycle/funnel functions decide, SQL here reads and
writes the segment tables through ``segment_connection()`` with bound parameters, and every
mutation is audited in its own transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from functools import cache
from urllib.parse import quote
from zoneinfo import ZoneInfo

import yaml
from flask import Response
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema
from psycopg.types.json import Jsonb

from services.segment import store
from services.segment.api_common import catalogue_changed, current_tenant, segment_connection
from services.segment.derive import HISTORY_DAYS, HISTORY_LIMIT, account_facts, contact_role
from services.segment.facts import ContactFacts
from services.segment.funnel import FunnelSpec, assemble, render_svg
from services.segment.funnel_query import funnel_tallies
from services.segment.lifecycle.grammar import BUILTIN_MODELS, RULES_DIR, ModelError, load_model
from services.segment.lifecycle.model import LifecycleModel
from services.segment.report_slots import REPORTS, claim_slot
from services.segment.scoring import score
from services.segment.tenant_model import model_for
from shared import jobs
from shared.api import (
    API_PREFIX,
    ApiError,
    Blueprint,
    audit,
    conflict,
    not_found,
    principal,
    require,
)
from shared.api.jobs import LOCATION, accepted, job_schema
from shared.api.jobs import submit as submit_job
from shared.api.jobs import view as job_view
from shared.config import Tenant
from shared.jobs import JobFailed, JobKind, Progress

MAX_CUSTOM_MODELS = 50  # per tenant: keeps GET /lifecycle a short, unpaged list
DRY_RUN_BATCH = 500
DRY_RUN_SAMPLE = 20
# Above this many contacts a dry run evaluates a deterministic sample of this many (issue 14:
# a tenant of 300k contacts took seconds and GBs).
DRY_RUN_SAMPLE_ABOVE = 20_000
DRY_RUN_JOB = "lifecycle.dry_run"
DEFAULT_MODEL = {"b2b": "aisceas", "b2c": "aarrr"}
SUBJECT_OF_MODE = {"b2b": "accounts", "b2c": "contacts"}


# --- models: documents and look-ups --------------------------------------------------------------


@cache
def builtin_document(name: str, mode: str) -> dict:
    """The built-in pack's document for a mode, as written (YAML anchors resolved)."""
    doc = yaml.safe_load((RULES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return doc[mode]


def _custom_rows(conn, tenant: Tenant, name: str | None = None) -> list[dict]:
    return conn.execute(
        "SELECT name, document, created_at, updated_at FROM lifecycle_models "
        "WHERE tenant_id = %(tenant)s AND (%(name)s::text IS NULL OR name = %(name)s) "
        "ORDER BY name",
        {"tenant": tenant.id, "name": name},
    ).fetchall()


def active_model_name(conn, tenant: Tenant) -> str:
    """What derive evaluates with: the named model, or the mode's default when it is missing."""
    return model_for(tenant, conn).name


def _model_view(name: str, document: dict, *, builtin: bool, active: bool, row=None) -> dict:
    return {
        "name": name,
        "title": document.get("title", name),
        "description": document.get("description", ""),
        "builtin": builtin,
        "active": active,
        "stages": [
            {"name": s["name"], "title": s.get("title", s["name"].title()), "when": s["when"]}
            for s in document.get("stages", ())
        ],
        "side_stages": [
            {"name": s["name"], "title": s.get("title", s["name"].title())}
            for s in document.get("side_stages", ())
        ],
        "regress": [
            {"from": list(r["from"]), "to": r["to"], "when": r["when"]}
            for r in document.get("regress", ())
        ],
        "created_at": row["created_at"] if row else None,
        "updated_at": row["updated_at"] if row else None,
    }


def _find_document(conn, tenant: Tenant, name: str) -> tuple[dict, dict | None]:
    """(document, stored row or None for a built-in); 404 when the tenant has no such model."""
    if name in BUILTIN_MODELS:
        return builtin_document(name, tenant.mode), None
    rows = _custom_rows(conn, tenant, name)
    if not rows:
        raise not_found("lifecycle model", name)
    return rows[0]["document"], rows[0]


def _load(document: dict) -> LifecycleModel:
    try:
        return load_model(document)
    except ModelError as exc:
        raise ApiError(400, "invalid_model", exc.message, exc.paths) from None


# --- schemas -------------------------------------------------------------------------------------

_CONDITION = {
    "type": "object",
    "description": "A condition (grammar: services/segment/lifecycle/grammar.py), e.g. "
    '{"event": ["oa.click", "oa.view"], "min": 2, "within_days": 30}',
}


class StageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    when = fields.Dict(required=True, metadata=_CONDITION)


class SideStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)


class RegressSchema(Schema):
    from_ = fields.List(fields.String(), data_key="from", attribute="from", required=True)
    to = fields.String(required=True)
    when = fields.Dict(required=True, metadata=_CONDITION)


class LifecycleModelSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    builtin = fields.Boolean(required=True)
    active = fields.Boolean(required=True, metadata={"description": "The tenant evaluates with it"})
    stages = fields.List(fields.Nested(StageSchema), required=True)
    side_stages = fields.List(fields.Nested(SideStageSchema), required=True)
    regress = fields.List(fields.Nested(RegressSchema), required=True)
    created_at = fields.DateTime(allow_none=True, metadata={"description": "null for built-ins"})
    updated_at = fields.DateTime(allow_none=True)


class LifecycleModelListSchema(Schema):
    active = fields.String(required=True)
    mode = fields.String(required=True, metadata={"enum": ["b2b", "b2c"]})
    items = fields.List(fields.Nested(LifecycleModelSchema), required=True)


class ModelDocumentSchema(Schema):
    """A model document, as in services/segment/rules/*.yaml; validated by load_model (400
    ``invalid_model``, details: the path of every bad field)."""

    class Meta:
        unknown = INCLUDE  # load_model reports unknown keys with their paths

    name = fields.Raw(metadata={"type": "string", "description": "Default: the name in the path"})
    title = fields.Raw(metadata={"type": "string"})
    description = fields.Raw(metadata={"type": "string"})
    stages = fields.Raw(
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "description": "Required: the funnel stages in order",
        },
    )
    side_stages = fields.Raw(metadata={"type": "array", "items": {"type": "object"}})
    regress = fields.Raw(metadata={"type": "array", "items": {"type": "object"}})


class DryRunSchema(Schema):
    model = fields.Dict(
        load_default=None,
        metadata={"description": "An unsaved model document to test instead of the named one"},
    )
    now = fields.AwareDateTime(
        load_default=None, metadata={"description": "Evaluate as of (default: now)"}
    )


class MoveCountSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", required=True, allow_none=True)
    to = fields.String(required=True)
    count = fields.Integer(required=True)


class MoveSampleSchema(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    from_ = fields.String(data_key="from", attribute="from", required=True, allow_none=True)
    to = fields.String(required=True)
    cause = fields.String(required=True, metadata={"description": "The rule that held"})
    path = fields.List(fields.String(), required=True, metadata={"description": "Stages entered"})


class DryRunResultSchema(Schema):
    model = fields.String(required=True)
    now = fields.DateTime(required=True)
    evaluated = fields.Integer(required=True, metadata={"description": "Contacts evaluated"})
    moving = fields.Integer(required=True, metadata={"description": "Contacts that would move"})
    moves = fields.List(fields.Nested(MoveCountSchema), required=True)
    sample = fields.List(fields.Nested(MoveSampleSchema), required=True)
    sampled = fields.Boolean(
        required=True,
        metadata={"description": "A big tenant: the counts are of a deterministic sample"},
    )
    population = fields.Integer(required=True, metadata={"description": "The tenant's contacts"})
    sample_size = fields.Integer(
        required=True, allow_none=True, metadata={"description": "Contacts sampled, if sampled"}
    )


DryRunJobSchema = job_schema("DryRunJob", DryRunResultSchema)


class FunnelQuerySchema(Schema):
    model = fields.String(
        load_default=None, metadata={"description": "Default: the tenant's active model"}
    )
    since = fields.Date(load_default=None, metadata={"description": "From this day (tenant tz)"})
    until = fields.Date(load_default=None, metadata={"description": "Up to this day, inclusive"})
    mode = fields.String(
        load_default=None,
        validate=validate.OneOf(["b2b", "b2c"]),
        metadata={"description": "b2b: accounts, b2c: contacts (default: the tenant's mode)"},
    )
    subject = fields.String(load_default=None, validate=validate.OneOf(["contacts", "accounts"]))
    segment = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Contacts in this segment (accounts: with a member in it)"},
    )
    account_id = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "svg"]))

    @validates_schema
    def _consistent(self, data: dict, **kwargs) -> None:
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("Must not be after until.", "since")
        mode, subject = data.get("mode"), data.get("subject")
        if mode and subject and SUBJECT_OF_MODE[mode] != subject:
            raise ValidationError(f"mode {mode} reports on {SUBJECT_OF_MODE[mode]}.", "subject")


class FunnelStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    position = fields.Integer(required=True)
    count = fields.Integer(required=True, metadata={"description": "In the stage now"})
    entered = fields.Integer(required=True, metadata={"description": "Distinct subjects entering"})
    reached = fields.Integer(
        required=True, metadata={"description": "Reached this stage or a later one"}
    )
    conversion = fields.Float(
        required=True, allow_none=True, metadata={"description": "reached / previous reached"}
    )
    median_days = fields.Float(required=True, allow_none=True)
    stays = fields.Integer(required=True, metadata={"description": "Completed stays measured"})


class FunnelSideStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    count = fields.Integer(required=True)
    entered = fields.Integer(required=True)
    median_days = fields.Float(required=True, allow_none=True)
    stays = fields.Integer(required=True)


class ConversionSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", required=True)
    to = fields.String(required=True)
    reached_from = fields.Integer(required=True)
    reached_to = fields.Integer(required=True)
    rate = fields.Float(required=True, allow_none=True)


class FunnelFiltersSchema(Schema):
    since = fields.Date(allow_none=True)
    until = fields.Date(allow_none=True)
    segment = fields.String(allow_none=True)
    account_id = fields.String(allow_none=True)


class FunnelSchema(Schema):
    model = fields.String(required=True)
    title = fields.String(required=True)
    active = fields.Boolean(required=True, metadata={"description": "The tenant's active model"})
    subject = fields.String(required=True, metadata={"enum": ["contacts", "accounts"]})
    filters = fields.Nested(FunnelFiltersSchema, required=True)
    total = fields.Integer(required=True, metadata={"description": "Subjects in scope"})
    unstaged = fields.Integer(required=True)
    stages = fields.List(fields.Nested(FunnelStageSchema), required=True)
    side_stages = fields.List(fields.Nested(FunnelSideStageSchema), required=True)
    conversions = fields.List(fields.Nested(ConversionSchema), required=True)


# --- /lifecycle ----------------------------------------------------------------------------------

lifecycle = Blueprint("lifecycle", __name__, description="Lifecycle models (AARRR, AISCEAS, own)")


@lifecycle.route("/lifecycle", methods=["GET"])
@require("viewer")
@lifecycle.response(200, LifecycleModelListSchema)
def list_models():
    """The models available to the tenant and which one is active

    The built-in models for the tenant's mode, then its custom models by name.
    """
    tenant = current_tenant()
    with segment_connection() as conn:
        active = active_model_name(conn, tenant)
        customs = _custom_rows(conn, tenant)
    items = [
        _model_view(name, builtin_document(name, tenant.mode), builtin=True, active=name == active)
        for name in BUILTIN_MODELS
    ]
    items += [
        _model_view(r["name"], r["document"], builtin=False, active=r["name"] == active, row=r)
        for r in customs
    ]
    return {"active": active, "mode": tenant.mode, "items": items}


@lifecycle.route("/lifecycle/<name>", methods=["GET"])
@require("viewer")
@lifecycle.response(200, LifecycleModelSchema)
def get_model(name: str):
    """One model: stages with their conditions, side stages, regress rules"""
    tenant = current_tenant()
    with segment_connection() as conn:
        document, row = _find_document(conn, tenant, name)
        active = active_model_name(conn, tenant)
    return _model_view(name, document, builtin=row is None, active=name == active, row=row)


@lifecycle.route("/lifecycle/<name>", methods=["PUT"])
@require("admin")
@lifecycle.arguments(ModelDocumentSchema)
@lifecycle.response(200, LifecycleModelSchema, description="Replaced")
@lifecycle.alt_response(201, schema=LifecycleModelSchema, description="Created")
@lifecycle.alt_response(409, description="A built-in name, or too many custom models")
def put_model(document: dict, name: str):
    """Create or replace a custom model

    The body is a model document as in `rules/*.yaml` (one mode's variant). An invalid one is a
    400 `invalid_model` whose `details` map each bad field's path to its messages.
    """
    if name in BUILTIN_MODELS:
        raise conflict(f"{name!r} is a built-in model; choose another name")
    document = dict(document)
    if document.setdefault("name", name) != name:
        raise ApiError(
            400,
            "invalid_model",
            "the document's name differs from the name in the path",
            {"name": [f"Must be {name!r} (the name in the path)."]},
        )
    model = _load(document)
    tenant = current_tenant()
    with segment_connection() as conn:
        exists = bool(_custom_rows(conn, tenant, name))
        if not exists:
            n = conn.execute(
                "SELECT count(*) AS n FROM lifecycle_models WHERE tenant_id = %s", (tenant.id,)
            ).fetchone()["n"]
            if n >= MAX_CUSTOM_MODELS:
                raise ApiError(
                    409, "too_many_models", f"a tenant has at most {MAX_CUSTOM_MODELS} models"
                )
        row = conn.execute(
            "INSERT INTO lifecycle_models (tenant_id, name, document) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant_id, name) DO UPDATE "
            "SET document = EXCLUDED.document, updated_at = clock_timestamp() "
            "RETURNING name, document, created_at, updated_at",
            (tenant.id, name, Jsonb(document)),
        ).fetchone()
        audit(
            conn,
            principal(),
            tenant.id,
            "lifecycle.replace" if exists else "lifecycle.create",
            name,
            {"stages": list(model.stage_names), "side_stages": list(model.side_stages)},
        )
        catalogue_changed(conn)
        active = active_model_name(conn, tenant)
    view = _model_view(name, row["document"], builtin=False, active=name == active, row=row)
    return view, 200 if exists else 201


@lifecycle.route("/lifecycle/<name>", methods=["DELETE"])
@require("admin")
@lifecycle.response(204)
@lifecycle.alt_response(409, description="A built-in model, or the active one")
def delete_model(name: str):
    """Delete a custom model (not a built-in, not the active one)"""
    if name in BUILTIN_MODELS:
        raise conflict(f"{name!r} is a built-in model")
    tenant = current_tenant()
    if tenant.lifecycle_model == name:
        raise conflict(f"{name!r} is the tenant's active model; switch the tenant first")
    with segment_connection() as conn:
        row = conn.execute(
            "DELETE FROM lifecycle_models WHERE tenant_id = %s AND name = %s RETURNING name",
            (tenant.id, name),
        ).fetchone()
        if row is None:
            raise not_found("lifecycle model", name)
        audit(conn, principal(), tenant.id, "lifecycle.delete", name, {})
        catalogue_changed(conn)
    return None


# --- dry run -------------------------------------------------------------------------------------


def _contact_facts(mode: str, row: dict, events, account_row, now: datetime) -> ContactFacts:
    """The facts derive.py gives the rules for a contact at ``now`` (see derive._derive)."""
    seen = tuple(e for e in events if e.occurred_at <= now)
    guess = contact_role(row)
    return ContactFacts(
        contact_id=row["contact_id"],
        tenant_mode=mode,
        stage=row["stage"],
        score=score(seen, now),
        role=guess.role if guess else None,
        attributes=row["attributes"],
        tags=frozenset(row["tags"]),
        events=seen,
        account=account_facts(account_row) if account_row else None,
        created_at=row["created_at"],
    )


def _batches(conn, tenant_id: str, population: int) -> Iterator[list[dict]]:
    """The tenant's contacts in batches: all of them, or above DRY_RUN_SAMPLE_ABOVE a
    deterministic sample of that many (by a hash of the id: the same contacts every time)."""
    if population > DRY_RUN_SAMPLE_ABOVE:
        ids = [
            r["contact_id"]
            for r in conn.execute(
                "SELECT contact_id FROM contacts WHERE tenant_id = %s "
                "ORDER BY md5(contact_id), contact_id LIMIT %s",
                (tenant_id, DRY_RUN_SAMPLE_ABOVE),
            )
        ]
        for i in range(0, len(ids), DRY_RUN_BATCH):
            yield conn.execute(
                "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id = ANY(%s) "
                "ORDER BY contact_id",
                (tenant_id, ids[i : i + DRY_RUN_BATCH]),
            ).fetchall()
        return
    after = ""
    while True:
        rows = conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id > %s "
            "ORDER BY contact_id LIMIT %s",
            (tenant_id, after, DRY_RUN_BATCH),
        ).fetchall()
        if not rows:
            return
        after = rows[-1]["contact_id"]
        yield rows


def dry_run(conn, tenant_id: str, mode: str, model: LifecycleModel, now: datetime,
            progress: Progress = lambda fraction: None) -> dict:  # fmt: skip
    """The tenant's contacts (or a sample of a big tenant's) evaluated with ``model`` at
    ``now``, in batches. Reads only (the caller's transaction is read-only): who would move,
    from where to where, and why."""
    pairs: Counter[tuple[str | None, str]] = Counter()
    sample: list[dict] = []
    evaluated = 0
    since = now - timedelta(days=HISTORY_DAYS)
    population = conn.execute(
        "SELECT count(*) AS n FROM contacts WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()["n"]
    sampled = population > DRY_RUN_SAMPLE_ABOVE
    for rows in _batches(conn, tenant_id, population):
        evaluated += len(rows)
        history = store.contact_events(
            conn, tenant_id, [r["contact_id"] for r in rows], since, HISTORY_LIMIT
        )
        accounts = store.accounts_of(conn, tenant_id, rows)
        for row in rows:
            facts = _contact_facts(
                mode, row, history[row["contact_id"]], accounts.get(row["account_id"]), now
            )
            moves = model.settle(facts, now)
            if not moves:
                continue
            pairs[(row["stage"], moves[-1].to_stage)] += 1
            if len(sample) < DRY_RUN_SAMPLE:
                sample.append(
                    {
                        "contact_id": row["contact_id"],
                        "name": row["name"],
                        "from": row["stage"],
                        "to": moves[-1].to_stage,
                        "cause": "; then ".join(m.cause for m in moves),
                        "path": [m.to_stage for m in moves],
                    }
                )
        progress(evaluated / max(1, min(population, DRY_RUN_SAMPLE_ABOVE)))
    moves_out = [
        {"from": a, "to": b, "count": n}
        for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1]))
    ]
    return {
        "model": model.name,
        "now": now,
        "evaluated": evaluated,
        "moving": sum(pairs.values()),
        "moves": moves_out,
        "sample": sample,
        "sampled": sampled,
        "population": population,
        "sample_size": evaluated if sampled else None,
    }


def _run_dry_run(conn, job: dict, progress: Progress) -> dict:
    """The background job (shared/jobs.py) of a dry run: the model document and the tenant's
    mode as they were when it was asked for."""
    # Read-only and one snapshot for every batch: a dry run can neither write nor block.
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    params = job["params"]
    try:
        model = load_model(params["document"])
    except ModelError as exc:  # checked when queued; a built-in pack changed since
        raise JobFailed(f"invalid model: {exc.message}") from None
    now = datetime.fromisoformat(params["now"])
    return dry_run(conn, job["tenant_id"], params["mode"], model, now, progress)


JOBS = (JobKind(DRY_RUN_JOB, "segment", _run_dry_run),)


def _dry_run_url(name: str, job_id: str) -> str:
    return f"{API_PREFIX}/lifecycle/{quote(name, safe='')}/dry-run/{job_id}"


@lifecycle.route("/lifecycle/<name>/dry-run", methods=["POST"])
@require("operator")
@lifecycle.arguments(DryRunSchema)
@lifecycle.response(202, DryRunJobSchema, headers=LOCATION, description="Queued: poll Location")
@lifecycle.alt_response(409, description="A dry run of the tenant is queued or running")
def dry_run_model(body: dict, name: str):
    """Queue a dry run: who would move under a model, and why, without changing anything

    Evaluates the tenant's contacts with the named model (or the unsaved `model` document of
    the body) as of `now`, in the background: the answer is the job, its `Location` the URL to
    poll until it is `done` (its `result`) or `failed` (its `error`). A tenant has one dry run
    queued or running at a time (409 names it). Above a size, a deterministic sample of the
    contacts is evaluated (`result.sampled`). Nothing is written and no row is locked.
    """
    tenant = current_tenant()
    now = body["now"] or datetime.now(UTC)
    with segment_connection() as conn:
        if body["model"] is not None:
            document = dict(body["model"])
            document.setdefault("name", name)
        else:
            document, _ = _find_document(conn, tenant, name)
        _load(document)  # an invalid model is a 400 now, not a failed job
        params = {"document": document, "now": now, "mode": tenant.mode}
        job = submit_job(conn, tenant=tenant.id, kind=DRY_RUN_JOB, subject=name, params=params,
                         locate=_dry_run_url)  # fmt: skip
    return accepted(job, _dry_run_url)


@lifecycle.route("/lifecycle/<name>/dry-run/<job_id>", methods=["GET"])
@require("operator")
@lifecycle.response(200, DryRunJobSchema)
def get_dry_run(name: str, job_id: str):
    """A queued dry run: its status, progress, and once done its result"""
    tenant = current_tenant()
    with segment_connection() as conn:
        job = jobs.get(conn, tenant=tenant.id, kind=DRY_RUN_JOB, subject=name, job_id=job_id)
    if job is None:
        raise not_found("dry run", job_id)
    result = job["result"]
    if result is not None:
        result = {**result, "now": datetime.fromisoformat(result["now"])}
    return job_view(job, result)


# --- /reports/funnel -----------------------------------------------------------------------------

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


def _spec(name: str, document: dict) -> FunnelSpec:
    view = _model_view(name, document, builtin=False, active=False)
    return FunnelSpec(
        name=name,
        title=view["title"],
        stages=tuple((s["name"], s["title"]) for s in view["stages"]),
        side_stages=tuple((s["name"], s["title"]) for s in view["side_stages"]),
    )


def _day_start(day, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


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

    Subjects are contacts (B2C) or accounts (B2B) by default; `since`/`until` are days in the
    tenant's time zone, applied to when subjects entered stages. `format=svg` returns a chart.
    """
    tenant = current_tenant()
    subject = args["subject"] or SUBJECT_OF_MODE[args["mode"] or tenant.mode]
    tz = ZoneInfo(tenant.timezone)
    since = _day_start(args["since"], tz) if args["since"] else None
    until = _day_start(args["until"] + timedelta(days=1), tz) if args["until"] else None
    params = {"tenant": tenant.id, "account": args["account_id"], "segment": args["segment"]}
    with segment_connection() as conn:
        active = active_model_name(conn, tenant)
        name = args["model"] or active
        document, _ = _find_document(conn, tenant, name)
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
        # Counted by PostgreSQL (funnel_query): the API holds a few rows per stage, never the
        # tenant's contacts or history. Subjects' stage columns belong to the active model;
        # another model's funnel is read from its recorded history alone.
        spec = _spec(name, document)
        claim_slot(conn, tenant.id)  # the database's CPU: a few reports per tenant, cluster-wide
        tallies = funnel_tallies(
            conn,
            spec,
            _SCOPE[subject],
            params,
            kind=subject.removesuffix("s"),
            active=name == active,
            since=since,
            until=until,
        )
    report = assemble(spec, tallies)
    filters = {k: args[k] for k in ("since", "until", "segment", "account_id")}
    report = {**report, "active": name == active, "subject": subject, "filters": filters}
    if args["format"] == "svg":
        shown = [f"{subject}"] + [f"{k} {v}" for k, v in filters.items() if v is not None]
        return Response(render_svg(report, subtitle=", ".join(shown)), mimetype="image/svg+xml")
    return report


BLUEPRINTS = (lifecycle, reports)
