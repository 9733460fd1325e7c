"""The facts the segment domain rules read: plain data, built by the storage layer, no I/O here.

Every pure rule (role inference, stage rules, scoring, risk flags, behaviour segments) takes these
values plus ``now`` as arguments, so the rules can be tested with tables of cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.envelope import is_customer_action


def amount_of(attributes: Mapping[str, Any]) -> float:
    """The money of an event (``attributes.amount``); 0 when absent, not a number or not finite."""
    value = attributes.get("amount")
    if isinstance(value, bool):
        return 0.0
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


@dataclass(frozen=True)
class EventFact:
    """One touchpoint as the rules see it."""

    type: str  # an envelope type, e.g. "biz.order.paid"
    occurred_at: datetime  # timezone-aware
    attributes: dict[str, Any] = field(default_factory=dict)
    # The stored event's id, when read from the store: equal times are ordered by it
    # (docs/domain.md "Event time and replay"). Not part of the fact's value.
    event_id: str | None = field(default=None, compare=False)


def is_activity(event: EventFact) -> bool:
    """The customer's own action (docs/domain.md "Activity"): what recency, inactivity and
    engagement count; a staff edit, a send result or an enrichment fetch is a fact, not activity."""
    return is_customer_action(event.type, event.attributes)


def last_activity(events: Iterable[EventFact]) -> datetime | None:
    """When the customer last acted themselves; None when they never did."""
    return max((e.occurred_at for e in events if is_activity(e)), default=None)


@dataclass(frozen=True)
class AccountFacts:
    """A B2B company account and what its members have shown."""

    account_id: str
    name: str
    stage: str | None = None  # the account's lifecycle stage
    score: float = 0.0
    roles_engaged: frozenset[str] = frozenset()  # buying roles with recent engagement
    members: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)  # industry, size, lifecycle...
    events: tuple[EventFact, ...] = ()  # business facts of the account (orders, invoices...)
    created_at: datetime | None = None


@dataclass(frozen=True)
class ContactFacts:
    """A resolved person within one tenant."""

    contact_id: str
    tenant_mode: str  # "b2b" | "b2c"
    stage: str | None = None  # current stage in the tenant's lifecycle model
    score: float = 0.0
    role: str | None = None  # buying role (B2B)
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    events: tuple[EventFact, ...] = ()  # recent history, oldest first
    account: AccountFacts | None = None
    created_at: datetime | None = None
