"""The ingest HTTP app: WeChat OA and WeCom webhooks, business events, tracked links.

Each view: refuse cheaply (tenant, signature, size, type) before parsing, normalise to a
touchpoint, hand it to the Publisher, answer. Nothing is produced for a refused request.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from services.ingest import crypto
from services.ingest.errors import Refused, bad_signature, malformed, unknown
from services.ingest.events import BatchError, batch_size, biz_touchpoint, parse_batch
from services.ingest.links import LinkSigner, click_touchpoint
from services.ingest.metrics import EVENTS, LATENCY, REQUESTS
from services.ingest.nonces import Claim, NonceCache
from services.ingest.normalize import Ignored, oa_touchpoint, wecom_touchpoint
from services.ingest.publisher import Publisher
from services.ingest.tokens import TokenStore
from services.ingest.xmlsafe import parse_fields
from shared.errors import ConfigError
from shared.health import Check, ops_blueprint
from shared.ratelimit import RateLimited, TenantLimiter
from shared.tenants import TenantRegistry
from shared.web import new_app

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
    limiter: TenantLimiter | None = None  # per-tenant rates of events and links; None: unlimited
    nonces: NonceCache | None = None  # replay cache of the callbacks; required to accept one


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


# An unknown app or corp id goes through the same checks with a token nobody has, so it fails
# exactly like a bad signature (same status, code, message, same steps): no oracle for which ids
# are tenants (docs/security.md "Webhooks").
_DECOY_TOKEN = secrets.token_hex(16)


def _verified(found):
    """What an id found, once a signature held: never None (nobody signs with the decoy)."""
    if found is None:
        raise bad_signature()
    return found


def _claim(receiver: str, timestamp: str, nonce: str, body: bytes) -> Claim:
    """docs/security.md "Webhooks": one body per signed timestamp and nonce."""
    nonces = deps().nonces
    if nonces is None:
        raise RuntimeError("IngestDeps.nonces is not set: callbacks need the replay cache")
    return nonces.claim(receiver, timestamp, nonce, body)


def _accepted(receiver: str, timestamp: str, nonce: str) -> None:
    deps().nonces.accepted(receiver, timestamp, nonce)


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
    if found is not None:
        tenant, oa = found
        g.tenant_id = tenant.id
        structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    token = found[1].token.reveal() if found else _DECOY_TOKEN
    signature, timestamp, nonce = crypto.require(request.args, "signature", "timestamp", "nonce")
    _checked_time(timestamp)
    crypto.verify((token, timestamp, nonce), signature)
    _verified(found)
    if request.method == "GET":
        echostr = request.args.get("echostr")
        if echostr is None:
            raise malformed("echostr is required")
        return Response(echostr, mimetype="text/plain")

    body = _xml_body()
    receiver = f"oa:{app_id}"
    if request.args.get("encrypt_type", "raw") == "aes":
        if oa.encoding_aes_key is None:
            raise Refused("not_configured", "safe mode needs encoding_aes_key", status=400)
        (msg_signature,) = crypto.require(request.args, "msg_signature")
        encrypt = _encrypted_inner(parse_fields(body), token, timestamp, nonce, msg_signature)
        claim = _claim(receiver, timestamp, nonce, body)
        if claim is Claim.DONE:
            return success()  # the platform delivering again what was accepted: nothing new
        raw = crypto.decrypt(
            encrypt, encoding_aes_key=oa.encoding_aes_key.reveal(), receive_id=app_id, wecom=False
        )
    elif not oa.accepts_plaintext:
        # A plaintext body is not signed: with an EncodingAESKey, only safe mode is trusted.
        raise Refused(
            "safe_mode_required",
            "this official account accepts safe-mode callbacks only "
            "(encrypt_type=aes with msg_signature)",
            status=403,
        )
    else:
        claim = _claim(receiver, timestamp, nonce, body)
        if claim is Claim.DONE:
            return success()
        raw = body.decode("utf-8", "replace")
    response = _accept(oa_touchpoint, parse_fields(raw), tenant, raw, app_id=app_id)
    _accepted(receiver, timestamp, nonce)
    return response


@webhooks.route("/wecom/<corp_id>", methods=["GET", "POST"])
def wecom(corp_id: str):
    tenant = deps().tenants.by_corp_id(corp_id)
    if tenant is not None and tenant.wecom is None:
        tenant = None
    if tenant is not None:
        g.tenant_id = tenant.id
        structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    token = tenant.wecom.token.reveal() if tenant else _DECOY_TOKEN
    msg_signature, timestamp, nonce = crypto.require(
        request.args, "msg_signature", "timestamp", "nonce"
    )
    _checked_time(timestamp)
    if request.method == "GET":
        (echostr,) = crypto.require(request.args, "echostr")
        try:
            crypto.verify((token, timestamp, nonce, echostr), msg_signature)
        except Refused:
            # docs/platform.md "Callbacks: URL verification": an unencoded "+" arrives as a space.
            echostr = echostr.replace(" ", "+")
            crypto.verify((token, timestamp, nonce, echostr), msg_signature)
        aes_key = _verified(tenant).wecom.encoding_aes_key.reveal()
        plain = crypto.decrypt(echostr, encoding_aes_key=aes_key, receive_id=corp_id, wecom=True)
        return Response(plain, mimetype="text/plain")

    body = _xml_body()
    outer = parse_fields(body)
    encrypt = _encrypted_inner(outer, token, timestamp, nonce, msg_signature)
    aes_key = _verified(tenant).wecom.encoding_aes_key.reveal()
    receiver = f"wecom:{corp_id}"
    if _claim(receiver, timestamp, nonce, body) is Claim.DONE:
        return success()  # the platform delivering again what was accepted: nothing new
    raw = crypto.decrypt(encrypt, encoding_aes_key=aes_key, receive_id=corp_id, wecom=True)
    response = _accept(wecom_touchpoint, parse_fields(raw), tenant, raw, corp_id=corp_id)
    _accepted(receiver, timestamp, nonce)
    return response


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
    limiter = deps().limiter
    if limiter is not None:  # a tenant already over its limit is refused before its body is read
        limiter.check("events", tenant.id)
    request.max_content_length = EVENTS_MAX_BYTES
    if request.mimetype != "application/json":
        raise Refused("unsupported_media_type", "expected application/json", status=415)
    body = request.get_json(silent=True, cache=False)
    if body is None:
        raise malformed("body is not valid JSON")
    if limiter is not None:  # per event, invalid ones too: docs/security.md "Rate limits"
        limiter.take("events", tenant.id, batch_size(body))
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
    if deps().limiter is not None:
        deps().limiter.take("links", payload["t"])
    tp = click_touchpoint(
        token, payload, received_at=now_utc(), user_agent=request.headers.get("User-Agent")
    )
    deps().publisher.publish([tp])
    return redirect(payload["u"], code=302)


# --- app factory ------------------------------------------------------------------------------


def create_app(ingest: IngestDeps, checks: dict[str, Check] | None = None) -> Flask:
    app = new_app(__name__)
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

    @app.errorhandler(RateLimited)
    def _rate_limited(exc: RateLimited):
        response, status = error_response(exc.code, exc.message, 429, exc.details)
        response.headers.update(exc.headers)
        return response, status

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
