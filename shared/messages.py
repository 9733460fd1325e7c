"""Values of siyu.profiles.v1, siyu.stage-changes.v1, siyu.catalogue.v1 and siyu.signals.v1:
marshmallow schemas, one per contract.

Producers build them through these schemas (so a wrong value never reaches the topic) and
consumers load them through the same schemas.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from shared.vocabulary import MODES

STAGE_CHANGE = "stage-change/1"
PROFILE = "profile/1"
CATALOGUE = "catalogue/1"
SIGNAL = "signal/1"


class StageChangeSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # consumers accept additions within the same major version

    schema = fields.String(required=True, validate=validate.Equal(STAGE_CHANGE))
    tenant_id = fields.String(required=True)
    subject = fields.String(required=True, validate=validate.OneOf(["contact", "account"]))
    subject_id = fields.String(required=True)
    model = fields.String(required=True)
    from_stage = fields.String(allow_none=True, load_default=None)
    to_stage = fields.String(required=True)
    cause = fields.String(required=True)
    event_id = fields.String(allow_none=True, load_default=None)
    changed_at = fields.AwareDateTime(required=True)
    actor = fields.String(allow_none=True, load_default=None)
    # What moved it: a touchpoint, time alone (a window closed, a limit was crossed), a
    # recompute, or staff. Absent from messages before issue 16: a touchpoint then.
    moved_by = fields.String(
        load_default="event", validate=validate.OneOf(["event", "time", "recompute", "staff"])
    )


class LostSchema(Schema):
    """A lost contact (services/segment/lost.py): why, whose staff member, when, which event."""

    class Meta:
        unknown = EXCLUDE

    reason = fields.String(
        required=True,
        validate=validate.OneOf(["customer_deleted_staff", "staff_deleted_customer"]),
    )
    staff_userid = fields.String(allow_none=True, load_default=None)
    at = fields.AwareDateTime(required=True)
    event_id = fields.String(allow_none=True, load_default=None)


class ProfileSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    schema = fields.String(required=True, validate=validate.Equal(PROFILE))
    tenant_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    identities = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    model = fields.String(required=True)
    stage = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    account_id = fields.String(allow_none=True)
    account_stage = fields.String(allow_none=True)
    risk_flags = fields.List(fields.String(), load_default=list)
    score = fields.Float(required=True)
    tags = fields.List(fields.String(), load_default=list)
    segments = fields.List(fields.String(), load_default=list)
    behaviour = fields.List(fields.String(), load_default=list)  # B2C customer types
    last_event_at = fields.AwareDateTime(allow_none=True)
    updated_at = fields.AwareDateTime(required=True)
    merged_into = fields.String(allow_none=True, load_default=None)  # a tombstone for merges
    # Reach (services/segment/reach.py); None: no evidence either way.
    oa_follower = fields.Boolean(allow_none=True, load_default=None)
    wecom_contact = fields.Boolean(allow_none=True, load_default=None)
    oa_last_message_at = fields.AwareDateTime(allow_none=True, load_default=None)
    # Set while the contact is lost (docs/domain.md "Lost customers"); absent before issue 18.
    lost = fields.Nested(LostSchema, allow_none=True, load_default=None)


class CatalogueModelSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    builtin = fields.Boolean(required=True)
    # Funnel stages in order, then side stages. Accounts are staged with the same model, so
    # account stages are these names too (a model with account stages of its own would add a
    # field here, within catalogue/1: consumers ignore what they do not know).
    stages = fields.List(fields.String(), required=True)
    side_stages = fields.List(fields.String(), load_default=list)
    # What the stages mean ({stage: ["evaluating"], ...}, the stages declaring any; names from
    # shared.vocabulary.STAGE_FLAGS, though a consumer keeps names it does not know). None: a
    # catalogue from before stages had flags; {}: a model whose stages declare none.
    flags = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), allow_none=True,
        load_default=None,
    )  # fmt: skip


class CatalogueSegmentSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    segment_id = fields.String(required=True)
    name = fields.String(required=True)
    # Set while the segment is disabled: its rule failed while being evaluated (it matches
    # nobody until saved again). Outreach records each new one in its audit log.
    disabled_at = fields.AwareDateTime(allow_none=True)
    disabled_reason = fields.String(allow_none=True)  # type and rule path, no value


class CatalogueSchema(Schema):
    """A tenant's names as segment knows them, whole: the model it stages contacts and accounts
    with, and its segments. Keyed by tenant_id on a compacted topic, so the newest per tenant is
    all a consumer ever needs; ``published_at`` orders two of one tenant."""

    class Meta:
        unknown = EXCLUDE

    schema = fields.String(required=True, validate=validate.Equal(CATALOGUE))
    tenant_id = fields.String(required=True)
    model = fields.Nested(CatalogueModelSchema, required=True)
    segments = fields.List(fields.Nested(CatalogueSegmentSchema), required=True)
    published_at = fields.AwareDateTime(required=True)


class SignalIdentitySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    openid = fields.String(allow_none=True, load_default=None)
    external_userid = fields.String(allow_none=True, load_default=None)
    staff_userid = fields.String(allow_none=True, load_default=None)


# A signal's attributes: a whitelist per type (shared/signals.py builds them). Never a message's
# text or any other payload field: outreach reads this topic, not the touchpoints.
SIGNAL_ATTRIBUTES = {
    "link.clicked": ("campaign_id", "content_id", "contact_id"),
    "oa.message": ("msg_type",),
    "wecom.contact.added": ("welcome_code", "state"),
    "wecom.contact.half_added": ("welcome_code", "state"),  # may carry the WelcomeCode
}


class SignalSchema(Schema):
    """An event outreach acts on (siyu.signals.v1, key ``<tenant>:<person>``): ingest writes it
    with the touchpoint it comes from, in the same hand-off (services/ingest/publisher.py)."""

    class Meta:
        unknown = EXCLUDE

    schema = fields.String(required=True, validate=validate.Equal(SIGNAL))
    tenant_id = fields.String(required=True)
    event_id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(list(SIGNAL_ATTRIBUTES)))
    occurred_at = fields.AwareDateTime(required=True)
    received_at = fields.AwareDateTime(required=True)
    identity = fields.Nested(SignalIdentitySchema, required=True)
    attributes = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True),
                             load_default=dict)  # fmt: skip

    @validates_schema
    def _whitelisted(self, data: dict, **kwargs: Any) -> None:
        allowed = SIGNAL_ATTRIBUTES.get(data.get("type"), ())
        extra = sorted(set(data.get("attributes") or {}) - set(allowed))
        if extra:
            raise ValidationError(f"attributes not allowed for this type: {extra}", "attributes")


_SCHEMAS = {
    STAGE_CHANGE: StageChangeSchema(),
    PROFILE: ProfileSchema(),
    CATALOGUE: CatalogueSchema(),
    SIGNAL: SignalSchema(),
}


def encode(kind: str, value: dict[str, Any]) -> bytes:
    """Validate through the schema, then serialise: what fails here never reaches Kafka."""
    schema = _SCHEMAS[kind]
    loaded = schema.load({"schema": kind, **value})  # raises ValidationError naming the field
    return json.dumps(schema.dump(loaded), ensure_ascii=False).encode()


def encode_built(kind: str, value: dict[str, Any]) -> bytes:
    """Serialise a value our own code built from typed fields, without the schema round trip
    (which costs more than deriving the value): the segment consumer's profiles and stage
    changes. Tests decode what it publishes through ``decode``, so a drift fails there."""
    return json.dumps({"schema": kind, **value}, ensure_ascii=False).encode()


def decode(kind: str, value: bytes) -> dict[str, Any]:
    return _SCHEMAS[kind].load(json.loads(value))
