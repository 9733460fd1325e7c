"""B2C behaviour: features of one contact's history and its customer types (docs/domain.md,
"Customer types").

``features(events, now, created_at)`` turns a contact's events into numbers (recency, frequency,
value, engagement, interests, offer responsiveness, complaints); ``segments(features, thresholds)``
places the contact in customer types. Pure functions; events stamped after ``now`` (clock skew)
count as happening at ``now``. Recency and engagement count only the customer's own actions
(``facts.is_activity``, docs/domain.md "Activity"): an enrichment fetch or a staff edit is no touch.

Segments and how they combine
-----------------------------
``segments`` returns names in ``SEGMENTS`` order:

1. ``dissatisfied`` (complaints or refunds in the last 90 days) comes first: downstream, it
   overrides marketing (service recovery before any offer).
2. At most one *lifecycle* segment, exclusive by construction, checked in this order:
   ``prospect`` (no order yet); ``lapsed`` (a customer idle, with no action of their own, for
   ``lapsed_days``); ``new`` (first order within ``new_days``); ``loyal`` (at least
   ``loyal_min_orders`` orders in 365 days and the last within ``loyal_max_recency_days``).
   A customer who is none of these (an occasional, still active buyer) gets no lifecycle segment.
3. Any number of *traits*: ``impulse`` (first order within ``impulse_max_days`` of the first touch,
   after at most ``impulse_max_touches`` touches), ``researcher`` (at least
   ``researcher_min_content`` content touches before the first order, or in all if none),
   ``discount_chaser`` (most orders discounted), ``skeptic`` (no order after
   ``skeptic_min_days``, yet engaged or asking questions). ``impulse`` and ``researcher`` exclude
   each other (the thresholds must keep ``impulse_max_touches < researcher_min_content``); a
   ``skeptic`` is always a ``prospect`` and never an ``impulse`` or ``discount_chaser``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, validate
from marshmallow import fields as mfields

from services.segment.facts import EventFact, amount_of, is_activity
from services.segment.scoring import RuleConfigError, check_positive, validate_config

SEGMENTS = (
    "dissatisfied",
    "prospect",
    "lapsed",
    "new",
    "loyal",
    "impulse",
    "researcher",
    "discount_chaser",
    "skeptic",
)

ORDER = "biz.order.paid"
REFUND = "biz.order.refunded"
COMPLAINT = "biz.complaint.filed"
QUESTION = "oa.message"
# Non-order touches: the person did something that is not buying (customer actions only).
TOUCH_TYPES = frozenset(
    {
        "oa.subscribe",
        "oa.scan",
        "oa.click",
        "oa.view",
        "oa.message",
        "link.clicked",
        "wecom.contact.added",
        "wecom.chat.member_joined",
        "biz.registered",
        "biz.demo.requested",
        "biz.trial.started",
        "biz.webinar.registered",
        "biz.webinar.attended",
        "biz.event.attended",
        "biz.content.downloaded",
    }
)
CLICK_TYPES = frozenset({"link.clicked", "oa.click", "oa.view"})
CONTENT_TYPES = frozenset(
    {"link.clicked", "oa.click", "oa.view", "biz.content.downloaded", "biz.webinar.attended"}
)
INTEREST_TYPES = frozenset({"link.clicked", "oa.click", "biz.content.downloaded"})
_TRUE = frozenset({"true", "1", "yes", "y", "是"})
_DAY = 86400.0


@dataclass(frozen=True)
class Features:
    recency_days: float | None  # days since the last order; None without orders
    frequency_90d: int  # orders in the last 90 days
    monetary_365d: float  # paid amount in the last 365 days (refunds not netted)
    engagement_30d: int  # non-order touches in the last 30 days
    clicks_30d: int  # link and menu clicks in the last 30 days
    content_interests: tuple[str, ...]  # top topics, most frequent first
    discount_orders_ratio: float  # share of all orders with a discount or coupon (0 without)
    complaints_90d: int
    refunds_90d: int
    days_since_first: float  # since creation or the first event, whichever is earlier
    orders_total: int = 0
    orders_365d: int = 0
    first_order_days: float | None = None  # days since the first order
    idle_days: float | None = None  # days since the customer's last own action (of any kind)
    days_to_first_order: float | None = None  # first touch (or creation) -> first order
    touches_before_first_order: int = 0
    research_touches: int = 0  # content touches before the first order (all, without orders)
    touches_90d: int = 0
    questions_90d: int = 0  # messages sent to the OA


_FEATURE_NAMES = tuple(f.name for f in fields(Features))


def as_dict(feats: Features) -> dict[str, Any]:
    """The features as stored (JSON): ``dataclasses.asdict`` without its deep copy, which cost
    more than computing them."""
    out = {name: getattr(feats, name) for name in _FEATURE_NAMES}
    out["content_interests"] = list(feats.content_interests)
    return out


class _BehaviourSchema(Schema):
    class Meta:
        unknown = RAISE

    new_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    loyal_min_orders = mfields.Integer(strict=True, validate=validate.Range(min=2))
    loyal_max_recency_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    impulse_max_days = mfields.Float(validate=validate.Range(min=0))
    impulse_max_touches = mfields.Integer(strict=True, validate=validate.Range(min=0))
    researcher_min_content = mfields.Integer(strict=True, validate=validate.Range(min=1))
    discount_min_orders = mfields.Integer(strict=True, validate=validate.Range(min=1))
    discount_min_ratio = mfields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False))
    skeptic_min_days = mfields.Float(validate=validate.Range(min=0))
    skeptic_min_touches = mfields.Integer(strict=True, validate=validate.Range(min=1))
    skeptic_min_questions = mfields.Integer(strict=True, validate=validate.Range(min=1))
    dissatisfied_min_complaints = mfields.Integer(strict=True, validate=validate.Range(min=1))
    dissatisfied_min_refunds = mfields.Integer(strict=True, validate=validate.Range(min=1))
    lapsed_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))


@dataclass(frozen=True)
class BehaviourThresholds:
    new_days: float = 30.0
    loyal_min_orders: int = 3
    loyal_max_recency_days: float = 60.0
    impulse_max_days: float = 1.0
    impulse_max_touches: int = 2
    researcher_min_content: int = 5
    discount_min_orders: int = 2
    discount_min_ratio: float = 0.6
    skeptic_min_days: float = 60.0
    skeptic_min_touches: int = 5
    skeptic_min_questions: int = 3
    dissatisfied_min_complaints: int = 1
    dissatisfied_min_refunds: int = 1
    lapsed_days: float = 120.0

    def __post_init__(self) -> None:
        check_positive(
            self,
            "new_days",
            "loyal_min_orders",
            "loyal_max_recency_days",
            "researcher_min_content",
            "discount_min_orders",
            "discount_min_ratio",
            "skeptic_min_touches",
            "skeptic_min_questions",
            "dissatisfied_min_complaints",
            "dissatisfied_min_refunds",
            "lapsed_days",
        )
        check_positive(
            self, "impulse_max_days", "impulse_max_touches", "skeptic_min_days", allow_zero=True
        )
        if self.impulse_max_touches >= self.researcher_min_content:
            raise RuleConfigError(
                "BehaviourThresholds.impulse_max_touches: must be below researcher_min_content "
                "(an impulse buyer cannot also be a researcher)"
            )
        if self.discount_min_ratio > 1:
            raise RuleConfigError("BehaviourThresholds.discount_min_ratio: must be at most 1")
        if self.lapsed_days <= self.new_days:
            raise RuleConfigError("BehaviourThresholds.lapsed_days: must exceed new_days")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BehaviourThresholds:
        return cls(**validate_config(cls.__name__, _BehaviourSchema(), data))


DEFAULT_THRESHOLDS = BehaviourThresholds()

# The windows ``features`` counts events in (days).
FEATURE_WINDOWS = (30.0, 90.0, 180.0, 365.0)
# Features that are an age in days: they grow with time alone, so a rule's limit on one is a
# horizon (docs/architecture.md "Time-driven evaluation").
TIME_FEATURES = frozenset({"recency_days", "days_since_first", "first_order_days", "idle_days"})


def horizon_days(t: BehaviourThresholds = DEFAULT_THRESHOLDS) -> frozenset[float]:
    """Ages at which an event's passing can change the features or the customer types."""
    limits = (t.new_days, t.loyal_max_recency_days, t.skeptic_min_days, t.lapsed_days)
    return frozenset((*FEATURE_WINDOWS, *limits))


