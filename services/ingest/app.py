"""The ingest HTTP app: WeChat OA and WeCom webhooks, business events, tracked links.

Each view: refuse cheaply (tenant, signature, size, type) before parsing, normalise to a
touchpoint, hand it to the Publisher, answer. Nothing is produced for a refused request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from services.ingest import crypto
from services.ingest.errors import Refused, malformed, unknown
from services.ingest.events import BatchError, biz_touchpoint, parse_batch
from services.ingest.links import LinkSigner, click_touchpoint
from services.ingest.metrics import EVENTS, LATENCY, REQUESTS
from services.ingest.normalize import Ignored, oa_touchpoint, wecom_touchpoint
from services.ingest.publisher import Publisher
from services.ingest.tokens import TokenStore
from services.ingest.xmlsafe import parse_fields
from shared.config import TenantRegistry
from shared.errors import ConfigError
from shared.health import Check, ops_blueprint

log = structlog.get_logger("siyu.ingest")

WEBHOOK_MAX_BYTES = 64 * 1024  # real callbacks are a few KB
EVENTS_MAX_BYTES = 2 * 1024 * 1024  # 500 events with attributes
XML_TYPES = ("text/xml", "application/xml")


@dataclass
class IngestDeps:
    tenants: TenantRegistry
    publisher: Publisher
    tokens: TokenStore
    links: LinkSigner
    max_age_s: int = crypto.DEFAULT_MAX_AGE_S


def deps() -> IngestDeps:
    return current_app.extensions["siyu.ingest"]


def error_response(code: str, message: str, status: int, details=None) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return jsonify(body), status


def now_utc() -> datetime:
    return datetime.now(UTC)


def success() -> Response:
    return Response("success", mimetype="text/plain")


# --- webhooks ---------------------------------------------------------------------------------

webhooks = Blueprint("webhooks", __name__)


def _xml_body() -> bytes:
    request.max_content_length = WEBHOOK_MAX_BYTES
    if request.mimetype not in XML_TYPES:
        raise Refused(
            "unsupported_media_type",
            f"expected text/xml, got {request.mimetype or 'nothing'}",
            status=415,
        )
    body = request.get_data(cache=False)
    if not body.strip():
        raise malformed("empty body")
    return body


def _checked_time(timestamp: str) -> None:
    crypto.check_timestamp(timestamp, max_age_s=deps().max_age_s)


def _encrypted_inner(outer: dict, token: str, timestamp: str, nonce: str, msg_signature: str):
    encrypt = outer.get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise malformed("Encrypt is missing")
    crypto.verify((token, timestamp, nonce, encrypt), msg_signature)
    return encrypt


def _accept(normalise, fields: dict, tenant, raw: str, **ids) -> Response:
    """Normalise a callback and make it durable; untracked callbacks are acknowledged only."""
    try:
        tp = normalise(
            fields, tenant_id=tenant.id, timezone=tenant.timezone, raw=raw, received_at=now_utc(),
            **ids,
        )  # fmt: skip
    except Ignored as why:
        EVENTS.labels(tenant=tenant.id, type="-", outcome="ignored").inc()
        log.info("callback_ignored", reason=str(why))
        return success()
    g.event_id = tp.event_id
    structlog.contextvars.bind_contextvars(event_id=tp.event_id, type=tp.type)
    if "create_time" in tp.attributes:
        log.warning("callback_dated_on_receipt", create_time=tp.attributes["create_time"])
    stored = deps().publisher.publish([tp])
    log.debug("touchpoint_accepted", stored=stored)
    return success()


@webhooks.route("/wechat/oa/<app_id>", methods=["GET", "POST"])
def official_account(app_id: str):
    found = deps().tenants.by_oa_app_id(app_id)
    if found is None:
        raise unknown("app_id", app_id)
    tenant, oa = found
    g.tenant_id = tenant.id
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    token = oa.token.reveal()
    signature, timestamp, nonce = crypto.require(request.args, "signature", "timestamp", "nonce")
    _checked_time(timestamp)
    crypto.verify((token, timestamp, nonce), signature)
    if request.method == "GET":
        echostr = request.args.get("echostr")
        if echostr is None:
            raise malformed("echostr is required")
        return Response(echostr, mimetype="text/plain")

    body = _xml_body()
    fields = parse_fields(body)
    if request.args.get("encrypt_type", "raw") == "aes":
        if oa.encoding_aes_key is None:
            raise Refused("not_configured", "safe mode needs encoding_aes_key", status=400)
        (msg_signature,) = crypto.require(request.args, "msg_signature")
        encrypt = _encrypted_inner(fields, token, timestamp, nonce, msg_signature)
        raw = crypto.decrypt(
            encrypt, encoding_aes_key=oa.encoding_aes_key.reveal(), receive_id=app_id, wecom=False
        )
        fields = parse_fields(raw)
    else:
        raw = body.decode("utf-8", "replace")
    return _accept(oa_touchpoint, fields, tenant, raw, app_id=app_id)


@webhooks.route("/wecom/<corp_id>", methods=["GET", "POST"])
def wecom(corp_id: str):
    tenant = deps().tenants.by_corp_id(corp_id)
    if tenant is None or tenant.wecom is None:
        raise unknown("corp_id", corp_id)
    g.tenant_id = tenant.id
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    corp = tenant.wecom
    token = corp.token.reveal()
    msg_signature, timestamp, nonce = crypto.require(
        request.args, "msg_signature", "timestamp", "nonce"
    )
    _checked_time(timestamp)
    aes_key = corp.encoding_aes_key.reveal()
    if request.method == "GET":
        (echostr,) = crypto.require(request.args, "echostr")
        try:
            crypto.verify((token, timestamp, nonce, echostr), msg_signature)
        except Refused:
            # docs/platform.md "Callbacks: URL verification": an unencoded "+" arrives as a space.
            echostr = echostr.replace(" ", "+")
            crypto.verify((token, timestamp, nonce, echostr), msg_signature)
        plain = crypto.decrypt(echostr, encoding_aes_key=aes_key, receive_id=corp_id, wecom=True)
        return Response(plain, mimetype="text/plain")

    body = _xml_body()
    outer = parse_fields(body)
    encrypt = _encrypted_inner(outer, token, timestamp, nonce, msg_signature)
    raw = crypto.decrypt(encrypt, encoding_aes_key=aes_key, receive_id=corp_id, wecom=True)
    return _accept(wecom_touchpoint, parse_fields(raw), tenant, raw, corp_id=corp_id)


# --- business events --------------------------------------------------------------------------

business = Blueprint("business", __name__)


@business.post("/api/v1/events")
def business_events():
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise Refused("missing_token", "Authorization: Bearer <token> is required", status=401)
    tenant_id = deps().tokens.tenant_for(header[7:].strip())
    if tenant_id is None:
        raise Refused("bad_token", "token is unknown or revoked", status=401)
    tenant = deps().tenants.get(tenant_id)
    if tenant is None:
        raise unknown("tenant", tenant_id)
    g.tenant_id = tenant.id
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    request.max_content_length = EVENTS_MAX_BYTES
    if request.mimetype != "application/json":
        raise Refused("unsupported_media_type", "expected application/json", status=415)
    body = request.get_json(silent=True, cache=False)
    if body is None:
        raise malformed("body is not valid JSON")
    received = now_utc()
    try:
        events = parse_batch(body, now=received)
    except BatchError as exc:
        raise Refused("invalid_events", exc.message, status=400, details=exc.details) from None
    touchpoints = [biz_touchpoint(tenant.id, ev, raw, received_at=received) for ev, raw in events]
    stored = deps().publisher.publish(touchpoints)
    return jsonify(
        accepted=len(touchpoints),
        stored=stored,
        events=[
            {"idempotency_key": ev["idempotency_key"], "event_id": tp.event_id}
            for (ev, _), tp in zip(events, touchpoints, strict=True)
        ],
    )


# --- tracked links ----------------------------------------------------------------------------

links = Blueprint("links", __name__)


@links.get("/r/<path:token>")
def tracked_link(token: str):
    payload = deps().links.load(token)
    if payload is None or deps().tenants.get(payload["t"]) is None:
        raise Refused("unknown_link", "this link is not valid", status=404)
    g.tenant_id = payload["t"]
    tp = click_touchpoint(
        token, payload, received_at=now_utc(), user_agent=request.headers.get("User-Agent")
    )
    deps().publisher.publish([tp])
    return redirect(payload["u"], code=302)


# --- app factory ------------------------------------------------------------------------------


def create_app(ingest: IngestDeps, checks: dict[str, Check] | None = None) -> Flask:
    app = Flask("siyu.ingest")
    app.extensions["siyu.ingest"] = ingest
    app.register_blueprint(webhooks)
    app.register_blueprint(business)
    app.register_blueprint(links)
    app.register_blueprint(ops_blueprint(checks or {}))

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()

    @app.after_request
    def _measure(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        if route not in ("/metrics", "/healthz", "/readyz"):
            REQUESTS.labels(
                tenant=g.get("tenant_id", "-"), route=route, status=str(response.status_code)
            ).inc()
            LATENCY.labels(route=route).observe(time.perf_counter() - g.get("started", 0))
        return response

    @app.errorhandler(Refused)
    def _refused(exc: Refused):
        log.warning("request_refused", code=exc.code, status=exc.status, reason=exc.message)
        return error_response(exc.code, exc.message, exc.status, exc.details)

    @app.errorhandler(ConfigError)
    def _not_configured(exc: ConfigError):
        # A secret this server lacks (checked at start; the environment may differ per replica).
        # Never a 5xx: nothing is wrong with the request, and nothing is retried into success.
        # The log names the tenant (context) and the variable, never a value.
        log.error("tenant_not_configured", code=exc.code, reason=exc.message)
        return error_response(
            "not_configured", "this app or corp is not fully configured on this server", 403
        )

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        limit = request.max_content_length
        return error_response("body_too_large", f"body is larger than {limit} bytes", 413)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name, exc.code or 500)

    return app
