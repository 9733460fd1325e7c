"""Compiled lifecycle conditions: the predicates a stage, regress or segment rule is made of.

Each class is one kind of the grammar (``grammar.py`` validates a document into these); ``explain``
says why a condition holds, in words ops can read in a stage's cause. Pure: ``now`` is always an
argument and events later than it are ignored; windows are inclusive (an event exactly
``within_days`` old counts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from services.segment.facts import AccountFacts, ContactFacts, EventFact, is_activity


class Funnel(Protocol):
    """What ``stage_at_least`` needs of a model (``model.LifecycleModel``): the funnel order."""

    def position(self, stage: str | None) -> int | None: ...


_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Horizons:
    """What time alone can change in a condition (docs/architecture.md "Time-driven evaluation"):
    ``days``, the windows and limits an event's (or creation's) age is compared with; ``scores``,
    the score thresholds a decaying score may cross; ``attributes``, (name, limit) of numeric
    attribute tests, which matter when the attribute is a derived age in days (behaviour.py
    ``TIME_FEATURES``)."""

    days: frozenset[float] = frozenset()
    scores: frozenset[float] = frozenset()
    attributes: frozenset[tuple[str, float]] = frozenset()

    def __or__(self, other: Horizons) -> Horizons:
        return Horizons(
            self.days | other.days, self.scores | other.scores, self.attributes | other.attributes
        )


NO_HORIZONS = Horizons()


def _limits(*values: float | None) -> frozenset[float]:
    return frozenset(float(v) for v in values if v is not None)


def require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


@dataclass(frozen=True)
class Context:
    """What a condition is evaluated against: the subject, the time, the model (stage_at_least)."""

    subject: ContactFacts | AccountFacts
    now: datetime
    model: Funnel | None

    def events(self) -> Iterator[EventFact]:
        now = self.now
        return (e for e in self.subject.events if e.occurred_at <= now)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range_text(gte: float | None, lte: float | None) -> str:
    parts = []
    if gte is not None:
        parts.append(f">= {_fmt(gte)}")
    if lte is not None:
        parts.append(f"<= {_fmt(lte)}")
    return " and ".join(parts)


def _in_range(value: float, gte: float | None, lte: float | None) -> bool:
    return (gte is None or value >= gte) and (lte is None or value <= lte)


class Condition:
    """A validated, compiled condition (build one with ``load_condition`` or ``load_model``)."""

    def holds(self, facts: ContactFacts, now: datetime, model: Funnel | None = None) -> bool:
        return self.explain(facts, now, model) is not None

    def explain(
        self, facts: ContactFacts, now: datetime, model: Funnel | None = None
    ) -> str | None:
        """Why the condition holds (human readable), or None when it does not."""
        require_aware(now)
        return self._check(Context(facts, now, model))

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, ctx: Context) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """(relative path, stage name) of every ``stage_at_least`` inside."""
        return iter(())

    def horizons(self) -> Horizons:
        """The limits whose crossing by time alone may change whether this holds."""
        return NO_HORIZONS

    def reads_events(self) -> bool:
        """Whether the subject's touchpoints are read (a read-only count skips loading them
        when not: services/segment/preview.py)."""
        return False


@dataclass(frozen=True)
class AllCondition(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return "(" + " and ".join(c.describe() for c in self.conditions) + ")"

    def _check(self, ctx: Context) -> str | None:
        reasons = []
        for c in self.conditions:
            why = c._check(ctx)
            if why is None:
                return None
            reasons.append(why)
        return " and ".join(reasons)

    def reads_events(self) -> bool:
        return any(c.reads_events() for c in self.conditions)

    def horizons(self) -> Horizons:
        return _union(c.horizons() for c in self.conditions)

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for i, c in enumerate(self.conditions):
            for path, stage in c.stage_refs():
                yield ("all", i, *path), stage


@dataclass(frozen=True)
class AnyCondition(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return "(" + " or ".join(c.describe() for c in self.conditions) + ")"

    def _check(self, ctx: Context) -> str | None:
        for c in self.conditions:
            why = c._check(ctx)
            if why is not None:
                return why
        return None

    def reads_events(self) -> bool:
        return any(c.reads_events() for c in self.conditions)

    def horizons(self) -> Horizons:
        return _union(c.horizons() for c in self.conditions)

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for i, c in enumerate(self.conditions):
            for path, stage in c.stage_refs():
                yield ("any", i, *path), stage


@dataclass(frozen=True)
class NotCondition(Condition):
    condition: Condition

    def describe(self) -> str:
        return f"not {self.condition.describe()}"

    def _check(self, ctx: Context) -> str | None:
        return None if self.condition._check(ctx) is not None else self.describe()

    def reads_events(self) -> bool:
        return self.condition.reads_events()

    def horizons(self) -> Horizons:
        return self.condition.horizons()

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for path, stage in self.condition.stage_refs():
            yield ("not", *path), stage


@lru_cache(maxsize=1024)  # a rule's types, checked for every event of every contact
def _type_matcher(types: tuple[str, ...]):
    exact = frozenset(t for t in types if not t.endswith(".*"))
    prefixes = tuple(t[:-1] for t in types if t.endswith(".*"))
    return lambda t: t in exact or (bool(prefixes) and t.startswith(prefixes))


@dataclass(frozen=True)
class EventCondition(Condition):
    types: tuple[str, ...]  # as written; a trailing ".*" is a prefix wildcard
    min: int = 1
    within_days: float | None = None
    older_than_days: float | None = None  # only events at least this old (with within_days: a band)
    where: tuple[tuple[str, Any], ...] = ()
    sum: str | None = None
    gte: float | None = None

    def _label(self, n: Any) -> str:
        text = f"{_fmt(n)} of {'/'.join(self.types)}"
        if self.where:
            text += " where " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.where)
        if self.within_days is not None:
            text += f" within {_fmt(self.within_days)} days"
        if self.older_than_days is not None:
            text += f" older than {_fmt(self.older_than_days)} days"
        return text

    def describe(self) -> str:
        text = self._label(self.min)
        if self.sum is not None:
            text += f" with {self.sum} sum >= {_fmt(self.gte)}"
        return text

    def _check(self, ctx: Context) -> str | None:
        matches = _type_matcher(self.types)
        lower = ctx.now - self.within_days * _DAY if self.within_days is not None else None
        upper = ctx.now - self.older_than_days * _DAY if self.older_than_days is not None else None
        count, total = 0, 0.0
        for e in ctx.events():
            if not matches(e.type):
                continue
            if (lower is not None and e.occurred_at < lower) or (
                upper is not None and e.occurred_at > upper
            ):
                continue
            if any(not _same(e.attributes.get(k), v) for k, v in self.where):
                continue
            count += 1
            if self.sum is not None:
                value = e.attributes.get(self.sum)
                if is_number(value):
                    total += value
        if count < self.min:
            return None
        if self.sum is not None:
            if self.gte is None or total < self.gte:
                return None
            return f"{self._label(count)} with {self.sum} sum {_fmt(total)} >= {_fmt(self.gte)}"
        return self._label(count)

    def reads_events(self) -> bool:
        return True

    def horizons(self) -> Horizons:
        return Horizons(days=_limits(self.within_days, self.older_than_days))


def _union(parts: Iterator[Horizons]) -> Horizons:
    found = NO_HORIZONS
    for part in parts:
        found = found | part
    return found


MISSING = object()


@dataclass(frozen=True)
class AttributeCondition(Condition):
    """Reads ``attributes[name]``; on a contact ``role`` reads ContactFacts.role first."""

    name: str
    equals: Any = MISSING
    in_: tuple[Any, ...] | None = None
    exists: bool | None = None
    gte: float | None = None
    lte: float | None = None

    def _value(self, ctx: Context) -> Any:
        subject = ctx.subject
        if self.name == "role" and isinstance(subject, ContactFacts) and subject.role is not None:
            return subject.role
        return subject.attributes.get(self.name, MISSING)

    def describe(self) -> str:
        if self.equals is not MISSING:
            return f"attribute {self.name} = {_fmt(self.equals)}"
        if self.in_ is not None:
            return f"attribute {self.name} in [{', '.join(_fmt(v) for v in self.in_)}]"
        if self.exists is not None:
            return f"attribute {self.name} {'exists' if self.exists else 'is missing'}"
        return f"attribute {self.name} {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: Context) -> str | None:
        value = self._value(ctx)
        if self.exists is not None:
            present = value is not MISSING and value is not None
            return self.describe() if present == self.exists else None
        if value is MISSING:
            return None
        if self.equals is not MISSING:
            ok = _same(value, self.equals)
        elif self.in_ is not None:
            ok = any(_same(value, v) for v in self.in_)
        else:
            ok = is_number(value) and _in_range(value, self.gte, self.lte)
            if ok:
                return f"attribute {self.name} = {_fmt(value)} ({_range_text(self.gte, self.lte)})"
        return self.describe() if ok else None

    def horizons(self) -> Horizons:
        return Horizons(attributes=frozenset((self.name, v) for v in _limits(self.gte, self.lte)))


@dataclass(frozen=True)
class TagCondition(Condition):
    tag: str

    def describe(self) -> str:
        return f"tag {self.tag}"

    def _check(self, ctx: Context) -> str | None:
        tags = getattr(ctx.subject, "tags", frozenset())
        return self.describe() if self.tag in tags else None


@dataclass(frozen=True)
class ScoreCondition(Condition):
    gte: float | None = None
    lte: float | None = None

    def describe(self) -> str:
        return f"score {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: Context) -> str | None:
        score = ctx.subject.score
        if not _in_range(score, self.gte, self.lte):
            return None
        return f"score {_fmt(score)} ({_range_text(self.gte, self.lte)})"

    def horizons(self) -> Horizons:
        return Horizons(scores=_limits(self.gte, self.lte))


@dataclass(frozen=True)
class AccountCondition(Condition):
    """Evaluated against the contact's account; false when the contact has none."""

    condition: Condition

    def describe(self) -> str:
        return f"account {self.condition.describe()}"

    def _check(self, ctx: Context) -> str | None:
        account = getattr(ctx.subject, "account", None)
        if account is None:
            return None
        why = self.condition._check(Context(account, ctx.now, ctx.model))
        return None if why is None else f"account {why}"

    def reads_events(self) -> bool:
        return self.condition.reads_events()

    def horizons(self) -> Horizons:
        return self.condition.horizons()

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for path, stage in self.condition.stage_refs():
            yield ("account", *path), stage