# --- features -----------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in _TRUE
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def is_discounted(attributes: Mapping[str, Any]) -> bool:
    """An order bought with a discount (``discount`` true) or a coupon (any coupon attribute)."""
    if _truthy(attributes.get("discount")):
        return True
    return any(
        attributes.get(key) not in (None, "", False, 0)
        for key in ("coupon", "coupon_id", "coupon_code")
    )


def topic_of(attributes: Mapping[str, Any]) -> str | None:
    """What a click or download was about: ``topic``, else ``content_id``, else the url's path."""
    for key in ("topic", "content_id"):
        value = attributes.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip().casefold()
    url = attributes.get("url")
    if isinstance(url, str) and url.strip():
        parts = urlsplit(url.strip())
        host = parts.netloc.casefold()
        path = parts.path.rstrip("/")
        return f"{host}{path}" if host else (path or None)
    return None


def features(
    events: Iterable[EventFact],
    now: datetime,
    created_at: datetime | None = None,
    *,
    interest_window_days: float = 180.0,
    top_interests: int = 5,
) -> Features:
    """The behaviour features of one contact at ``now``."""
    history = sorted(
        (e if e.occurred_at <= now else replace(e, occurred_at=now) for e in events),
        key=lambda e: e.occurred_at,
    )

    def age(e: EventFact) -> float:
        return (now - e.occurred_at).total_seconds() / _DAY

    orders = [e for e in history if e.type == ORDER]
    touches = [e for e in history if e.type in TOUCH_TYPES and is_activity(e)]
    first_order = orders[0] if orders else None

    starts = [t for t in (created_at, history[0].occurred_at if history else None) if t]
    days_since_first = max(0.0, (now - min(starts)).total_seconds() / _DAY) if starts else 0.0
    active = [e for e in history if is_activity(e)]

    counts: Counter[str] = Counter()
    last_seen: dict[str, datetime] = {}
    for event in history:
        if event.type in INTEREST_TYPES and age(event) <= interest_window_days:
            topic = topic_of(event.attributes)
            if topic:
                counts[topic] += 1
                last_seen[topic] = event.occurred_at
    ranked = sorted(counts, key=lambda k: (-counts[k], -last_seen[k].timestamp(), k))

    if first_order is not None:
        before = [e for e in touches if e.occurred_at < first_order.occurred_at]
        first_touch = min(starts)  # creation counts: the contact was already ours
        days_to_first_order: float | None = max(
            0.0, (first_order.occurred_at - first_touch).total_seconds() / _DAY
        )
    else:
        before = touches
        days_to_first_order = None

    return Features(
        recency_days=age(orders[-1]) if orders else None,
        frequency_90d=sum(1 for e in orders if age(e) <= 90),
        monetary_365d=sum(amount_of(e.attributes) for e in orders if age(e) <= 365),
        engagement_30d=sum(1 for e in touches if age(e) <= 30),
        clicks_30d=sum(1 for e in history if e.type in CLICK_TYPES and age(e) <= 30),
        content_interests=tuple(ranked[:top_interests]),
        discount_orders_ratio=(
            sum(1 for e in orders if is_discounted(e.attributes)) / len(orders) if orders else 0.0
        ),
        complaints_90d=sum(1 for e in history if e.type == COMPLAINT and age(e) <= 90),
        refunds_90d=sum(1 for e in history if e.type == REFUND and age(e) <= 90),
        days_since_first=days_since_first,
        orders_total=len(orders),
        orders_365d=sum(1 for e in orders if age(e) <= 365),
        first_order_days=age(first_order) if first_order else None,
        idle_days=age(active[-1]) if active else None,
        days_to_first_order=days_to_first_order,
        touches_before_first_order=len(before) if first_order else 0,
        research_touches=sum(1 for e in before if e.type in CONTENT_TYPES),
        touches_90d=sum(1 for e in touches if age(e) <= 90),
        questions_90d=sum(1 for e in history if e.type == QUESTION and age(e) <= 90),
    )


