"""The touchpoint envelope: the one contract every service reads (docs/architecture.md).

Type names are dotted and stable; the full list lives in ``EVENT_TYPES``, and who acts in each in
``EVENT_KINDS`` (the customer, staff or the system). Renaming one is a breaking change for every
consumer and every stored rule that names it: add new names, never rename.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from shared.errors import EnvelopeError

SCHEMA = "touchpoint/1"

SOURCES = ("wechat_oa", "wecom", "api", "link")

# type -> what it means. The prefix decides the source (see SOURCE_OF_PREFIX).
EVENT_TYPES: dict[str, str] = {
    # WeChat Official Account events and messages
    "oa.subscribe": "user followed the OA (scan-to-subscribe carries attributes.scene)",
    "oa.unsubscribe": "user unfollowed the OA",
    "oa.scan": "a follower scanned a parametric QR code (attributes.scene)",
    "oa.click": "menu click (attributes.event_key = menu key)",
    "oa.view": "menu link opened (attributes.url)",
    "oa.location": "location reported (latitude, longitude, precision)",
    "oa.template_send_finished": "result of a template message (attributes.status)",
    "oa.mass_send_finished": "result of a mass send (status and counts)",
    "oa.message": "user sent a message (attributes.msg_type: text/image/voice/video/...)",
    # WeCom customer contact (客户联系)
    "wecom.contact.added": "a member added an external contact (add_external_contact)",
    "wecom.contact.half_added": "external contact added without acceptance (add_half_...)",
    "wecom.contact.edited": "a member edited an external contact",
    "wecom.contact.deleted": "a member deleted an external contact (del_external_contact)",
    "wecom.contact.follow_user_deleted": "the customer deleted the member (del_follow_user)",
    "wecom.contact.transfer_failed": "transfer of a contact to another member failed",
    "wecom.contact.enriched": (
        "contact detail fetched from WeCom: name, position, corp_name, unionid, follow-user tags"
    ),
    "wecom.chat.created": "a customer group was created",
    "wecom.chat.member_joined": "members joined a customer group",
    "wecom.chat.member_left": "members left or were removed from a customer group",
    "wecom.chat.member_enriched": (
        "a joined member's group detail fetched from WeCom: the join code's state, join_time"
    ),
    "wecom.chat.owner_changed": "the group owner changed",
    "wecom.chat.renamed": "the group name changed",
    "wecom.chat.notice_changed": "the group notice changed",
    "wecom.chat.dismissed": "the customer group was dismissed",
    "wecom.tag.changed": "a corp tag or tag group was created/updated/deleted/shuffled",
    # Tracked links in outreach content
    "link.clicked": "a tracked link was opened",
    # Business events from CRM/ERP/web (POST /api/v1/events)
    "biz.registered": "a person registered (web, app, event)",
    "biz.lead.created": "CRM created a lead",
    "biz.demo.requested": "a demo or consultation was requested",
    "biz.trial.started": "a trial or POC started",
    "biz.trial.ended": "a trial or POC ended",
    "biz.quote.sent": "a quotation or proposal was sent",
    "biz.contract.signed": "a contract was signed",
    "biz.order.paid": "an order was paid (attributes.amount, currency)",
    "biz.order.refunded": "an order was refunded",
    "biz.invoice.issued": "an invoice was issued",
    "biz.invoice.overdue": "an invoice is overdue",
    "biz.payment.received": "a payment was received",
    "biz.webinar.registered": "registered for a webinar or online class",
    "biz.webinar.attended": "attended a webinar or online class",
    "biz.event.attended": "attended an offline event or meetup",
    "biz.content.downloaded": "downloaded content (whitepaper, report, spec)",
    "biz.complaint.filed": "a complaint or a bad review",
    "biz.contact.updated": "person attributes from CRM (name, title, phone hash...)",
    "biz.account.updated": "company attributes (industry, size, lifecycle...)",
}

SOURCE_OF_PREFIX = {"oa": "wechat_oa", "wecom": "wecom", "link": "link", "biz": "api"}

# Who acted (docs/domain.md "Activity"): the customer (their own activity, positive or negative),
# the tenant's staff, or nobody (a platform or system fact). Every type in EVENT_TYPES once.
CUSTOMER, STAFF, SYSTEM = "customer", "staff", "system"
EVENT_KINDS: dict[str, str] = {
    "oa.subscribe": CUSTOMER,
    "oa.unsubscribe": CUSTOMER,
    "oa.scan": CUSTOMER,
    "oa.click": CUSTOMER,
    "oa.view": CUSTOMER,
    "oa.location": CUSTOMER,
    "oa.template_send_finished": SYSTEM,
    "oa.mass_send_finished": SYSTEM,
    "oa.message": CUSTOMER,
    "wecom.contact.added": CUSTOMER,  # the customer added the member, or accepted their request
    "wecom.contact.half_added": CUSTOMER,  # the customer added a member who has not confirmed
    "wecom.contact.edited": STAFF,
    "wecom.contact.deleted": STAFF,
    "wecom.contact.follow_user_deleted": CUSTOMER,
    "wecom.contact.transfer_failed": SYSTEM,
    "wecom.contact.enriched": SYSTEM,
    "wecom.chat.created": STAFF,
    "wecom.chat.member_joined": CUSTOMER,  # STAFF when a member invited them directly
    "wecom.chat.member_left": CUSTOMER,  # STAFF when the owner or an admin removed them
    "wecom.chat.member_enriched": SYSTEM,
    "wecom.chat.owner_changed": STAFF,
    "wecom.chat.renamed": STAFF,
    "wecom.chat.notice_changed": STAFF,
    "wecom.chat.dismissed": STAFF,
    "wecom.tag.changed": STAFF,
    "link.clicked": CUSTOMER,
    "biz.registered": CUSTOMER,
    "biz.lead.created": STAFF,
    "biz.demo.requested": CUSTOMER,
    "biz.trial.started": CUSTOMER,
    "biz.trial.ended": SYSTEM,
    "biz.quote.sent": STAFF,
    "biz.contract.signed": CUSTOMER,
    "biz.order.paid": CUSTOMER,
    "biz.order.refunded": CUSTOMER,
    "biz.invoice.issued": STAFF,
    "biz.invoice.overdue": SYSTEM,
    "biz.payment.received": CUSTOMER,
    "biz.webinar.registered": CUSTOMER,
    "biz.webinar.attended": CUSTOMER,
    "biz.event.attended": CUSTOMER,
    "biz.content.downloaded": CUSTOMER,
    "biz.complaint.filed": CUSTOMER,
    "biz.contact.updated": STAFF,
    "biz.account.updated": STAFF,
}
CUSTOMER_ACTIONS = frozenset(t for t, kind in EVENT_KINDS.items() if kind == CUSTOMER)
# WeCom's JoinScene 0 (a member invited them directly) and QuitScene 1 (the owner or an admin
# removed them): a member moved the customer, who did nothing (docs/domain.md "Activity").
_STAFF_SCENES = {"wecom.chat.member_joined": ("join_scene", "0"),
                 "wecom.chat.member_left": ("quit_scene", "1")}  # fmt: skip


def event_kind(event_type: str, attributes: Mapping[str, Any] | None = None) -> str:
    """Who acted in an event of this type: ``CUSTOMER``, ``STAFF`` or ``SYSTEM``."""
    scene = _STAFF_SCENES.get(event_type)
    if scene is not None and attributes and str(attributes.get(scene[0])) == scene[1]:
        return STAFF
    return EVENT_KINDS[event_type]


def is_customer_action(event_type: str, attributes: Mapping[str, Any] | None = None) -> bool:
    """True when the customer did it themselves: what counts as their activity."""
    return event_type in CUSTOMER_ACTIONS and event_kind(event_type, attributes) == CUSTOMER


IDENTITY_KEYS = (
    "openid",
    "unionid",
    "external_userid",
    "staff_userid",
    "chat_id",
    "crm_id",
    "account_key",
)
# Which identity names the "platform user" in the Kafka key: per-person ordering for the ids
# that name a person first, then the group or company for events that have no person.
_KEY_PRECEDENCE = (
    "openid",
    "external_userid",
    "crm_id",
    "unionid",
    "chat_id",
    "account_key",
    "staff_userid",
)

MAX_RAW_CHARS = 256 * 1024

# Events about the tenant's own setup, not about a person, group or company: no identity needed.
TENANT_LEVEL_TYPES = frozenset({"wecom.tag.changed"})


def source_for_type(event_type: str) -> str:
    return SOURCE_OF_PREFIX[event_type.split(".", 1)[0]]


def make_event_id(tenant_id: str, source: str, dedup_key: str) -> str:
    """Deterministic id: the same platform event (and its retries, and our replays) -> same id.

    ``dedup_key`` is the platform's own dedup key (docs/platform.md, "Deduplication") or the
    caller's idempotency key for business events. The unit separator keeps ("a", "bc") !=
    ("ab", "c").
    """
    material = "\x1f".join((tenant_id, source, dedup_key)).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True)
class Identity:
    openid: str | None = None
    unionid: str | None = None
    external_userid: str | None = None
    staff_userid: str | None = None
    chat_id: str | None = None
    crm_id: str | None = None
    account_key: str | None = None

    def platform_user_id(self) -> str:
        for key in _KEY_PRECEDENCE:
            value = getattr(self, key)
            if value:
                return value
        return "-"


@dataclass(frozen=True)
class Touchpoint:
    event_id: str
    tenant_id: str
    source: str
    type: str
    occurred_at: datetime
    received_at: datetime
    identity: Identity = field(default_factory=Identity)
    attributes: dict[str, Any] = field(default_factory=dict)
    # The platform payload; a person's is sealed by ingest with their key ("siyu-aesgcm1:...",
    # still a string: services/ingest/shredding.py, docs/privacy.md). Nothing reads it for state.
    raw: str | None = None
    schema: str = SCHEMA

    @property
    def key(self) -> str:
        """Kafka key: ``<tenant_id>:<platform user id>`` (per-person ordering within a tenant)."""
        return f"{self.tenant_id}:{self.identity.platform_user_id()}"

    def to_dict(self) -> dict[str, Any]:
        # Hand-built (not Schema.dump): this runs once per webhook on ingest's hot path. The wire
        # format is pinned by tests that load it back through TouchpointSchema.
        return {
            "schema": self.schema,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "source": self.source,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "identity": {key: getattr(self.identity, key) for key in IDENTITY_KEYS},
            "attributes": self.attributes,
            "raw": self.raw,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


class IdentitySchema(Schema):
    class Meta:
        unknown = RAISE

    openid = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    unionid = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    external_userid = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 128)
    )
    staff_userid = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 128)
    )
    chat_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    crm_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    account_key = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 200)
    )


class TouchpointSchema(Schema):
    class Meta:
        unknown = RAISE

    schema = fields.String(required=True, validate=validate.Equal(SCHEMA))
    event_id = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{32}$"))
    tenant_id = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9-]{2,40}$"))
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    type = fields.String(required=True, validate=validate.OneOf(sorted(EVENT_TYPES)))
    occurred_at = fields.AwareDateTime(required=True)
    received_at = fields.AwareDateTime(required=True)
    identity = fields.Nested(IdentitySchema, required=True)
    attributes = fields.Dict(keys=fields.String(), load_default=dict)
    raw = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=MAX_RAW_CHARS)
    )

    @validates_schema(skip_on_field_errors=True)
    def _consistent(self, data: dict, **kwargs: Any) -> None:
        # .get: a partial load may leave any field out; each check needs the fields it compares.
        kind, identity = data.get("type"), data.get("identity")
        if kind is None:
            return
        expected = source_for_type(kind)
        if data.get("source", expected) != expected:
            raise ValidationError(f"type {kind} comes from source {expected}", "source")
        if (identity is not None and kind not in TENANT_LEVEL_TYPES
                and not any(identity.get(k) for k in IDENTITY_KEYS)):  # fmt: skip
            raise ValidationError("at least one identity is required", "identity")


_SCHEMA = TouchpointSchema()  # schemas are reusable; building one per message is costly


def load_touchpoint(data: dict[str, Any]) -> Touchpoint:
    """Validate a decoded envelope; raise EnvelopeError with per-field details."""
    try:
        loaded = _SCHEMA.load(data)
    except ValidationError as exc:
        raise EnvelopeError("invalid touchpoint envelope", details=exc.messages) from None
    return Touchpoint(
        event_id=loaded["event_id"],
        tenant_id=loaded["tenant_id"],
        source=loaded["source"],
        type=loaded["type"],
        occurred_at=loaded["occurred_at"],
        received_at=loaded["received_at"],
        identity=Identity(**loaded["identity"]),
        attributes=loaded["attributes"],
        raw=loaded["raw"],
        schema=loaded["schema"],
    )


def decode_touchpoint(value: bytes) -> Touchpoint:
    """Kafka value (UTF-8 JSON) -> Touchpoint; the decode step of every touchpoint consumer."""
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"touchpoint is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("touchpoint must be a JSON object")
    return load_touchpoint(data)