@dataclass(frozen=True)
class RolesEngagedCondition(Condition):
    gte: int | None = None
    includes: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.gte is not None:
            parts.append(f"roles engaged >= {self.gte}")
        if self.includes:
            parts.append(f"roles engaged include {'/'.join(self.includes)}")
        return " and ".join(parts)

    def _check(self, ctx: Context) -> str | None:
        roles = getattr(ctx.subject, "roles_engaged", frozenset())
        if self.gte is not None and len(roles) < self.gte:
            return None
        if not set(self.includes) <= roles:
            return None
        return f"{self.describe()} ({', '.join(sorted(roles))})"


@dataclass(frozen=True)
class DaysSinceLastEventCondition(Condition):
    """Days since the last event (of ``types``; with ``activity``, the customer's own actions
    only); with none, since ``created_at`` (None: false)."""

    gte: float | None = None
    lte: float | None = None
    types: tuple[str, ...] = ()
    activity: bool = False

    def describe(self) -> str:
        of = f" ({'/'.join(self.types)})" if self.types else ""
        own = " by the customer" if self.activity else ""
        return f"days since last event{of}{own} {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: Context) -> str | None:
        matches = _type_matcher(self.types) if self.types else None
        last = None
        for e in ctx.events():
            if matches is not None and not matches(e.type):
                continue
            if self.activity and not is_activity(e):
                continue
            if last is None or e.occurred_at > last:
                last = e.occurred_at
        since = "last event"
        if last is None:
            last, since = ctx.subject.created_at, "creation"
            if last is None:
                return None
        days = (ctx.now - last) / _DAY
        if not _in_range(days, self.gte, self.lte):
            return None
        shown = _fmt(math.floor(days * 10) / 10)
        return f"{shown} days since {since} ({_range_text(self.gte, self.lte)})"

    def reads_events(self) -> bool:
        return True

    def horizons(self) -> Horizons:
        return Horizons(days=_limits(self.gte, self.lte))


@dataclass(frozen=True)
class StageAtLeastCondition(Condition):
    """The subject's current stage is this funnel stage or a later one (side stages: false)."""

    stage: str

    def describe(self) -> str:
        return f"stage at least {self.stage}"

    def _check(self, ctx: Context) -> str | None:
        model = ctx.model
        if model is None:
            raise ValueError("stage_at_least needs the lifecycle model to be evaluated")
        current = model.position(ctx.subject.stage) if ctx.subject.stage else None
        wanted = model.position(self.stage)
        if current is None or wanted is None or current < wanted:
            return None
        return f"stage {ctx.subject.stage} >= {self.stage}"

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        yield ("stage_at_least",), self.stage
