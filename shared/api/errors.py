"""One error shape for the whole admin API: ``{"error": {"code", "message", "details"}}``.

Every refusal is an ``ApiError`` (a code a caller can act on plus the HTTP status); werkzeug's
HTTP errors and webargs' validation errors are translated to the same shape, and an unexpected
exception becomes a 500 ``internal`` whose body says nothing about the code (the traceback goes
to the log only).
"""

from __future__ import annotations

from http import HTTPStatus

import psycopg
import structlog
from flask import Response, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from shared.errors import SiyuError
from shared.ratelimit import RateLimited

log = structlog.get_logger("siyu.api")

# Default code of each HTTP status when nothing more precise is known.
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(SiyuError):
    """A refusal with an HTTP status, e.g. ``ApiError(404, "unknown_tenant", "...")``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message, code=code, details=details)
        self.status = status
        self.headers = headers or {}  # e.g. Retry-After of a 429


def invalid(message: str, details: dict | None = None, *, code: str = "invalid_request"):
    return ApiError(400, code, message, details)


def unauthenticated(message: str = "Authorization: Bearer <token> is required") -> ApiError:
    return ApiError(401, "unauthenticated", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no {kind} {ident!r}")


def unknown_tenant(tenant_id: str) -> ApiError:
    return ApiError(404, "unknown_tenant", f"no tenant {tenant_id!r}")


def conflict(message: str, details: dict | None = None) -> ApiError:
    return ApiError(409, "conflict", message, details)


def unavailable(message: str = "database unavailable; retry later") -> ApiError:
    return ApiError(503, "unavailable", message)


def timed_out() -> ApiError:
    """A statement ran past the API's ``statement_timeout`` (shared/db.py) and was cancelled."""
    return ApiError(
        503,
        "timeout",
        "the database did not answer within the API's time limit; retry later, or narrow the "
        "request (filters, a shorter period)",
    )


# --- the shape, for OpenAPI --------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = fields.String(required=True, metadata={"description": "For humans"})
    details = fields.Dict(
        required=True,
        metadata={"description": "e.g. marshmallow's field messages by location (json, query)"},
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


def error_response(
    status: int, code: str, message: str, details: dict | None = None, headers=None
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def from_http_exception(exc: HTTPException) -> Response:
    """werkzeug's and webargs' HTTP errors in our shape (never werkzeug's HTML page)."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    headers.update(data.get("headers") or {})
    if "messages" in data:  # webargs: marshmallow's messages by location, e.g. {"json": {...}}
        return error_response(
            400, "invalid_request", "the request is not valid", data["messages"], headers
        )
    code = STATUS_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    if status >= 500:
        message = "internal error" if status == 500 else HTTPStatus(status).phrase
    else:
        message = data.get("message") or exc.description or HTTPStatus(status).phrase
    return error_response(status, code, message, None, headers)


def install_error_handlers(app) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        if exc.status >= 500:
            log.warning("api_unavailable", code=exc.code, reason=exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(RateLimited)
    def _rate_limited(exc: RateLimited):
        return error_response(429, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if (exc.code or 500) >= 500:
            original = getattr(exc, "original_exception", None)
            if original is not None:
                log.error("api_internal_error", exc_info=original)
        return from_http_exception(exc)

    @app.errorhandler(psycopg.errors.QueryCanceled)
    def _timed_out(exc: psycopg.errors.QueryCanceled):  # a pool used outside connection()
        return _api_error(timed_out())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error("api_internal_error", exc_info=exc)
        return error_response(500, "internal", "internal error")
