"""Lifecycle models (AARRR, AISCEAS, custom): stage rules as data, evaluated as pure functions.

A model is a YAML/JSON document validated with marshmallow (``load_model``); the built-in packs
live in ``rules/aarrr.yaml`` and ``rules/aisceas.yaml`` with one variant per tenant mode
(``builtin_models``). No I/O besides reading those packs, and no clock reads: ``now`` is always an
argument, so every rule can be tested with tables of cases.

Semantics
---------
- **Forward on evidence**: the target is the highest funnel stage whose ``when`` holds; the contact
  moves only if it is above its current stage. A contact with no stage (or a stage the model does
  not know) enters the highest stage whose condition holds, so stages are skipped when later
  evidence exists (an order without prior clicks goes straight to action/revenue).
- **Never backwards** except by a ``regress`` rule whose ``from`` names the current stage. Regress
  rules are checked, in document order, only when no forward move applies.
- **Side stages** (e.g. ``lapsed``) are off the funnel: they are entered and left only by regress
  rules; forward evidence does not pull a contact out of a side stage.
- ``evaluate`` returns one move. Conditions such as ``stage_at_least`` depend on the current
  stage, so a second move may follow once the first is applied; ``settle`` applies moves until
  none is left.
- Events later than ``now`` are ignored (replays evaluate history as of ``now``); windows are
  inclusive: an event exactly ``within_days`` old counts.

Condition grammar: see ``_KINDS`` and the schemas below; every condition is a mapping with exactly
one kind key (``all``, ``any``, ``not``, ``event``, ``attribute``, ``tag``, ``score``, ``account``,
``days_since_last_event``, ``stage_at_least``; inside ``account:`` also ``roles_engaged``) plus its
options. Validation errors name the path of the bad field, e.g. ``stages[2].when.any[0].event``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from services.segment.facts import AccountFacts, ContactFacts, EventFact
from services.segment.rule_limits import RuleTooLarge, check_model, check_rule
from shared.envelope import EVENT_TYPES
from shared.errors import SiyuError

RULES_DIR = Path(__file__).with_name("rules")
MODES = ("b2b", "b2c")
BUILTIN_MODELS = ("aarrr", "aisceas")

_NAME_RE = r"^[a-z][a-z0-9_]{0,39}$"
MAX_WINDOW_DAYS = 36_500  # event windows (within_days, older_than_days): a century
_DAY = timedelta(days=1)


class ModelError(SiyuError):
    """An invalid lifecycle model; ``details`` holds marshmallow's messages, ``paths`` flat ones."""

    code = "invalid_model"

    @property
    def paths(self) -> dict[str, list[str]]:
        """``{"stages[2].when.any[0].event": ["Unknown event type 'oa.foo'."], ...}``"""
        return error_paths(self.details)


def error_paths(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten marshmallow's nested messages into ``{"a[0].b": [...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for p, msgs in error_paths(value, path).items():
                out.setdefault(p, []).extend(msgs)
    elif isinstance(messages, list | tuple):
        for item in messages:
            if isinstance(item, Mapping):
                for p, msgs in error_paths(item, prefix).items():
                    out.setdefault(p, []).extend(msgs)
            else:
                out.setdefault(prefix, []).append(str(item))
    else:
        out.setdefault(prefix, []).append(str(messages))
    return out


@dataclass(frozen=True)
class Transition:
    from_stage: str | None
    to_stage: str
    cause: str  # which rule held, human readable


# --------------------------------------------------------------------------------------------
# Compiled conditions


@dataclass(frozen=True)
class _Ctx:
    subject: ContactFacts | AccountFacts
    now: datetime
    model: LifecycleModel | None

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


def _is_number(value: Any) -> bool:
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

    def holds(
        self, facts: ContactFacts, now: datetime, model: LifecycleModel | None = None
    ) -> bool:
        return self.explain(facts, now, model) is not None

    def explain(
        self, facts: ContactFacts, now: datetime, model: LifecycleModel | None = None
    ) -> str | None:
        """Why the condition holds (human readable), or None when it does not."""
        _require_aware(now)
        return self._check(_Ctx(facts, now, model))

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, ctx: _Ctx) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """(relative path, stage name) of every ``stage_at_least`` inside."""
        return iter(())


