"""What a route queuing a background job (shared/jobs.py) answers: 202 with the job and a
``Location`` to poll, 409 while the tenant has one of the kind in progress, and the job's view
(status, progress, the result once done) for the route that polls."""

from __future__ import annotations

from marshmallow import Schema, fields

from shared.api.errors import ApiError
from shared.jobs import STATUSES, Busy

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
