"""What ops staff define, as marshmallow schemas (they validate the API and document it in OpenAPI):
content items, campaigns (audience, content or series, trigger, quiet hours) and the tenant's
outreach settings (frequency caps, platform quotas, default quiet hours, the no-discount guard of
a lifecycle model whose stages declare no flags).
"""

from __future__ import annotations

import re
from typing import Any

from croniter import croniter
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)

from services.outreach.budget import MODES as BUDGET_MODES
from services.outreach.budget import legacy_mode
from services.outreach.holdout import MAX_PERCENT as MAX_HOLDOUT
from services.outreach.policies import BLOCK_ALL_B2B_PROMOTIONS, UNFLAGGED_DEFAULTS
from services.outreach.schedule import rrule_error
from shared.links import url_error
from shared.vocabulary import BUYING_ROLES, CHANNELS, MODES, time_zone_error

FORMATS = (
    "whitepaper", "industry_report", "case_study", "review", "webinar_invite", "class_invite",
    "product_spec", "proposal", "article", "event_invite", "onboarding_guide", "promotion",
    "service_notice",
)  # fmt: skip
# service_notice is the one format an OA template message may carry (services/outreach/notices.py).
# Which payload each channel sends (content.payloads keys).
CHANNEL_PAYLOAD = {
    "wecom_group": "wecom",
    "wecom_single": "wecom",
    "oa_template": "oa_template",
    "oa_mass": "oa_mass",
    "oa_custom": "oa_custom",
}
# No tenant may schedule more often than this, whatever its settings (minutes).
MIN_SCHEDULE_INTERVAL_FLOOR = 5
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _Patch:
    """A PATCH body: any subset of the fields, each given one replacing the stored value whole,
    so only the top level is partial (marshmallow's ``partial=True`` would reach into nested
    objects and store, say, an OA payload without its msgtype)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=tuple(self._declared_fields), **kwargs)


def _one_of(choices, kind: str) -> validate.OneOf:
    """OneOf whose message names the bad value and the valid ones (issue 13: unknown names)."""
    return validate.OneOf(choices, error=f"Unknown {kind} {{input!r}}. Valid: {{choices}}.")


def _names(**kwargs) -> fields.List:
    return fields.List(fields.String(validate=validate.Length(min=1, max=128)), **kwargs)


# --- content ------------------------------------------------------------------------------------


def _http_url(value: str) -> None:
    """Every URL of a content item: http(s) with a host (docs/security.md "Tracked links")."""
    if (why := url_error(value)) is not None:
        raise ValidationError(f"{value[:60]!r} {why}")


def _check_urls(body: dict, keys: tuple[str, ...], where: str) -> None:
    """The URL-valued keys of a free-form object (a WeCom link, an OA news article)."""
    errors = {}
    for key in keys:
        if key in body and (why := url_error(body[key])) is not None:
            errors[key] = [f"{str(body[key])[:60]!r} {why}"]
    if errors:
        raise ValidationError(errors, where)


MEDIA_ID_REFUSED = (
    "an image's media_id expires after 3 days and Siyu cannot upload it again: give the "
    "image's https url instead (Siyu uploads it and refreshes it before it expires)"
)


class WeComAttachmentSchema(_Strict):
    msgtype = fields.String(
        required=True, validate=validate.OneOf(["link", "miniprogram", "image"])
    )
    link = fields.Dict(metadata={"description": "{title, url, desc?, picurl?}"})
    miniprogram = fields.Dict(metadata={"description": "{title, appid, page, pic_media_id}"})
    image = fields.Dict(
        metadata={"description": "{url}: an https JPG or PNG Siyu uploads as temporary media "
                  "and refreshes before it expires (docs/platform.md \"Temporary media\"), "
                  "or {pic_url} (from media/uploadimg); a media_id is refused (it expires "
                  "after 3 days and cannot be refreshed)"}
    )  # fmt: skip

    @validates_schema(skip_on_field_errors=True)
    def _body(self, data: dict, **kwargs) -> None:
        kind = data.get("msgtype")  # absent only in a partial load, where required is not checked
        if kind is None:
            return
        body = data.get(kind)
        if not isinstance(body, dict) or not body:
            raise ValidationError(f"a {kind} attachment needs its {kind}", kind)
        if kind == "link" and not (body.get("title") and body.get("url")):
            raise ValidationError("a link needs title and url", kind)
        _check_urls(body, {"link": ("url", "picurl"), "image": ("pic_url", "url")}.get(kind, ()),
                    kind)  # fmt: skip
        if kind == "image" and body.get("media_id"):  # expires in 3 days, cannot be refreshed
            raise ValidationError(MEDIA_ID_REFUSED, kind)
        if kind == "image" and not any(body.get(k) for k in ("pic_url", "url")):
            raise ValidationError("an image needs url (https, a JPG or PNG) or pic_url", kind)
        if kind == "miniprogram" and not all(body.get(k) for k in ("title", "appid", "page")):
            raise ValidationError("a miniprogram needs title, appid and page", kind)


class WeComPayloadSchema(_Strict):
    text = fields.String(validate=validate.Length(max=4000))
    attachments = fields.List(
        fields.Nested(WeComAttachmentSchema), validate=validate.Length(max=9), load_default=list
    )

    @validates_schema
    def _something(self, data: dict, **kwargs) -> None:
        if not data.get("text") and not data.get("attachments"):
            raise ValidationError("give text, attachments or both")


class OaTemplatePayloadSchema(_Strict):
    template_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    url = fields.Url(schemes={"http", "https"}, validate=_http_url)
    miniprogram = fields.Dict()
    data = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        required=True,
        metadata={"description": '{"first": {"value": "..."}, ...}'},
    )


class OaMassPayloadSchema(_Strict):
    msgtype = fields.String(required=True, validate=validate.OneOf(["mpnews", "text"]))
    media_id = fields.String()
    text = fields.String(validate=validate.Length(max=4000))

    @validates_schema(skip_on_field_errors=True)
    def _body(self, data: dict, **kwargs) -> None:
        kind = data.get("msgtype")  # absent only in a partial load
        if kind == "mpnews" and not data.get("media_id"):
            raise ValidationError("mpnews needs media_id", "media_id")
        if kind == "text" and not data.get("text"):
            raise ValidationError("text needs text", "text")


class OaCustomPayloadSchema(_Strict):
    msgtype = fields.String(required=True, validate=validate.OneOf(["text", "news", "link"]))
    text = fields.String(validate=validate.Length(max=2000))
    news = fields.Dict(metadata={"description": "{title, description, url, picurl}"})

    @validates_schema(skip_on_field_errors=True)
    def _body(self, data: dict, **kwargs) -> None:
        kind = data.get("msgtype")  # absent only in a partial load
        if kind == "text" and not data.get("text"):
            raise ValidationError("text needs text", "text")
        if kind in ("news", "link") and not (data.get("news") or {}).get("url"):
            raise ValidationError("news needs news.url", "news")
        _check_urls(data.get("news") or {}, ("url", "picurl"), "news")


class PayloadsSchema(_Strict):
    wecom = fields.Nested(WeComPayloadSchema)
    oa_template = fields.Nested(OaTemplatePayloadSchema)
    oa_mass = fields.Nested(OaMassPayloadSchema)
    oa_custom = fields.Nested(OaCustomPayloadSchema)

    @validates_schema
    def _one(self, data: dict, **kwargs) -> None:
        if not data:
            raise ValidationError("give a payload for at least one channel")


class ContentInSchema(_Strict):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    format = fields.String(required=True, validate=_one_of(FORMATS, "format"))
    promotional = fields.Boolean(
        load_default=None,
        metadata={"description": "A discount or offer. Always true for format=promotion"},
    )
    stages = _names(load_default=list, metadata={"description": "Lifecycle stages it fits"})
    roles = fields.List(
        fields.String(validate=_one_of(BUYING_ROLES, "buying role")), load_default=list
    )
    topics = _names(load_default=list)
    industries = _names(load_default=list)
    payloads = fields.Nested(PayloadsSchema, required=True)

    @validates_schema
    def _promotion(self, data: dict, **kwargs) -> None:
        if data.get("format") == "promotion" and data.get("promotional") is False:
            raise ValidationError("a promotion is promotional", "promotional")


class ContentPatchSchema(_Patch, ContentInSchema):
    """The fields to change (any subset); a field given replaces the stored one."""


def is_promotional(body: dict) -> bool:
    """Promotional whatever the item says if its format is a promotion (the flag cannot be
    hidden by leaving it out)."""
    return bool(body.get("promotional")) or body.get("format") == "promotion"


# --- campaigns ----------------------------------------------------------------------------------


class FilterSchema(_Strict):
    segments = _names()
    stages = _names()
    roles = fields.List(fields.String(validate=_one_of(BUYING_ROLES, "buying role")))
    accounts = _names()
    account_stages = _names()
    risk_flags = _names()
    tags = _names()
    behaviour = _names()
    groups = fields.List(fields.String(validate=validate.Regexp(_ID)))
    contacts = _names()
    mode = fields.String(validate=validate.OneOf(MODES))
    oa_followers = fields.Boolean(metadata={"description": "Only contacts following the OA"})
    min_score = fields.Float()


class AudienceSchema(FilterSchema):
    exclude = fields.Nested(FilterSchema, metadata={"description": "Whoever matches is left out"})
    oa_tag_id = fields.Integer(
        validate=validate.Range(min=0),
        metadata={
            "description": "oa_mass only: send to this OA user tag (mass/sendall); the platform "
            "picks the followers, so no other filter, cap or per-person guard can apply"
        },
    )

    @validates_schema
    def _tag_alone(self, data: dict, **kwargs) -> None:
        if "oa_tag_id" in data and len(data) > 1:
            raise ValidationError("oa_tag_id cannot be combined with other filters", "oa_tag_id")


class ContentRefSchema(_Strict):
    item = fields.String(metadata={"description": "One content item for every run"})
    series = fields.List(
        fields.String(),
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "Ordered items: each run sends every recipient the next item it has "
            "not received whose stages/roles fit it"
        },
    )

    @validates_schema
    def _one(self, data: dict, **kwargs) -> None:
        if bool(data.get("item")) == bool(data.get("series")):
            raise ValidationError("give exactly one of item or series")


class ScheduleSchema(_Strict):
    cron = fields.String(metadata={"description": "e.g. '0 10 * * TUE' (every Tuesday 10:00)"})
    rrule = fields.String(metadata={"description": "RFC 5545, e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=10"})
    timezone = fields.String(metadata={"description": "Default: the tenant's"})
    start = fields.AwareDateTime()
    end = fields.AwareDateTime()

    @validates("cron")
    def _cron(self, value: str, **kwargs) -> None:
        if not croniter.is_valid(value):
            raise ValidationError(f"not a cron expression: {value!r}")

    @validates("rrule")
    def _rrule(self, value: str, **kwargs) -> None:
        error = rrule_error(value)
        if error:
            raise ValidationError(error)

    @validates_schema
    def _one(self, data: dict, **kwargs) -> None:
        if bool(data.get("cron")) == bool(data.get("rrule")):
            raise ValidationError("give exactly one of cron or rrule")
        if data.get("start") and data.get("end") and data["end"] <= data["start"]:
            raise ValidationError("end must be after start", "end")

    @validates("timezone")
    def _timezone(self, value: str, **kwargs) -> None:
        error = time_zone_error(value)
        if error:
            raise ValidationError(error)


class EventTriggerSchema(_Strict):
    stage_entered = fields.String(metadata={"description": "Fires when a subject enters it"})
    subject = fields.String(
        load_default="contact",
        validate=validate.OneOf(["contact", "account"]),
        metadata={"description": "account: every member of the account is the audience"},
    )
    risk_flag = fields.String(metadata={"description": "Fires when an account's flag is raised"})
    delay_minutes = fields.Integer(load_default=0, validate=validate.Range(min=0, max=60 * 24 * 90))

    @validates_schema
    def _one(self, data: dict, **kwargs) -> None:
        if bool(data.get("stage_entered")) == bool(data.get("risk_flag")):
            raise ValidationError("give exactly one of stage_entered or risk_flag")


class TriggerSchema(_Strict):
    schedule = fields.Nested(ScheduleSchema)
    event = fields.Nested(EventTriggerSchema)

    @validates_schema
    def _one(self, data: dict, **kwargs) -> None:
        if bool(data.get("schedule")) == bool(data.get("event")):
            raise ValidationError("give exactly one of schedule or event")


class QuietHoursSchema(_Strict):
    start = fields.String(
        required=True, validate=validate.Regexp(_HHMM), metadata={"example": "21:00"}
    )
    end = fields.String(
        required=True, validate=validate.Regexp(_HHMM), metadata={"example": "08:00"}
    )


class CampaignInSchema(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    channel = fields.String(required=True, validate=_one_of(CHANNELS, "channel"))
    audience = fields.Nested(AudienceSchema, required=True)
    content = fields.Nested(ContentRefSchema, required=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    quiet_hours = fields.Nested(
        QuietHoursSchema, allow_none=True, load_default=None,
        metadata={"description": "Default: the tenant's; sends due inside wait until the end"},
    )  # fmt: skip

    @validates_schema
    def _tag_channel(self, data: dict, **kwargs) -> None:
        # Both fields or no judgement: a PATCH of the audience alone keeps the stored channel,
        # and the merged campaign is validated whole.
        if "channel" not in data or "audience" not in data:
            return
        if "oa_tag_id" in (data["audience"] or {}) and data["channel"] != "oa_mass":
            raise ValidationError("oa_tag_id is for the oa_mass channel", "audience")

    @validates_schema
    def _holdout_reach(self, data: dict, **kwargs) -> None:
        # Groups and OA tags are not people: a holdout is per contact (services/outreach/
        # holdout.py). Judged on the merged campaign as a whole, like the channel above.
        if not data.get("holdout_percent") or "channel" not in data or "audience" not in data:
            return
        if data["channel"] == "wecom_group" or "oa_tag_id" in (data["audience"] or {}):
            raise ValidationError(
                "a holdout applies to contact-addressed sends only, not to customer groups "
                "or OA tags",
                "holdout_percent",
            )

    holdout_percent = fields.Integer(
        load_default=0, validate=validate.Range(min=0, max=MAX_HOLDOUT),
        metadata={"description": "Share of the contacts (0-50 %) kept out of every run, the "
                  "effect report's control group; the same contacts in every run"},
    )  # fmt: skip

    allow_b2b_promotion = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Admin only, audited: lets promotional content reach B2B contacts "
            "outside Comparison/Examination (never inside)"
        },
    )


class CampaignPatchSchema(_Patch, CampaignInSchema):
    """The fields to change (any subset); a field given replaces the stored one."""


# --- tenant settings ----------------------------------------------------------------------------


class CapsSchema(_Strict):
    contact_per_day = fields.Integer(load_default=1, validate=validate.Range(min=0))
    contact_per_week = fields.Integer(load_default=3, validate=validate.Range(min=0))
    group_per_day = fields.Integer(load_default=1, validate=validate.Range(min=0))
    group_per_week = fields.Integer(load_default=3, validate=validate.Range(min=0))


class QuotasSchema(_Strict):
    """The platform's limits (docs/platform.md "Rate limits and quotas"), as they apply here."""

    wecom_budget = fields.String(
        load_default=None, validate=_one_of(BUDGET_MODES, "WeCom budget mode"),
        metadata={"description": "The corp's WeCom rule for group-sent messages per customer "
                  "and customer group (docs/platform.md \"The platform's budget of group "
                  "sends\"): month (as many a calendar month as it has days, the default), "
                  "week (7 an ISO week) or day (1 a day), in China time as WeCom counts",
                  "enum": list(BUDGET_MODES)},
    )  # fmt: skip
    # The old setting, still read so stored settings load: any value is the default month
    # mode (budget.legacy_mode); never written back.
    wecom_customer_per_day = fields.Integer(
        load_default=None, load_only=True, validate=validate.Range(min=0),
        metadata={"description": "Deprecated: any value is read as wecom_budget month"},
    )  # fmt: skip
    oa_mass_per_month = fields.Integer(
        load_default=4, validate=validate.Range(min=0),
        metadata={"description": "OA mass messages one follower may receive per month"},
    )  # fmt: skip
    oa_custom_window_hours = fields.Integer(load_default=48, validate=validate.Range(min=1))
    oa_custom_per_window = fields.Integer(load_default=5, validate=validate.Range(min=0))

    @post_load
    def _budget(self, data: dict, **kwargs) -> dict:
        per_day = data.pop("wecom_customer_per_day", None)
        if data.get("wecom_budget") is None:
            data["wecom_budget"] = legacy_mode(per_day)
        return data