@dataclass(frozen=True)
class AllCondition(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return "(" + " and ".join(c.describe() for c in self.conditions) + ")"

    def _check(self, ctx: _Ctx) -> str | None:
        reasons = []
        for c in self.conditions:
            why = c._check(ctx)
            if why is None:
                return None
            reasons.append(why)
        return " and ".join(reasons)

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for i, c in enumerate(self.conditions):
            for path, stage in c.stage_refs():
                yield ("all", i, *path), stage


@dataclass(frozen=True)
class AnyCondition(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return "(" + " or ".join(c.describe() for c in self.conditions) + ")"

    def _check(self, ctx: _Ctx) -> str | None:
        for c in self.conditions:
            why = c._check(ctx)
            if why is not None:
                return why
        return None

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for i, c in enumerate(self.conditions):
            for path, stage in c.stage_refs():
                yield ("any", i, *path), stage


@dataclass(frozen=True)
class NotCondition(Condition):
    condition: Condition

    def describe(self) -> str:
        return f"not {self.condition.describe()}"

    def _check(self, ctx: _Ctx) -> str | None:
        return None if self.condition._check(ctx) is not None else self.describe()

    def stage_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for path, stage in self.condition.stage_refs():
            yield ("not", *path), stage


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

    def _check(self, ctx: _Ctx) -> str | None:
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
                if _is_number(value):
                    total += value
        if count < self.min:
            return None
        if self.sum is not None:
            if self.gte is None or total < self.gte:
                return None
            return f"{self._label(count)} with {self.sum} sum {_fmt(total)} >= {_fmt(self.gte)}"
        return self._label(count)


_MISSING = object()


@dataclass(frozen=True)
class AttributeCondition(Condition):
    """Reads ``attributes[name]``; on a contact ``role`` reads ContactFacts.role first."""

    name: str
    equals: Any = _MISSING
    in_: tuple[Any, ...] | None = None
    exists: bool | None = None
    gte: float | None = None
    lte: float | None = None

    def _value(self, ctx: _Ctx) -> Any:
        subject = ctx.subject
        if self.name == "role" and isinstance(subject, ContactFacts) and subject.role is not None:
            return subject.role
        return subject.attributes.get(self.name, _MISSING)

    def describe(self) -> str:
        if self.equals is not _MISSING:
            return f"attribute {self.name} = {_fmt(self.equals)}"
        if self.in_ is not None:
            return f"attribute {self.name} in [{', '.join(_fmt(v) for v in self.in_)}]"
        if self.exists is not None:
            return f"attribute {self.name} {'exists' if self.exists else 'is missing'}"
        return f"attribute {self.name} {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: _Ctx) -> str | None:
        value = self._value(ctx)
        if self.exists is not None:
            present = value is not _MISSING and value is not None
            return self.describe() if present == self.exists else None
        if value is _MISSING:
            return None
        if self.equals is not _MISSING:
            ok = _same(value, self.equals)
        elif self.in_ is not None:
            ok = any(_same(value, v) for v in self.in_)
        else:
            ok = _is_number(value) and _in_range(value, self.gte, self.lte)
            if ok:
                return f"attribute {self.name} = {_fmt(value)} ({_range_text(self.gte, self.lte)})"
        return self.describe() if ok else None


@dataclass(frozen=True)
class TagCondition(Condition):
    tag: str

    def describe(self) -> str:
        return f"tag {self.tag}"

    def _check(self, ctx: _Ctx) -> str | None:
        tags = getattr(ctx.subject, "tags", frozenset())
        return self.describe() if self.tag in tags else None


@dataclass(frozen=True)
class ScoreCondition(Condition):
    gte: float | None = None
    lte: float | None = None

    def describe(self) -> str:
        return f"score {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: _Ctx) -> str | None:
        score = ctx.subject.score
        if not _in_range(score, self.gte, self.lte):
            return None
        return f"score {_fmt(score)} ({_range_text(self.gte, self.lte)})"


@dataclass(frozen=True)
class AccountCondition(Condition):
    """Evaluated against the contact's account; false when the contact has none."""

    condition: Condition

    def describe(self) -> str:
        return f"account {self.condition.describe()}"

    def _check(self, ctx: _Ctx) -> str | None:
        account = getattr(ctx.subject, "account", None)
        if account is None:
            return None
        why = self.condition._check(_Ctx(account, ctx.now, ctx.model))
        return None if why is None else f"account {why}"

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

    def _check(self, ctx: _Ctx) -> str | None:
        roles = getattr(ctx.subject, "roles_engaged", frozenset())
        if self.gte is not None and len(roles) < self.gte:
            return None
        if not set(self.includes) <= roles:
            return None
        return f"{self.describe()} ({', '.join(sorted(roles))})"


@dataclass(frozen=True)
class DaysSinceLastEventCondition(Condition):
    """Days since the last event (of ``types``); with none, since ``created_at`` (None: false)."""

    gte: float | None = None
    lte: float | None = None
    types: tuple[str, ...] = ()

    def describe(self) -> str:
        of = f" ({'/'.join(self.types)})" if self.types else ""
        return f"days since last event{of} {_range_text(self.gte, self.lte)}"

    def _check(self, ctx: _Ctx) -> str | None:
        matches = _type_matcher(self.types) if self.types else None
        last = None
        for e in ctx.events():
            if (matches is None or matches(e.type)) and (last is None or e.occurred_at > last):
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


@dataclass(frozen=True)
class StageAtLeastCondition(Condition):
    """The subject's current stage is this funnel stage or a later one (side stages: false)."""

    stage: str

    def describe(self) -> str:
        return f"stage at least {self.stage}"

    def _check(self, ctx: _Ctx) -> str | None:
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


# --------------------------------------------------------------------------------------------
# Schemas


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _Number(fields.Field):
    """A JSON/YAML number (no strings, no booleans, finite), optionally an integer."""

    def __init__(self, *, integer: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.integer = integer

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if self.integer:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationError("Not a valid integer.")
            return value
        if not _is_number(value) or not math.isfinite(value):
            raise ValidationError("Not a valid number.")
        return value


class _Bool(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean (true or false).")
        return value


def _check_event_type(name: Any) -> str | None:
    """An error message for a bad event type name, or None."""
    if not isinstance(name, str):
        return "Not a valid event type name."
    if name.endswith(".*"):
        prefix = name[:-1]
        if len(prefix) > 1 and any(t.startswith(prefix) for t in EVENT_TYPES):
            return None
        return f"Wildcard {name!r} matches no event type."
    if name in EVENT_TYPES:
        return None
    return f"Unknown event type {name!r}."


class _EventTypes(fields.Field):
    """One event type or a list of them (``biz.*`` wildcards allowed) -> tuple."""

    def __init__(self, *, single: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.single = single

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and self.single:
            error = _check_event_type(value)
            if error:
                raise ValidationError(error)
            return (value,)
        if not isinstance(value, list) or not value:
            raise ValidationError(
                "Not an event type or a non-empty list of event types."
                if self.single
                else "Not a non-empty list of event types."
            )
        errors = {i: [e] for i, t in enumerate(value) if (e := _check_event_type(t))}
        if errors:
            raise ValidationError(errors)
        return tuple(dict.fromkeys(value))


class _RangeMixin:
    @validates_schema
    def _one_bound(self, data: dict, **kwargs: Any) -> None:
        if "gte" not in data and "lte" not in data:
            raise ValidationError("Give gte and/or lte.")


class _RangeSchema(_RangeMixin, _Strict):
    gte = _Number()
    lte = _Number()


class _DaysRangeSchema(_RangeMixin, _Strict):
    gte = _Number(validate=validate.Range(min=0))
    lte = _Number(validate=validate.Range(min=0))
    types = _EventTypes(single=False)


class _RolesSchema(_Strict):
    gte = _Number(integer=True, validate=validate.Range(min=0))
    includes = fields.List(
        fields.String(validate=validate.Length(min=1)), validate=validate.Length(min=1)
    )

    @validates_schema
    def _one(self, data: dict, **kwargs: Any) -> None:
        if "gte" not in data and "includes" not in data:
            raise ValidationError("Give gte and/or includes.")


class ConditionField(fields.Field):
    """A condition mapping; dispatches on its one kind key to that kind's schema."""

    def __init__(self, scope: str = "contact", **kwargs: Any):
        super().__init__(**kwargs)
        self.scope = scope

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Condition:
        kinds = _KINDS[self.scope]
        if not isinstance(value, Mapping) or not value:
            raise ValidationError(f"A condition is a mapping with one of: {', '.join(kinds)}.")
        present = [k for k in value if k in kinds]
        if not present:
            errors: dict[str, list[str]] = {}
            for key in value:
                if key in _KINDS["contact"] or key in _KINDS["account"]:
                    where = "inside" if self.scope == "contact" else "outside"
                    errors[str(key)] = [f"{key!s} is only valid {where} an account condition."]
                else:
                    errors[str(key)] = [
                        f"Unknown condition kind; expected one of: {', '.join(kinds)}."
                    ]
            raise ValidationError(errors)
        if len(present) > 1:
            raise ValidationError(
                f"A condition has exactly one kind key; found {', '.join(map(str, present))}."
            )
        return _SCHEMAS[self.scope][present[0]].load(value)


def _build_schemas(scope: str) -> dict[str, Schema]:
    class AllSchema(_Strict):
        all = fields.List(ConditionField(scope), required=True, validate=validate.Length(min=1))

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return AllCondition(tuple(data["all"]))

    class AnySchema(_Strict):
        any = fields.List(ConditionField(scope), required=True, validate=validate.Length(min=1))

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return AnyCondition(tuple(data["any"]))

    class NotSchema(_Strict):
        not_ = ConditionField(scope, data_key="not", required=True)

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return NotCondition(data["not_"])

    class EventSchema(_Strict):
        event = _EventTypes(required=True)
        min = _Number(integer=True, validate=validate.Range(min=1))
        # Bounded: a window reaching before year 1 raised OverflowError for every contact.
        within_days = _Number(
            validate=validate.Range(min=0, min_inclusive=False, max=MAX_WINDOW_DAYS)
        )
        older_than_days = _Number(validate=validate.Range(min=0, max=MAX_WINDOW_DAYS))
        where = fields.Dict(keys=fields.String(), validate=validate.Length(min=1))
        sum = fields.String(validate=validate.Length(min=1))
        gte = _Number()

        @validates_schema(skip_on_field_errors=True)
        def _consistent(self, data: dict, **kwargs: Any) -> None:
            if "sum" in data and "gte" not in data:
                raise ValidationError("sum needs gte (the threshold).", "gte")
            if "gte" in data and "sum" not in data:
                raise ValidationError("gte needs sum (the attribute to add up).", "sum")
            within, older = data.get("within_days"), data.get("older_than_days")
            if within is not None and older is not None and older >= within:
                raise ValidationError("Must be less than within_days.", "older_than_days")

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return EventCondition(
                types=data["event"],
                min=data.get("min", 1),
                within_days=data.get("within_days"),
                older_than_days=data.get("older_than_days"),
                where=tuple(sorted(data.get("where", {}).items())),
                sum=data.get("sum"),
                gte=data.get("gte"),
            )

    class AttributeSchema(_Strict):
        attribute = fields.String(required=True, validate=validate.Length(min=1))
        equals = fields.Raw(allow_none=True)
        in_ = fields.List(
            fields.Raw(allow_none=True), data_key="in", validate=validate.Length(min=1)
        )
        exists = _Bool()
        gte = _Number()
        lte = _Number()

        @validates_schema(skip_on_field_errors=True)
        def _one_operator(self, data: dict, **kwargs: Any) -> None:
            ops = [k for k in ("equals", "in_", "exists") if k in data]
            ranged = "gte" in data or "lte" in data
            if len(ops) + ranged != 1:
                raise ValidationError(
                    "Give exactly one of equals, in, exists, or gte/lte.", "attribute"
                )

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return AttributeCondition(
                name=data["attribute"],
                equals=data.get("equals", _MISSING),
                in_=tuple(data["in_"]) if "in_" in data else None,
                exists=data.get("exists"),
                gte=data.get("gte"),
                lte=data.get("lte"),
            )

    class ScoreSchema(_Strict):
        score = fields.Nested(_RangeSchema, required=True)

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return ScoreCondition(gte=data["score"].get("gte"), lte=data["score"].get("lte"))

    class DaysSchema(_Strict):
        days_since_last_event = fields.Nested(_DaysRangeSchema, required=True)
        types = _EventTypes(single=False)

        @validates_schema(skip_on_field_errors=True)
        def _types_once(self, data: dict, **kwargs: Any) -> None:
            if "types" in data and "types" in data["days_since_last_event"]:
                raise ValidationError("Give types once (here or inside).", "types")

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            inner = data["days_since_last_event"]
            return DaysSinceLastEventCondition(
                gte=inner.get("gte"),
                lte=inner.get("lte"),
                types=data.get("types") or inner.get("types") or (),
            )

    class StageAtLeastSchema(_Strict):
        stage_at_least = fields.String(required=True, validate=validate.Regexp(_NAME_RE))

        @post_load
        def _make(self, data: dict, **kwargs: Any) -> Condition:
            return StageAtLeastCondition(data["stage_at_least"])

    schemas: dict[str, Schema] = {
        "all": AllSchema(),
        "any": AnySchema(),
        "not": NotSchema(),
        "event": EventSchema(),
        "attribute": AttributeSchema(),
        "score": ScoreSchema(),
        "days_since_last_event": DaysSchema(),
        "stage_at_least": StageAtLeastSchema(),
    }
    if scope == "contact":

        class TagSchema(_Strict):
            tag = fields.String(required=True, validate=validate.Length(min=1))

            @post_load
            def _make(self, data: dict, **kwargs: Any) -> Condition:
                return TagCondition(data["tag"])

        class AccountSchema(_Strict):
            account = ConditionField("account", required=True)

            @post_load
            def _make(self, data: dict, **kwargs: Any) -> Condition:
                return AccountCondition(data["account"])

        schemas["tag"] = TagSchema()
        schemas["account"] = AccountSchema()
    else:

        class RolesEngagedSchema(_Strict):
            roles_engaged = fields.Nested(_RolesSchema, required=True)

            @post_load
            def _make(self, data: dict, **kwargs: Any) -> Condition:
                inner = data["roles_engaged"]
                return RolesEngagedCondition(
                    gte=inner.get("gte"), includes=tuple(inner.get("includes", ()))
                )

        schemas["roles_engaged"] = RolesEngagedSchema()
    return schemas


_COMMON_KINDS = ("all", "any", "not", "event", "attribute", "score", "days_since_last_event")
_KINDS = {
    "contact": (*_COMMON_KINDS, "tag", "account", "stage_at_least"),
    "account": (*_COMMON_KINDS, "roles_engaged", "stage_at_least"),
}
_SCHEMAS = {scope: _build_schemas(scope) for scope in _KINDS}


class _StageSchema(_Strict):
    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME_RE, error="Not a valid stage name (a-z, 0-9, _)."),
    )
    title = fields.String(validate=validate.Length(1, 80))
    when = ConditionField("contact", required=True)


class _SideStageSchema(_Strict):
    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME_RE, error="Not a valid stage name (a-z, 0-9, _)."),
    )
    title = fields.String(validate=validate.Length(1, 80))


class _RegressSchema(_Strict):
    from_ = fields.List(
        fields.String(), data_key="from", required=True, validate=validate.Length(min=1)
    )
    to = fields.String(required=True)
    when = ConditionField("contact", required=True)


def _nest(path: tuple[str | int, ...], message: str) -> dict:
    node: Any = [message]
    for key in reversed(path):
        node = {key: node}
    return node


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key].extend(value)
        else:
            into[key] = value


