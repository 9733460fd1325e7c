"""B2B account health: risk flags with human reasons (docs/domain.md, "Account health").

``risk_flags(account, member_events, now, thresholds)`` reads the account's own business facts
(``account.events``: orders, invoices, payments) and its members' touchpoints (``member_events``).
Both lists are read together; events stamped after ``now`` (clock skew) count as happening at
``now``, as in scoring.

Flags, most severe first (``SEVERITY``); several can hold at once (a new account can already be a
payment risk):

- ``payment_risk``: open overdue invoices (a ``biz.invoice.overdue`` not followed by a
  ``biz.payment.received`` with the same ``attributes.invoice_id``; an overdue event without an
  invoice id stays open), when their count, total amount and age all reach the thresholds; or slow
  payment (invoices paid on average more than ``slow_payment_days`` after ``biz.invoice.issued``);
  or a low credit rating (``account.attributes["credit_rating"]``). Any payment closes an invoice
  (partial payments are not tracked here).
- ``churn_risk``: interactions in the last ``churn_window_days`` fell below ``churn_drop_ratio``
  of the monthly average of the ``churn_baseline_days`` before (judged only when that average is
  at least ``churn_min_baseline``); or engaged members left (``oa.unsubscribe``,
  ``wecom.contact.follow_user_deleted``) within ``churn_signal_days``: a member is engaged if the
  exit carries no ``attributes.contact_id`` or that contact interacted in the
  ``engaged_lookback_days`` before leaving; or a complaint was filed within ``churn_signal_days``.
- ``lost``: members whose WeCom relation ended and was not re-added (services/segment/lost.py,
  docs/domain.md "Lost customers"), each with its reason, staff member and time; computed by
  ``lost_flag`` from the members' losses (the caller knows which events are whose).
- ``inactive``: no action of the members' own (``facts.is_activity``: not a staff edit, a send
  result or an enrichment fetch; docs/domain.md "Activity") for ``inactive_days`` (an account
  that never acted counts from its creation or first event).
- ``new``: created (or, without ``created_at``, first seen) less than ``new_days`` ago: the golden
  maintenance period.
- ``growing``: paid order amounts in the last ``growing_window_days`` reached ``growing_ratio``
  times those of the window before (which must exceed ``growing_min_previous``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, validate
from marshmallow import fields as mfields

from services.segment.facts import AccountFacts, EventFact, amount_of, is_activity, last_activity
from services.segment.scoring import RuleConfigError, check_positive, validate_config

SEVERITY = ("payment_risk", "churn_risk", "lost", "inactive", "new", "growing")

# Engagement: the customer actions (docs/domain.md "Activity") that count as the account (or one
# of its members) taking part; leaving, complaining and paying invoices are activity, not this.
INTERACTION_TYPES = frozenset(
    {
        "oa.subscribe",
        "oa.scan",
        "oa.click",
        "oa.view",
        "oa.message",
        "wecom.contact.added",
        "wecom.chat.member_joined",
        "link.clicked",
        "biz.registered",
        "biz.demo.requested",
        "biz.trial.started",
        "biz.contract.signed",
        "biz.order.paid",
        "biz.webinar.registered",
        "biz.webinar.attended",
        "biz.event.attended",
        "biz.content.downloaded",
    }
)
EXIT_TYPES = {
    "oa.unsubscribe": "unfollowed the OA",
    "wecom.contact.follow_user_deleted": "deleted their staff contact",
}
ORDER = "biz.order.paid"
OVERDUE = "biz.invoice.overdue"
ISSUED = "biz.invoice.issued"
PAYMENT = "biz.payment.received"
COMPLAINT = "biz.complaint.filed"
DEFAULT_CURRENCY = "CNY"


@dataclass(frozen=True)
class RiskFlag:
    flag: str  # one of SEVERITY
    reason: str  # for people, with the numbers
    since: datetime | None = None  # when the condition began, when known
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


class _RiskSchema(Schema):
    class Meta:
        unknown = RAISE

    new_days = mfields.Float(validate=validate.Range(min=0))
    inactive_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    churn_window_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    churn_baseline_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    churn_drop_ratio = mfields.Float(validate=validate.Range(min=0, max=1))
    churn_min_baseline = mfields.Float(validate=validate.Range(min=0))
    churn_signal_days = mfields.Float(validate=validate.Range(min=0))
    engaged_lookback_days = mfields.Float(validate=validate.Range(min=0))
    overdue_min_count = mfields.Integer(strict=True, validate=validate.Range(min=1))
    overdue_min_amount = mfields.Float(validate=validate.Range(min=0))
    overdue_min_days = mfields.Float(validate=validate.Range(min=0))
    slow_payment_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    slow_payment_min_invoices = mfields.Integer(strict=True, validate=validate.Range(min=1))
    payment_lookback_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    low_credit_ratings = mfields.List(mfields.String(validate=validate.Length(min=1)))
    growing_ratio = mfields.Float(validate=validate.Range(min=1, min_inclusive=False))
    growing_window_days = mfields.Float(validate=validate.Range(min=0, min_inclusive=False))
    growing_min_previous = mfields.Float(validate=validate.Range(min=0))


@dataclass(frozen=True)
class RiskThresholds:
    new_days: float = 30.0
    inactive_days: float = 45.0
    churn_window_days: float = 30.0
    churn_baseline_days: float = 60.0
    churn_drop_ratio: float = 0.5
    churn_min_baseline: float = 4.0  # monthly interactions below this are too few to judge
    churn_signal_days: float = 30.0
    engaged_lookback_days: float = 90.0
    overdue_min_count: int = 1
    overdue_min_amount: float = 0.0
    overdue_min_days: float = 0.0
    slow_payment_days: float = 60.0
    slow_payment_min_invoices: int = 2
    payment_lookback_days: float = 365.0
    low_credit_ratings: tuple[str, ...] = ("c", "d", "e", "low", "poor", "差", "低")
    growing_ratio: float = 1.5
    growing_window_days: float = 90.0
    growing_min_previous: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "low_credit_ratings", tuple(r.casefold() for r in self.low_credit_ratings)
        )
        check_positive(
            self,
            "inactive_days",
            "churn_window_days",
            "churn_baseline_days",
            "slow_payment_days",
            "payment_lookback_days",
            "growing_window_days",
            "overdue_min_count",
            "slow_payment_min_invoices",
        )
        check_positive(
            self,
            "new_days",
            "churn_drop_ratio",
            "churn_min_baseline",
            "churn_signal_days",
            "engaged_lookback_days",
            "overdue_min_amount",
            "overdue_min_days",
            "growing_min_previous",
            allow_zero=True,
        )
        if self.churn_drop_ratio > 1:
            raise RuleConfigError("RiskThresholds.churn_drop_ratio: must be at most 1")
        if self.growing_ratio <= 1:
            raise RuleConfigError("RiskThresholds.growing_ratio: must be greater than 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskThresholds:
        loaded = validate_config(cls.__name__, _RiskSchema(), data)
        if "low_credit_ratings" in loaded:
            loaded["low_credit_ratings"] = tuple(loaded["low_credit_ratings"])
        return cls(**loaded)


DEFAULT_THRESHOLDS = RiskThresholds()


# --- helpers ------------------------------------------------------------------------------------


def horizon_days(t: RiskThresholds = DEFAULT_THRESHOLDS) -> frozenset[float]:
    """Ages (of an event, a creation, an overdue invoice) at which a flag can change with time
    alone: the windows and limits of the rules below (docs/architecture.md "Time-driven
    evaluation")."""
    return frozenset(
        {
            t.inactive_days,
            t.new_days,
            t.churn_window_days,
            t.churn_window_days + t.churn_baseline_days,
            t.churn_signal_days,
            float(math.ceil(t.overdue_min_days)),  # compared in whole days
            t.payment_lookback_days,
            t.growing_window_days,
            2 * t.growing_window_days,
        }
    )


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400.0


def _money(amount: float) -> str:
    return f"{amount:,.0f}" if amount == round(amount) else f"{amount:,.2f}"


def _money_by_currency(totals: Mapping[str, float]) -> str:
    return " + ".join(f"{_money(totals[c])} {c}" for c in sorted(totals)) or f"0 {DEFAULT_CURRENCY}"


def _currency(attributes: Mapping[str, Any]) -> str:
    value = attributes.get("currency")
    return value.upper() if isinstance(value, str) and value else DEFAULT_CURRENCY


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


# --- the rules ----------------------------------------------------------------------------------


def _payment(
    account: AccountFacts, events: list[EventFact], now: datetime, t: RiskThresholds
) -> RiskFlag | None:
    reasons: list[str] = []
    details: dict[str, Any] = {}
    since: datetime | None = None

    # Open overdue invoices: walk each invoice's overdue/payment events in time order.
    open_since: dict[str, datetime] = {}
    amounts: dict[str, tuple[float, str]] = {}
    issued: dict[str, tuple[float, str]] = {}
    for index, event in enumerate(events):
        invoice = event.attributes.get("invoice_id")
        if event.type == ISSUED and invoice is not None:
            issued.setdefault(
                str(invoice), (amount_of(event.attributes), _currency(event.attributes))
            )
        if event.type == OVERDUE:
            key = str(invoice) if invoice is not None else f"#unidentified-{index}"
            open_since.setdefault(key, event.occurred_at)
            if amount_of(event.attributes) or key not in amounts:
                amounts[key] = (amount_of(event.attributes), _currency(event.attributes))
        elif event.type == PAYMENT and invoice is not None:
            open_since.pop(str(invoice), None)
    if open_since:
        totals: dict[str, float] = {}
        for key in open_since:
            amount, currency = amounts[key]
            if not amount and key in issued:
                amount, currency = issued[key]
            totals[currency] = totals.get(currency, 0.0) + amount
        oldest = min(open_since.values())
        oldest_days = int(_days(now - oldest))
        count = len(open_since)
        total = sum(totals.values())
        if (
            count >= t.overdue_min_count
            and total >= t.overdue_min_amount
            and oldest_days >= t.overdue_min_days
        ):
            reasons.append(
                f"{_plural(count, 'invoice')} overdue, {_money_by_currency(totals)}, "
                f"oldest {_plural(oldest_days, 'day')}"
            )
            details.update(
                overdue_count=count,
                overdue_amount=total,
                overdue_by_currency=dict(totals),
                oldest_overdue_days=oldest_days,
            )
            since = oldest

    # Slow payment: days from issue to the first later payment, for invoices paid recently.
    issued_at: dict[str, datetime] = {}
    delays: list[float] = []
    for event in events:
        invoice = event.attributes.get("invoice_id")
        if invoice is None:
            continue
        key = str(invoice)
        if event.type == ISSUED:
            issued_at.setdefault(key, event.occurred_at)
        elif event.type == PAYMENT and key in issued_at:
            if _days(now - event.occurred_at) <= t.payment_lookback_days:
                delays.append(_days(event.occurred_at - issued_at[key]))
            del issued_at[key]
    if len(delays) >= t.slow_payment_min_invoices:
        mean = sum(delays) / len(delays)
        if mean > t.slow_payment_days:
            reasons.append(
                f"slow payment: {_plural(len(delays), 'invoice')} paid {mean:.0f} days after "
                f"issue on average (limit {t.slow_payment_days:g})"
            )
            details.update(paid_invoices=len(delays), mean_days_to_pay=mean)

    rating = account.attributes.get("credit_rating")
    if isinstance(rating, str) and rating.strip().casefold() in t.low_credit_ratings:
        reasons.append(f"low credit rating: {rating.strip()}")
        details["credit_rating"] = rating.strip()

    if not reasons:
        return None
    return RiskFlag("payment_risk", "; ".join(reasons), since, details)


def _churn(events: list[EventFact], now: datetime, t: RiskThresholds) -> RiskFlag | None:
    reasons: list[str] = []
    details: dict[str, Any] = {}
    starts: list[datetime] = []
    interactions = [e for e in events if e.type in INTERACTION_TYPES and is_activity(e)]

    window_start = now - timedelta(days=t.churn_window_days)
    baseline_start = window_start - timedelta(days=t.churn_baseline_days)
    recent = sum(1 for e in interactions if e.occurred_at > window_start)
    baseline = sum(1 for e in interactions if baseline_start < e.occurred_at <= window_start)
    monthly = baseline * t.churn_window_days / t.churn_baseline_days
    if monthly >= t.churn_min_baseline and monthly > 0 and recent < t.churn_drop_ratio * monthly:
        drop = 1 - recent / monthly
        reasons.append(
            f"interactions fell to {recent} in the last {t.churn_window_days:g} days from an "
            f"average of {monthly:.1f} per {t.churn_window_days:g} days over the "
            f"{t.churn_baseline_days:g} days before (-{drop:.0%})"
        )
        details.update(recent_interactions=recent, baseline_average=monthly, drop=drop)
        starts.append(window_start)

    signal_start = now - timedelta(days=t.churn_signal_days)
    lookback = timedelta(days=t.engaged_lookback_days)
    exits: dict[str, int] = {}
    for event in events:
        if event.type not in EXIT_TYPES or event.occurred_at < signal_start:
            continue
        contact = event.attributes.get("contact_id")
        if contact is not None and not any(
            e.attributes.get("contact_id") == contact
            and event.occurred_at - lookback <= e.occurred_at <= event.occurred_at
            for e in interactions
        ):
            continue  # a member who never engaged leaving is no signal
        exits[event.type] = exits.get(event.type, 0) + 1
        starts.append(event.occurred_at)
    if exits:
        parts = ", ".join(f"{exits[k]} {EXIT_TYPES[k]}" for k in EXIT_TYPES if k in exits)
        total = sum(exits.values())
        reasons.append(
            f"{_plural(total, 'engaged member')} left in the last "
            f"{t.churn_signal_days:g} days ({parts})"
        )
        details["member_exits"] = total

    complaints = [e for e in events if e.type == COMPLAINT and e.occurred_at >= signal_start]
    if complaints:
        reasons.append(
            f"{_plural(len(complaints), 'complaint')} in the last {t.churn_signal_days:g} days"
        )
        details["complaints"] = len(complaints)
        starts.extend(e.occurred_at for e in complaints)

    if not reasons:
        return None
    return RiskFlag("churn_risk", "; ".join(reasons), min(starts), details)


def _orders_total(orders: list[EventFact], start: datetime, end: datetime) -> float:
    return sum(amount_of(e.attributes) for e in orders if start < e.occurred_at <= end)


def _growing(events: list[EventFact], now: datetime, t: RiskThresholds) -> RiskFlag | None:
    orders = [e for e in events if e.type == ORDER]
    window = timedelta(days=t.growing_window_days)
    recent = _orders_total(orders, now - window, now)
    previous = _orders_total(orders, now - 2 * window, now - window)
    if previous <= t.growing_min_previous or previous <= 0 or recent < t.growing_ratio * previous:
        return None
    currencies = {_currency(e.attributes) for e in orders if e.occurred_at > now - 2 * window}
    unit = currencies.pop() if len(currencies) == 1 else "(mixed currencies)"
    ratio = recent / previous
    return RiskFlag(
        "growing",
        f"orders {_money(recent)} {unit} in the last {t.growing_window_days:g} days vs "
        f"{_money(previous)} {unit} in the {t.growing_window_days:g} days before (x{ratio:.2f})",
        now - window,
        {"recent_amount": recent, "previous_amount": previous, "ratio": ratio},
    )


LOST_REASONS = {
    "customer_deleted_staff": "deleted their staff contact",
    "staff_deleted_customer": "deleted by staff",
}


def lost_flag(members: list[dict[str, Any]]) -> RiskFlag | None:
    """The ``lost`` flag from ``lost.members_lost`` (newest first): counts by reason, since the
    first loss; the members in ``details``."""
    if not members:
        return None
    counts: dict[str, int] = {}
    for m in members:
        counts[m["reason"]] = counts.get(m["reason"], 0) + 1
    parts = ", ".join(f"{counts[r]} {LOST_REASONS[r]}" for r in LOST_REASONS if r in counts)
    return RiskFlag(
        "lost",
        f"{_plural(len(members), 'member')} lost ({parts})",
        datetime.fromisoformat(min(m["at"] for m in members)),
        {"members": members},
    )


def risk_flags(
    account: AccountFacts,
    member_events: Iterable[EventFact],
    now: datetime,
    thresholds: RiskThresholds = DEFAULT_THRESHOLDS,
    lost: RiskFlag | None = None,
) -> list[RiskFlag]:
    """The account's risk flags at ``now``, most severe first (see ``SEVERITY``); ``lost`` is
    the flag ``lost_flag`` made, if any."""
    t = thresholds
    events = sorted(
        (
            e if e.occurred_at <= now else replace(e, occurred_at=now)
            for e in (*account.events, *member_events)
        ),
        key=lambda e: e.occurred_at,
    )
    flags: list[RiskFlag] = [lost] if lost else []

    payment = _payment(account, events, now, t)
    if payment:
        flags.append(payment)
    churn = _churn(events, now, t)
    if churn:
        flags.append(churn)

    # Reference start: creation, else the first event seen.
    created = account.created_at if account.created_at and account.created_at <= now else None
    first_seen = created or (events[0].occurred_at if events else None)
    last_active = last_activity(events)
    reference = last_active or first_seen
    if reference is not None:
        idle = _days(now - reference)
        if idle >= t.inactive_days:
            what = (
                f"no interactions or orders for {int(idle)} days"
                if last_active
                else f"no interactions or orders since first seen {int(idle)} days ago"
            )
            flags.append(
                RiskFlag(
                    "inactive",
                    f"{what} (limit {t.inactive_days:g})",
                    reference,
                    {"idle_days": int(idle)},
                )
            )

    if first_seen is not None:
        age = _days(now - first_seen)
        if age < t.new_days:
            how = "created" if created else "first seen"
            flags.append(
                RiskFlag(
                    "new",
                    f"account {how} {_plural(int(age), 'day')} ago: golden maintenance period "
                    f"(first {t.new_days:g} days)",
                    first_seen,
                    {"age_days": int(age)},
                )
            )

    growing = _growing(events, now, t)
    if growing:
        flags.append(growing)

    order = {flag: i for i, flag in enumerate(SEVERITY)}
    return sorted(flags, key=lambda f: order[f.flag])