class UnflaggedGuardField(fields.Field):
    """``block_all_b2b_promotions``, ``allow``, or a non-empty list of stage names (checked
    against the tenant's model by the settings route, which knows the model)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value in UNFLAGGED_DEFAULTS:
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return list(dict.fromkeys(value))
        raise ValidationError(
            f"Unknown value {value!r}. Valid: {', '.join(UNFLAGGED_DEFAULTS)}, or a non-empty "
            "list of the model's stage names to treat as evaluating."
        )


GUARD_UNFLAGGED_DESCRIPTION = (
    "The no-discount guard when the tenant's lifecycle model flags no stage "
    '(docs/domain.md "Campaigns and policies"). A model that flags any stage, as the built-ins '
    "do, is guarded by its evaluating stages and this is not used. block_all_b2b_promotions "
    "(the default): promotions reach no B2B contact, whatever the campaign's "
    "allow_b2b_promotion (reason no_discount_unflagged_model); allow: no stage counts as "
    "evaluating, only the campaign's B2B default applies; or a list of the model's stage names "
    "to treat as evaluating (a 400 names an unknown one and lists the valid ones)."
)


class RemindersSchema(_Strict):
    """Reminding members of unconfirmed group sends (docs/platform.md "Group sends are staff
    tasks"): never in quiet hours, at most 3 per message in 24 h (the platform's limit)."""

    enabled = fields.Boolean(load_default=True)
    first_after_minutes = fields.Integer(load_default=60, validate=validate.Range(min=10))
    every_minutes = fields.Integer(load_default=240, validate=validate.Range(min=30))
    per_day = fields.Integer(load_default=3, validate=validate.Range(min=0, max=3))


class OutreachSettingsSchema(_Strict):
    caps = fields.Nested(CapsSchema, load_default=lambda: CapsSchema().load({}))
    quotas = fields.Nested(QuotasSchema, load_default=lambda: QuotasSchema().load({}))
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, load_default=None)
    reminders = fields.Nested(RemindersSchema, load_default=lambda: RemindersSchema().load({}))
    min_schedule_interval_minutes = fields.Integer(
        load_default=60,
        validate=validate.Range(min=MIN_SCHEDULE_INTERVAL_FLOOR, max=7 * 24 * 60),
        metadata={"description": "Schedules may fire at most this often (campaigns: a 400 "
                  f"otherwise); {MIN_SCHEDULE_INTERVAL_FLOOR} at least"},
    )  # fmt: skip
    guard_unflagged_model = UnflaggedGuardField(
        load_default=BLOCK_ALL_B2B_PROMOTIONS,
        metadata={
            "description": GUARD_UNFLAGGED_DESCRIPTION,
            "oneOf": [
                {"type": "string", "enum": list(UNFLAGGED_DEFAULTS)},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        },
    )
    default_welcome = fields.List(
        fields.String(validate=validate.Length(min=1, max=80)),
        load_default=list,
        validate=validate.Length(max=20),
        metadata={"description": 'Content ids welcoming a customer who added a member through '
                  'no channel code of ours (docs/domain.md "Welcome on add"): the first that '
                  "fits is sent; empty: no welcome"},
    )  # fmt: skip


def outreach_settings(tenant_settings: dict[str, Any] | None) -> dict[str, Any]:
    """A tenant's outreach settings with defaults (tenants.settings["outreach"])."""
    return OutreachSettingsSchema().load((tenant_settings or {}).get("outreach") or {})