class _ModelSchema(_Strict):
    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME_RE, error="Not a valid model name (a-z, 0-9, _)."),
    )
    title = fields.String(validate=validate.Length(1, 80))
    description = fields.String()
    stages = fields.List(
        fields.Nested(_StageSchema),
        required=True,
        validate=validate.Length(min=1, error="A model needs at least one funnel stage."),
    )
    side_stages = fields.List(fields.Nested(_SideStageSchema))
    regress = fields.List(fields.Nested(_RegressSchema))

    @validates_schema(skip_on_field_errors=True)
    def _consistent(self, data: dict, **kwargs: Any) -> None:
        errors: dict = {}
        funnel: list[str] = []
        known: set[str] = set()
        for group in ("stages", "side_stages"):
            for i, stage in enumerate(data.get(group, ())):
                if stage["name"] in known:
                    _merge(
                        errors,
                        _nest((group, i, "name"), f"Stage {stage['name']!r} is defined twice."),
                    )
                known.add(stage["name"])
                if group == "stages":
                    funnel.append(stage["name"])
        side = known - set(funnel)
        for i, stage in enumerate(data["stages"]):
            for path, ref in stage["when"].stage_refs():
                if ref not in funnel:
                    what = "a side stage" if ref in side else "an unknown stage"
                    msg = f"{ref!r} is {what}; stage_at_least names a funnel stage."
                    _merge(errors, _nest(("stages", i, "when", *path), msg))
        for i, rule in enumerate(data.get("regress", ())):
            for j, name in enumerate(rule["from_"]):
                if name not in known:
                    _merge(errors, _nest(("regress", i, "from", j), f"Unknown stage {name!r}."))
            if rule["to"] not in known:
                _merge(errors, _nest(("regress", i, "to"), f"Unknown stage {rule['to']!r}."))
            for path, ref in rule["when"].stage_refs():
                if ref not in funnel:
                    msg = f"{ref!r} is not a funnel stage."
                    _merge(errors, _nest(("regress", i, "when", *path), msg))
        if errors:
            raise ValidationError(errors)

    @post_load
    def _make(self, data: dict, **kwargs: Any) -> LifecycleModel:
        return LifecycleModel(
            name=data["name"],
            title=data.get("title", data["name"]),
            stages=tuple(
                Stage(s["name"], s["when"], s.get("title", s["name"].title()))
                for s in data["stages"]
            ),
            side_stages=tuple(s["name"] for s in data.get("side_stages", ())),
            regress=tuple(
                RegressRule(tuple(r["from_"]), r["to"], r["when"]) for r in data.get("regress", ())
            ),
            description=data.get("description", ""),
        )


