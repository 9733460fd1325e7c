"""The admin API's Flask app: flask-smorest ``Api`` (OpenAPI 3.0.3 at ``/api/v1/openapi.json``,
built from the marshmallow schemas that validate requests), uniform errors, bearer auth on every
route, request metrics, and the ops endpoints (``/healthz``, ``/readyz``, ``/metrics``).

A service contributes ``shared.api.Blueprint`` objects; ``create_api_app`` refuses to start if a
route under ``/api/v1`` lacks ``@require(...)`` (or an explicit ``@public``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import flask_smorest
import structlog
from flask import Flask, g, request
from prometheus_client import Counter, Histogram
from psycopg_pool import ConnectionPool
from webargs.flaskparser import FlaskParser

from shared.api.auth import SECURITY_SCHEME, auth_doc, authorize
from shared.api.context import EXTENSION, ApiContext
from shared.api.errors import ErrorSchema, from_http_exception, install_error_handlers, invalid
from shared.api.tokens import TokenStore
from shared.health import Check, ops_blueprint
from shared.ratelimit import NO_TENANT, TenantLimiter
from shared.text import contains_nul, json_depth
from shared.tokens import DEFAULT_CACHE_TTL_S
from shared.web import new_app

log = structlog.get_logger("siyu.api")

API_PREFIX = "/api/v1"
OPENAPI_VERSION = "3.0.3"
MAX_BODY_BYTES = 1024 * 1024  # admin payloads are small; content bodies have their own routes
# Admin payloads are shallow (a valid segment rule or lifecycle model stays under 40 levels): a
# body nested deeper than this is refused before the JSON decoder or anything else recurses into
# it (a 500 before). Room is left for deeper rules to reach their own check, whose message is
# more helpful ("rule is nested 138 deep; at most 10 levels").
MAX_JSON_DEPTH = 256

REQUESTS = Counter(
    "siyu_api_requests_total", "Admin API requests by route and status", ["route", "status"]
)
LATENCY = Histogram("siyu_api_request_seconds", "Admin API request latency", ["route"])


class _Parser(FlaskParser):
    # A request that does not validate is a 400 invalid_request (not webargs' 422).
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, validating with 400s and documenting ``require``."""

    ARGUMENTS_PARSER = _Parser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(auth_doc)

    def add_url_rule(self, rule, endpoint=None, view_func=None, **options):
        # A route with path parameters answers 404 for an id it does not know (auth_doc).
        if view_func is not None and "<" in rule:
            view_func._apidoc = {**getattr(view_func, "_apidoc", {}), "siyu_path_params": True}
        super().add_url_rule(rule, endpoint, view_func, **options)


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each operation lists the statuses it can answer (auth_doc
    # adds the ones every route shares), so a status nobody documented is a finding.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):
        return from_http_exception(error)


def _default_schema_for(service: str) -> str:
    return service


def create_api_app(
    name: str,
    *,
    pool: ConnectionPool,
    blueprints: Iterable[flask_smorest.Blueprint],
    checks: dict[str, Check] | None = None,
    schema_for: Callable[[str], str] = _default_schema_for,
    tokens: TokenStore | None = None,
    token_cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
    settings=None,
    limiter: TenantLimiter | None = None,
    title: str = "Siyu admin API",
    version: str = "1",
) -> Flask:
    """An app serving ``blueprints`` under ``/api/v1`` with the shared toolkit wired in.

    ``pool``'s search_path must hold the admin tables (outreach migration 0001_admin);
    ``schema_for(service)`` names the schema of a service for blueprints that read others.
    """
    app = new_app(name)
    app.json.ensure_ascii = False  # 苏州精工机械, not \u82cf...: readable for ops staff
    app.config.update(
        API_TITLE=title,
        API_VERSION=version,
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_SPEC_OPTIONS={
            "info": {"description": "Siyu admin API: bearer tokens from `siyu token create`."},
            "servers": [{"url": "/"}],
            "components": {
                "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}
            },
        },
    )
    app.extensions[EXTENSION] = ApiContext(
        pool=pool,
        tokens=tokens or TokenStore(pool, ttl_s=token_cache_ttl_s),
        schema_for=schema_for,
        settings=settings,
        limiter=limiter,
    )
    api = Api(app)
    # After Api: our handlers (ApiError, every other exception) sit beside its HTTPException one.
    install_error_handlers(app)
    for blueprint in blueprints:
        api.register_blueprint(blueprint, url_prefix=API_PREFIX + (blueprint.url_prefix or ""))
    app.register_blueprint(ops_blueprint(checks or {}))
    _refuse_unprotected_routes(app)

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        view = app.view_functions.get(request.endpoint or "")
        needs = getattr(view, "siyu_require", None)
        if needs is not None:
            caller = authorize(*needs)  # before any body is parsed
            structlog.contextvars.bind_contextvars(
                token_id=caller.token_id, tenant_id=g.get("siyu_tenant_id")
            )
            _limit(app.extensions[EXTENSION].limiter, caller)
            _refuse_nul()

    @app.after_request
    def _measure(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        if route not in ("/metrics", "/healthz", "/readyz"):
            REQUESTS.labels(route=route, status=str(response.status_code)).inc()
            LATENCY.labels(route=route).observe(time.perf_counter() - g.get("started", 0))
        return response

    return app


def _limit(limiter: TenantLimiter | None, caller) -> None:
    """Count the request against the tenant it acts on: a platform token's ?tenant= too (a
    platform token acting on no tenant has a bucket of its own)."""
    if limiter is not None:
        limiter.take("api", g.get("siyu_tenant_id") or caller.tenant_id or NO_TENANT)


def _refuse_nul() -> None:
    """PostgreSQL text cannot hold NUL: refuse it in the path, query or JSON body with a 400
    instead of failing in the database."""
    body = _json_body()
    parts = (request.view_args or {}, dict(request.args.lists()), body)
    if any(contains_nul(part) for part in parts):
        raise invalid("NUL characters (\\u0000) are not allowed", code="invalid_characters")


def _json_body():
    """The parsed JSON body (None when absent or not JSON: the route's schema says so); one
    nested past ``MAX_JSON_DEPTH`` is a 400."""
    if not request.is_json:
        return None
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # deeper than the decoder recurses
        body, deep = None, True
    else:
        deep = json_depth(body) > MAX_JSON_DEPTH
    if deep:
        raise invalid(
            f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        )
    return body


def _refuse_unprotected_routes(app: Flask) -> None:
    open_routes = {f"{API_PREFIX}/openapi.json"}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/") or rule.rule in open_routes:
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, "siyu_require", None) is None and not getattr(view, "siyu_public", False):
            raise RuntimeError(f"{rule.rule} ({rule.endpoint}) has no @require(...): refusing")
