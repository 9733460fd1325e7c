"""The lifecycle grammar: YAML/JSON documents of models and conditions, validated with marshmallow.

``load_model`` and ``load_condition`` turn a document into compiled objects (``model.py``,
``conditions.py``) or raise ``ModelError`` with the path of each bad field, e.g.
``stages[2].when.any[0].event``. The built-in packs live in ``rules/aarrr.yaml`` and
``rules/aisceas.yaml`` with one variant per tenant mode (``builtin_models``).

Stages (funnel and side) may declare ``flags``, what the stage means to others, from
``shared.vocabulary.STAGE_FLAGS``: ``evaluating`` (the buyer is still comparing: B2B promotions
never reach it) and ``lapsed`` (side stages only: customers gone quiet).

Condition grammar: see ``_KINDS`` and the schemas below; every condition is a mapping with exactly
one kind key (``all``, ``any``, ``not``, ``event``, ``attribute``, ``tag``, ``score``, ``account``,
``days_since_last_event``, ``stage_at_least``; inside ``account:`` also ``roles_engaged``) plus its
options. Validation errors name the path of the bad field, e.g. ``stages[2].when.any[0].event``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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

from services.segment.lifecycle.conditions import (
    MISSING,
    AccountCondition,
    AllCondition,
    AnyCondition,
    AttributeCondition,
    Condition,
    DaysSinceLastEventCondition,
    EventCondition,
    NotCondition,
    RolesEngagedCondition,
    ScoreCondition,
    StageAtLeastCondition,
    TagCondition,
    is_number,
)
from services.segment.lifecycle.model import LifecycleModel, RegressRule, Stage
from services.segment.rule_limits import RuleTooLarge, check_model, check_rule
from shared.envelope import EVENT_TYPES
from shared.errors import SiyuError
from shared.vocabulary import BUILTIN_MODELS, MODES, STAGE_FLAGS

RULES_DIR = Path(__file__).parent.parent / "rules"

_NAME_RE = r"^[a-z][a-z0-9_]{0,39}$"
MAX_WINDOW_DAYS = 36_500  # event windows (within_days, older_than_days): a century


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
        if not is_number(value) or not math.isfinite(value):
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
    # Only the customer's own actions (docs/domain.md "Activity"): a join a staff member made
    # is of type wecom.chat.member_joined too, yet not the customer acting.
    activity = fields.Boolean()


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
                equals=data.get("equals", MISSING),
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
                activity=inner.get("activity", False),
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


def _flags() -> fields.List:
    """A stage's flags: known names (the message lists the valid ones), each once."""
    return fields.List(
        fields.String(
            validate=validate.OneOf(
                STAGE_FLAGS, error="Unknown stage flag {input!r}. Valid: {choices}."
            )
        )
    )


class _FlagsOnce:
    @validates_schema(skip_on_field_errors=True)
    def _flags_once(self, data: dict, **kwargs: Any) -> None:
        flags = data.get("flags", ())
        for i, flag in enumerate(flags):
            if flag in flags[:i]:
                raise ValidationError({i: [f"Flag {flag!r} is given twice."]}, "flags")


class _StageSchema(_FlagsOnce, _Strict):
    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME_RE, error="Not a valid stage name (a-z, 0-9, _)."),
    )
    title = fields.String(validate=validate.Length(1, 80))
    when = ConditionField("contact", required=True)
    flags = _flags()

    @validates_schema(skip_on_field_errors=True)
    def _lapsed_is_a_side_stage(self, data: dict, **kwargs: Any) -> None:
        for i, flag in enumerate(data.get("flags", ())):
            if flag == "lapsed":
                msg = "'lapsed' marks a side stage (side_stages), not a funnel stage."
                raise ValidationError({i: [msg]}, "flags")


class _SideStageSchema(_FlagsOnce, _Strict):
    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME_RE, error="Not a valid stage name (a-z, 0-9, _)."),
    )
    title = fields.String(validate=validate.Length(1, 80))
    flags = _flags()


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
            stage_flags=tuple(
                (s["name"], tuple(s["flags"]))
                for group in ("stages", "side_stages")
                for s in data.get(group, ())
                if s.get("flags")
            ),
        )


_MODEL_SCHEMA = _ModelSchema()


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