_MODEL_SCHEMA = _ModelSchema()


# --------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class Stage:
    name: str
    when: Condition
    title: str = ""


@dataclass(frozen=True)
class RegressRule:
    from_stages: tuple[str, ...]
    to_stage: str
    when: Condition


@dataclass(frozen=True)
class LifecycleModel:
    name: str
    title: str
    stages: tuple[Stage, ...]
    side_stages: tuple[str, ...] = ()
    regress: tuple[RegressRule, ...] = ()
    description: str = ""
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_positions", {s.name: i for i, s in enumerate(self.stages)})

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def position(self, stage: str | None) -> int | None:
        """Funnel index of a stage; None for side stages, unknown names and None."""
        return self._positions.get(stage) if stage is not None else None

    def _highest(
        self, facts: ContactFacts, now: datetime, above: int | None
    ) -> tuple[int, str] | None:
        """(index, reason) of the highest funnel stage above ``above`` whose condition holds."""
        ctx = _Ctx(facts, now, self)
        lowest = -1 if above is None else above
        for i in range(len(self.stages) - 1, lowest, -1):
            why = self.stages[i].when._check(ctx)
            if why is not None:
                return i, why
        return None

    def _regress(self, facts: ContactFacts, now: datetime) -> Transition | None:
        current = facts.stage
        ctx = _Ctx(facts, now, self)
        for rule in self.regress:
            if current in rule.from_stages and rule.to_stage != current:
                why = rule.when._check(ctx)
                if why is not None:
                    return Transition(
                        current, rule.to_stage, f"regress {current} -> {rule.to_stage}: {why}"
                    )
        return None

    def evaluate(self, facts: ContactFacts, now: datetime) -> Transition | None:
        """The one move to make now, or None. Never reads the clock."""
        _require_aware(now)
        current = facts.stage
        if current not in self.side_stages:
            hit = self._highest(facts, now, self.position(current))
            if hit is not None:
                stage = self.stages[hit[0]].name
                return Transition(current, stage, f"stage {stage}: {hit[1]}")
        return self._regress(facts, now)

    def settle(self, facts: ContactFacts, now: datetime) -> list[Transition]:
        """Apply ``evaluate`` until no move is left (stops before revisiting a stage)."""
        moves: list[Transition] = []
        seen = {facts.stage}
        while (move := self.evaluate(facts, now)) is not None and move.to_stage not in seen:
            moves.append(move)
            seen.add(move.to_stage)
            facts = replace(facts, stage=move.to_stage)
        return moves


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _parse(data: dict | str) -> Any:
    if isinstance(data, str):
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise ModelError(
                f"lifecycle model is not valid YAML: {exc}", details={"_yaml": [str(exc)]}
            ) from None
    return data


