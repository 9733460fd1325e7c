"""Admin routes of lifecycle models (``/lifecycle``): list, read, write, delete, dry run.

Models: the built-in packs for the tenant's mode (``rules/*.yaml``) and the tenant's custom
models (table ``lifecycle_models``, migration 0005), stored as the same documents and validated
by ``lifecycle.grammar.load_model``. The active one is what ``tenant_model.model_for``
evaluates with.

Views are thin: the schema validates, lifecycle functions decide, SQL here reads and writes the
segment tables through ``segment_connection()`` with bound parameters, and every mutation is
audited in its own transaction. A dry run is a background job (dry_runs.py); the funnel report,
which looks models up as these routes do, is api_funnel.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from urllib.parse import quote

import yaml
from marshmallow import INCLUDE, Schema, fields
from psycopg.types.json import Jsonb

from services.segment.api_common import catalogue_changed, current_tenant, segment_connection
from services.segment.dry_runs import DRY_RUN_JOB
from services.segment.lifecycle.grammar import RULES_DIR, ModelError, load_model
from services.segment.lifecycle.model import LifecycleModel
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
from shared.tenants import Tenant
from shared.vocabulary import BUILTIN_MODELS, MODES, STAGE_FLAGS

MAX_CUSTOM_MODELS = 50  # per tenant: keeps GET /lifecycle a short, unpaged list


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


def model_view(name: str, document: dict, *, builtin: bool, active: bool, row=None) -> dict:
    return {
        "name": name,
        "title": document.get("title", name),
        "description": document.get("description", ""),
        "builtin": builtin,
        "active": active,
        "stages": [
            {
                "name": s["name"],
                "title": s.get("title", s["name"].title()),
                "when": s["when"],
                "flags": list(s.get("flags", ())),
            }
            for s in document.get("stages", ())
        ],
        "side_stages": [
            {
                "name": s["name"],
                "title": s.get("title", s["name"].title()),
                "flags": list(s.get("flags", ())),
            }
            for s in document.get("side_stages", ())
        ],
        "regress": [
            {"from": list(r["from"]), "to": r["to"], "when": r["when"]}
            for r in document.get("regress", ())
        ],
        "created_at": row["created_at"] if row else None,
        "updated_at": row["updated_at"] if row else None,
    }


def find_document(conn, tenant: Tenant, name: str) -> tuple[dict, dict | None]:
    """(document, stored row or None for a built-in); 404 when the tenant has no such model."""
    if name in BUILTIN_MODELS:
        return builtin_document(name, tenant.mode), None
    rows = _custom_rows(conn, tenant, name)
    if not rows:
        raise not_found("lifecycle model", name)
    return rows[0]["document"], rows[0]


def load_or_400(document: dict) -> LifecycleModel:
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


_FLAGS = (
    'What the stage means to others (docs/domain.md "Lifecycle models"): evaluating (the '
    "buyer is still comparing: B2B promotions never reach it; outreach's no-discount guard), "
    "lapsed (side stages only: customers gone quiet). Any other is a 400 invalid_model listing "
    "the valid ones."
)


def _flags_field() -> fields.List:
    return fields.List(
        fields.String(metadata={"enum": list(STAGE_FLAGS)}),
        required=True,
        metadata={"description": _FLAGS},
    )


class StageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    when = fields.Dict(required=True, metadata=_CONDITION)
    flags = _flags_field()


class SideStageSchema(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    flags = _flags_field()


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
    mode = fields.String(required=True, metadata={"enum": list(MODES)})
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
            "description": "Required: the funnel stages in order, each {name, title, when, "
            "flags}; side_stages are {name, title, flags}",
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
        model_view(name, builtin_document(name, tenant.mode), builtin=True, active=name == active)
        for name in BUILTIN_MODELS
    ]
    items += [
        model_view(r["name"], r["document"], builtin=False, active=r["name"] == active, row=r)
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
        document, row = find_document(conn, tenant, name)
        active = active_model_name(conn, tenant)
    return model_view(name, document, builtin=row is None, active=name == active, row=row)


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
    model = load_or_400(document)
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
    view = model_view(name, row["document"], builtin=False, active=name == active, row=row)
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
            document, _ = find_document(conn, tenant, name)
        load_or_400(document)  # an invalid model is a 400 now, not a failed job
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
