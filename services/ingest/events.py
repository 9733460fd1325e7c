"""Business events from CRM/ERP/web: the request schema and its mapping to touchpoints."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.ingest.event_time import future_error
from shared.envelope import (
    EVENT_TYPES,
    IDENTITY_KEYS,
    Identity,
    IdentitySchema,
    Touchpoint,
    make_event_id,
)
from shared.text import contains_nul

MAX_BATCH = 500
BIZ_TYPES = sorted(t for t in EVENT_TYPES if t.startswith("biz."))
# Types whose facts are money: an amount is required and must be a non-negative number.
MONEY_TYPES = {
    "biz.order.paid",
    "biz.order.refunded",
    "biz.invoice.issued",
    "biz.invoice.overdue",
    "biz.payment.received",
}
LIFECYCLES = ("startup", "growth", "mature")


class BizEventSchema(Schema):
    class Meta:
        unknown = RAISE

    idempotency_key = fields.String(required=True, validate=validate.Length(1, 200))
    type = fields.String(required=True, validate=validate.OneOf(BIZ_TYPES))
    occurred_at = fields.AwareDateTime(required=True)
    identity = fields.Nested(IdentitySchema, required=True)
    attributes = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 100)), load_default=dict
    )

    @validates_schema(skip_on_field_errors=True)
    def _facts(self, data: dict, **kwargs: Any) -> None:
        # .get: a partial load may leave any field out (the required ones are checked then).
        identity, attrs, kind = data.get("identity"), data.get("attributes") or {}, data.get("type")
        if identity is not None and not any(identity.get(k) for k in IDENTITY_KEYS):
            raise ValidationError("at least one identity is required", "identity")
        if len(json.dumps(attrs, ensure_ascii=False)) > 16_384:
            raise ValidationError("attributes are larger than 16 KiB", "attributes")
        if kind in MONEY_TYPES:
            amount = attrs.get("amount")
            if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                raise ValidationError(
                    {"amount": ["a non-negative number is required for this type"]}, "attributes"
                )
            currency = attrs.get("currency", "CNY")
            if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
                raise ValidationError({"currency": ["an ISO 4217 code such as CNY"]}, "attributes")
        if kind == "biz.account.updated":
            if not (identity or {}).get("account_key"):
                raise ValidationError("account_key is required for biz.account.updated", "identity")
            lifecycle = attrs.get("lifecycle")
            if lifecycle is not None and lifecycle not in LIFECYCLES:
                raise ValidationError(
                    {"lifecycle": [f"one of {', '.join(LIFECYCLES)}"]}, "attributes"
                )


class BatchError(Exception):
    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.message = message
        self.details = details


def parse_batch(body: Any, *, now: datetime) -> list[dict]:
    """A single event or ``{"events": [...]}`` -> validated events; errors per item index.

    ``now`` is the server's clock: an event dated too far after it is refused (event_time.py).
    """
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            raise BatchError("a batch has only the key 'events'", {"body": sorted(body)})
        items = body["events"]
        if not isinstance(items, list) or not items:
            raise BatchError("'events' must be a non-empty list", {})
        if len(items) > MAX_BATCH:
            raise BatchError(f"at most {MAX_BATCH} events per request", {"count": len(items)})
    elif isinstance(body, dict):
        items = [body]
    else:
        raise BatchError('body must be an event object or {"events": [...]}', {})
    schema = BizEventSchema()
    loaded, errors = [], {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(index)] = {"_schema": ["an event is a JSON object"]}
            continue
        if contains_nul(item):  # PostgreSQL could not store it: refused here, not downstream
            errors[str(index)] = {"_schema": ["U+0000 (NUL) is not allowed in any string"]}
            continue
        try:
            event = schema.load(item)
        except ValidationError as exc:
            errors[str(index)] = exc.messages
            continue
        if future := future_error(event["occurred_at"], now):
            errors[str(index)] = {"occurred_at": [future]}
            continue
        loaded.append((event, item))
    if errors:
        raise BatchError(
            f"{len(errors)} of {len(items)} events are invalid; none was accepted",
            {"events": errors},
        )
    return loaded


def batch_size(body: Any) -> int:
    """What a request counts against the tenant's events limit: its events (docs/security.md
    "Rate limits"), at most a full batch; 1 for a single event or a body that is not a batch."""
    items = body.get("events") if isinstance(body, dict) else None
    return min(len(items), MAX_BATCH) if isinstance(items, list) and items else 1


def biz_touchpoint(tenant_id: str, event: dict, raw: dict, *, received_at: datetime) -> Touchpoint:
    return Touchpoint(
        event_id=make_event_id(tenant_id, "api", event["idempotency_key"]),
        tenant_id=tenant_id,
        source="api",
        type=event["type"],
        occurred_at=event["occurred_at"],
        received_at=received_at,
        identity=Identity(**event["identity"]),
        attributes={**event["attributes"], "idempotency_key": event["idempotency_key"]},
        raw=json.dumps(raw, ensure_ascii=False, separators=(",", ":")),
    )