def _invalid(what: str, messages: Any) -> ModelError:
    paths = error_paths(messages)
    listed = "; ".join(f"{p or '(root)'}: {' '.join(m)}" for p, m in sorted(paths.items()))
    details = messages if isinstance(messages, dict) else {"_schema": messages}
    return ModelError(f"invalid {what}: {listed}", details=details)


def _within_limits(check, doc: Any) -> None:
    """Depth and size limits (services/segment/rule_limits.py), checked before the recursive
    schema reads the document: past them it is refused, never evaluated."""
    try:
        check(doc)
    except RuleTooLarge as exc:
        raise ModelError(exc.message, details={exc.path or "_schema": [exc.message]}) from None


def load_model(data: dict | str) -> LifecycleModel:
    """Validate a model document (a dict, or YAML/JSON text); raise ModelError with field paths."""
    doc = _parse(data)
    if not isinstance(doc, Mapping):
        raise ModelError("a lifecycle model is a mapping", details={"_schema": ["Not a mapping."]})
    _within_limits(check_model, doc)
    try:
        return _MODEL_SCHEMA.load(doc)
    except ValidationError as exc:
        raise _invalid("lifecycle model", exc.messages) from None


def load_condition(data: dict | str, *, scope: str = "contact") -> Condition:
    """Validate one condition (a dict or YAML text), for rules outside a model (e.g. segments).

    ``stage_at_least`` is not checked against a model here; pass the model when evaluating it.
    """
    doc = _parse(data)
    _within_limits(check_rule, doc)
    try:
        return ConditionField(scope).deserialize(doc)
    except ValidationError as exc:
        raise _invalid("condition", exc.messages) from None


