"""Lead and account scoring: points per touchpoint, decaying with a half-life
(docs/domain.md, "Scoring").

Pure functions over plain data: no I/O, no clock (``now`` is always an argument).

The score model
---------------
Each event is worth ``event_points``: the points of its type plus, for a non-negative event that
names a B2B content layer (``attributes["content_layer"]``), the points of that layer (later-funnel
content signals more intent). Points lose half their weight every ``half_life_days``. Only the
customer's own actions earn points (docs/domain.md "Activity"): a staff action (a CRM lead, a quote
sent, pulling someone into a group) or a system fact (an enrichment fetch) is worth 0, whatever
the configuration.

The score is a running value that is **never below 0 at any moment**: walking the events in time
order, ``s = max(0, decayed(s, elapsed) + points_at_this_instant)``. Without negative events this is
exactly the sum of decayed points. With them, a negative event (unsubscribe, contact deleted) wipes
out accumulated interest but leaves no debt that later engagement must repay first. This choice is
what makes the incremental form (``advance``) exactly equal to the batch form with one stored float;
a sum floored only when read would need the unfloored sum stored instead. Events at the same instant
are summed before flooring, so the result does not depend on the input order. Events in the future
(clock skew) count as happening at ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, validate
from marshmallow import fields as mfields

from services.segment.facts import EventFact
from shared.envelope import CUSTOMER_ACTIONS, is_customer_action
from shared.errors import ConfigError

SECONDS_PER_DAY = 86400.0

CONTENT_LAYERS = ("authority", "acquisition", "closing", "after_sale")

DEFAULT_POINTS_BY_TYPE: Mapping[str, float] = MappingProxyType(
    {
        # attention and interest
        "oa.subscribe": 5.0,
        "oa.scan": 2.0,
        "oa.click": 2.0,
        "oa.view": 1.0,
        "oa.message": 3.0,
        "link.clicked": 3.0,
        "wecom.contact.added": 5.0,
        "wecom.chat.member_joined": 3.0,
        # search, comparison, examination
        "biz.registered": 10.0,
        "biz.content.downloaded": 8.0,
        "biz.webinar.registered": 5.0,
        "biz.webinar.attended": 15.0,
        "biz.event.attended": 15.0,
        "biz.demo.requested": 25.0,
        "biz.trial.started": 30.0,
        # action
        "biz.contract.signed": 40.0,
        "biz.order.paid": 40.0,
        # negative signals
        "oa.unsubscribe": -20.0,
        "wecom.chat.member_left": -5.0,
        "wecom.contact.follow_user_deleted": -30.0,
        "biz.order.refunded": -15.0,
        "biz.complaint.filed": -10.0,
    }
)

DEFAULT_POINTS_BY_LAYER: Mapping[str, float] = MappingProxyType(
    {"authority": 1.0, "acquisition": 3.0, "closing": 6.0, "after_sale": 2.0}
)


# --- configuration errors and loading (shared by the segment rule modules) --------------------


class RuleConfigError(ConfigError, ValueError):
    """A rule's thresholds or weights are invalid; the message names every bad field."""

    code = "invalid_rule_config"


