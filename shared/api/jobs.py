"""What a route queuing a background job (shared/jobs.py) answers: 202 with the job and a
``Location`` to poll, 409 while the tenant has one of the kind in progress, and the job's view
(status, progress, the result once done) for the route that polls."""

from __future__ import annotations

from collections.abc import Callable

from marshmallow import Schema, fields

from shared import jobs
from shared.api.auth import principal
from shared.api.context import context
from shared.api.errors import ApiError
from shared.config import JobSettings
from shared.jobs import STATUSES, Busy

# The URL of a job from its subject (the model or campaign) and id.
Locate = Callable[[str, str], str]

LOCATION = {
    "Location": {
        "description": "The job's URL: GET it until its status is done or failed",
        "schema": {"type": "string"},
    }
}


def job_schema(name: str, result: type[Schema]) -> type[Schema]:
    """The job view whose ``result`` (once done) is ``result``'s shape."""
    return Schema.from_dict(
        {
            "job_id": fields.String(required=True),
            "kind": fields.String(required=True),
            "status": fields.String(required=True, metadata={"enum": list(STATUSES)}),
            "progress": fields.Float(
                allow_none=True, metadata={"description": "0 to 1 while running"}
            ),
            "created_at": fields.DateTime(required=True),
            "started_at": fields.DateTime(allow_none=True),
            "finished_at": fields.DateTime(allow_none=True),
            "expires_at": fields.DateTime(
                required=True, metadata={"description": "The job and its result are deleted then"}
            ),
            "error": fields.String(allow_none=True, metadata={"description": "Once failed: why"}),
            "result": fields.Nested(result, allow_none=True, metadata={"description": "Once done"}),
        },
        name=name,
    )


def view(job: dict, result: dict | None = None) -> dict:
    keys = ("job_id", "kind", "status", "progress", "created_at", "started_at", "finished_at",
            "expires_at", "error")  # fmt: skip
    return {**{k: job[k] for k in keys}, "result": result}


def busy(exc: Busy, location: str) -> ApiError:
    job = exc.job
    return ApiError(
        409,
        "job_in_progress",
        f"a {job['kind']} job of this tenant is {job['status']}; poll it, then ask again",
        {"job_id": job["job_id"], "location": location},
    )


def submit(conn, *, tenant: str, kind: str, subject: str, params: dict, locate: Locate,
           created_by: str | None = None) -> dict:  # fmt: skip
    """Queue the caller's job (``created_by``: else the token's id) in ``conn``'s transaction;
    409 while one of the kind is in progress for the tenant (naming it). Answer with
    ``accepted`` once committed."""
    settings = context().settings  # None in tests that build the app without Settings
    ttl = (settings.jobs if settings is not None else JobSettings()).ttl
    try:
        return jobs.submit(conn, tenant=tenant, kind=kind, subject=subject, params=params,
                           created_by=created_by or principal().token_id, ttl=ttl)  # fmt: skip
    except Busy as exc:
        raise busy(exc, locate(exc.job["subject"], exc.job["job_id"])) from None


def accepted(job: dict, locate: Locate) -> tuple[dict, int, dict]:
    """The 202 answer for a committed job; the runners are woken to claim it."""
    jobs.wake()
    return view(job), 202, {"Location": locate(job["subject"], job["job_id"])}