@cache
def _builtin(name: str, mode: str) -> LifecycleModel:
    doc = yaml.safe_load((RULES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    try:
        return load_model(doc[mode])
    except ModelError as exc:
        raise ModelError(
            f"built-in pack {name}.yaml ({mode}): {exc.message}", details=exc.details
        ) from None


def builtin_models(mode: str) -> dict[str, LifecycleModel]:
    """The built-in models for a tenant mode ("b2b" | "b2c"): {"aarrr": ..., "aisceas": ...}."""
    if mode not in MODES:
        raise ValueError(f"unknown tenant mode {mode!r}; expected one of {', '.join(MODES)}")
    return {name: _builtin(name, mode) for name in BUILTIN_MODELS}


def _account_as_contact(account: AccountFacts) -> ContactFacts:
    """The account seen through the contact grammar: its events, attributes, score and stage."""
    return ContactFacts(
        contact_id=f"account:{account.account_id}",
        tenant_mode="b2b",
        stage=account.stage,
        score=account.score,
        attributes=account.attributes,
        events=account.events,
        account=account,
        created_at=account.created_at,
    )


def evaluate_account(
    model: LifecycleModel,
    account: AccountFacts,
    member_stages: Iterable[str | None],
    now: datetime,
) -> Transition | None:
    """The B2B account's move: up to the highest stage reached by a member or by its own facts.

    The account's business facts are evaluated with the model's stage conditions, the account
    standing in for a contact (its events, attributes, score, stage; ``account:`` conditions see
    it too), so an order paid on the account means at least the stage whose rule names orders.
    Forward only; an account in a side stage leaves it only by the model's regress rules.
    """
    _require_aware(now)
    pseudo = _account_as_contact(account)
    current = account.stage
    if current in model.side_stages:
        return model._regress(pseudo, now)
    above = model.position(current)
    stages = list(member_stages)
    reached = [p for s in stages if (p := model.position(s)) is not None]
    best_member = max(reached, default=None)
    # Only stages above the current one matter, and the account's facts win a tie with members
    # (they explain more than "a member is there"): check the facts from that floor upwards.
    floor = max(0 if above is None else above + 1, 0 if best_member is None else best_member)
    hit = model._highest(pseudo, now, floor - 1)
    if hit is not None:
        index, cause = hit[0], f"account facts: stage {model.stages[hit[0]].name}: {hit[1]}"
    elif best_member is not None and (above is None or best_member > above):
        name = model.stages[best_member].name
        count = sum(1 for p in reached if p == best_member)
        index, cause = best_member, f"members reached {name} ({count} of {len(stages)} members)"
    else:
        return None
    return Transition(current, model.stages[index].name, cause)