def validate_config(name: str, schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data`` with ``schema``; return only the fields given (the rest keep defaults).

    Raises RuleConfigError naming ``Class.field`` for each problem (unknown fields included).
    """
    if not isinstance(data, Mapping):
        raise RuleConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    try:
        return schema.load(dict(data))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise RuleConfigError("; ".join(_flatten(messages, name)), details=messages) from None


def _flatten(messages: Any, prefix: str) -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key in sorted(messages, key=str):
            out.extend(_flatten(messages[key], f"{prefix}.{key}"))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {' '.join(messages)}"]
    if isinstance(messages, list):
        return [line for m in messages for line in _flatten(m, prefix)]
    return [f"{prefix}: {messages}"]


def check_positive(owner: object, *names: str, allow_zero: bool = False) -> None:
    """Post-init guard for dataclasses built directly (not through ``from_dict``)."""
    bad = []
    for name in names:
        value = getattr(owner, name)
        finite = isinstance(value, int | float) and math.isfinite(value)
        if not finite or value < 0 or (value == 0 and not allow_zero):
            bad.append(name)
    if bad:
        kind = "non-negative" if allow_zero else "positive"
        cls = type(owner).__name__
        raise RuleConfigError("; ".join(f"{cls}.{n}: must be a {kind} number" for n in bad))


# --- scoring ----------------------------------------------------------------------------------


class _ScoringSchema(Schema):
    class Meta:
        unknown = RAISE

    points_by_type = mfields.Dict(
        keys=mfields.String(
            validate=validate.OneOf(
                sorted(CUSTOMER_ACTIONS), error="{input!r} is not a customer action event type"
            )
        ),
        values=mfields.Float(allow_nan=False),
    )
    points_by_layer = mfields.Dict(
        keys=mfields.String(
            validate=validate.OneOf(CONTENT_LAYERS, error="unknown content layer {input!r}")
        ),
        values=mfields.Float(allow_nan=False),
    )
    half_life_days = mfields.Float(
        allow_nan=False, validate=validate.Range(min=0, min_inclusive=False)
    )


@dataclass(frozen=True)
class ScoringConfig:
    """Points per event type and per content layer, and the decay half-life.

    The mappings are stored read-only. ``from_dict`` *merges* given points into the defaults (a
    tenant overrides a few weights; 0 switches a type off).
    """

    points_by_type: Mapping[str, float] = field(default_factory=lambda: DEFAULT_POINTS_BY_TYPE)
    points_by_layer: Mapping[str, float] = field(default_factory=lambda: DEFAULT_POINTS_BY_LAYER)
    half_life_days: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "points_by_type", MappingProxyType(dict(self.points_by_type)))
        object.__setattr__(self, "points_by_layer", MappingProxyType(dict(self.points_by_layer)))
        check_positive(self, "half_life_days")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoringConfig:
        loaded = validate_config(cls.__name__, _ScoringSchema(), data)
        loaded["points_by_type"] = {**DEFAULT_POINTS_BY_TYPE, **loaded.get("points_by_type", {})}
        loaded["points_by_layer"] = {
            **DEFAULT_POINTS_BY_LAYER,
            **loaded.get("points_by_layer", {}),
        }
        return cls(**loaded)


DEFAULT_SCORING = ScoringConfig()


def event_points(event: EventFact, config: ScoringConfig = DEFAULT_SCORING) -> float:
    """Points of one event: its type's points, plus its content layer's points if not negative;
    0 for what the customer did not do themselves."""
    if not is_customer_action(event.type, event.attributes):
        return 0.0
    base = float(config.points_by_type.get(event.type, 0.0))
    layer = event.attributes.get("content_layer") if event.attributes else None
    if base >= 0 and isinstance(layer, str):
        base += float(config.points_by_layer.get(layer, 0.0))
    return base


def decayed(points: float, age_days: float, half_life_days: float) -> float:
    """``points * 0.5 ** (age / half_life)``; a negative age (the future) counts as 0."""
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
    return points * 0.5 ** (max(0.0, age_days) / half_life_days)


def age_days(then: datetime, now: datetime) -> float:
    return (now - then).total_seconds() / SECONDS_PER_DAY


def advance(
    previous_score: float,
    previous_at: datetime,
    now: datetime,
    new_points: float,
    half_life_days: float,
) -> float:
    """Decay the stored score from ``previous_at`` to ``now``, add ``new_points``, floor at 0.

    Folding ``advance`` over events in time order (points of events at the same instant summed)
    gives the same value as ``score`` over the whole history, within float rounding.
    """
    return max(
        0.0, decayed(previous_score, age_days(previous_at, now), half_life_days) + new_points
    )


def score(
    events: Iterable[EventFact], now: datetime, config: ScoringConfig = DEFAULT_SCORING
) -> float:
    """The running score at ``now`` (see the module docstring for the model)."""
    by_instant: dict[datetime, float] = {}
    for event in events:
        at = min(event.occurred_at, now)
        by_instant[at] = by_instant.get(at, 0.0) + event_points(event, config)
    value = 0.0
    previous_at: datetime | None = None
    for at in sorted(by_instant):
        if previous_at is None:
            value = max(0.0, by_instant[at])
        else:
            value = advance(value, previous_at, at, by_instant[at], config.half_life_days)
        previous_at = at
    if previous_at is None:
        return 0.0
    return decayed(value, age_days(previous_at, now), config.half_life_days)


def account_score(
    member_scores: Iterable[float], account_events_score: float, member_ratio: float = 0.5
) -> float:
    """Roll members' scores up to their company account.

    ``account_events_score + sum(member_i * member_ratio ** i)`` over member scores sorted from
    highest to lowest (negatives count as 0): the most engaged member counts in full and each
    further member adds a geometrically smaller share. Why not the alternatives:

    - a plain sum grows with head count: a big customer with many passive followers would outrank
      a small one whose whole buying committee is active;
    - a mean punishes an account for every passive member a salesperson adds;
    - diminishing weights still reward breadth (a second and third engaged person, typically other
      buying roles, raise the score), are order-independent and monotone (adding a member never
      lowers the score), and stay bounded by ``account + max_member / (1 - member_ratio)``.

    Account-level business facts (orders, contracts, scored separately) count in full.
    """
    if not 0 <= member_ratio < 1:
        raise ValueError(f"member_ratio must be in [0, 1), got {member_ratio!r}")
    ranked = sorted((max(0.0, float(s)) for s in member_scores), reverse=True)
    rolled = sum(s * member_ratio**i for i, s in enumerate(ranked))
    return max(0.0, float(account_events_score)) + rolled