# --- segments -----------------------------------------------------------------------------------


def segments(f: Features, thresholds: BehaviourThresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """The contact's customer types, in ``SEGMENTS`` order (see the module docstring)."""
    t = thresholds
    found: set[str] = set()

    if f.complaints_90d >= t.dissatisfied_min_complaints or (
        f.refunds_90d >= t.dissatisfied_min_refunds
    ):
        found.add("dissatisfied")

    if f.orders_total == 0:
        found.add("prospect")
        engaged = (
            f.touches_90d >= t.skeptic_min_touches or f.questions_90d >= t.skeptic_min_questions
        )
        if f.days_since_first >= t.skeptic_min_days and engaged:
            found.add("skeptic")
    else:
        if f.idle_days is not None and f.idle_days >= t.lapsed_days:
            found.add("lapsed")
        elif f.first_order_days is not None and f.first_order_days <= t.new_days:
            found.add("new")
        elif (
            f.orders_365d >= t.loyal_min_orders
            and f.recency_days is not None
            and f.recency_days <= t.loyal_max_recency_days
        ):
            found.add("loyal")
        if (
            f.days_to_first_order is not None
            and f.days_to_first_order <= t.impulse_max_days
            and f.touches_before_first_order <= t.impulse_max_touches
        ):
            found.add("impulse")
        if (
            f.orders_total >= t.discount_min_orders
            and f.discount_orders_ratio >= t.discount_min_ratio
        ):
            found.add("discount_chaser")

    if f.research_touches >= t.researcher_min_content:
        found.add("researcher")

    return [name for name in SEGMENTS if name in found]
