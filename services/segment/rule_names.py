"""The names inside a segment rule, checked against the tenant's model and data.

The grammar (services/segment/lifecycle/grammar.py) accepts any string where a name goes, so a rule
that says ``{"stage_at_least": "examinaton"}`` or ``{"attribute": "rol", ...}`` was stored and
matched nobody. Checked here, on the rule as the caller wrote it (paths as in its errors,
``rule.all[1].attribute``): funnel stages for ``stage_at_least``; stage values of the
``stage``/``account_stage`` attributes; buying roles (``role`` values, ``roles_engaged``);
``behaviour:``/``risk:`` tags; and attribute names against what the tenant's contacts (or, inside
``account:``, accounts) carry plus the derived ones (stage, role, behaviour features).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from shared.api.names import Unknown, check, check_one
from shared.vocabulary import BEHAVIOURS, BUYING_ROLES, RISK_FLAGS

# What segment_facts exposes besides the stored attributes and behaviour features.
DERIVED_ATTRIBUTES = ("stage", "account_stage", "account_id", "role")


@dataclass(frozen=True)
class RuleNames:
    funnel: tuple[str, ...]  # the model's funnel stages
    stages: tuple[str, ...]  # funnel and side stages
    contact_attributes: tuple[str, ...]
    account_attributes: tuple[str, ...]


def _values(rule: dict) -> Iterator[tuple[str, object]]:
    if "equals" in rule:
        yield "equals", rule["equals"]
    for i, value in enumerate(rule.get("in") or ()):
        yield f"in[{i}]", value


def rule_unknowns(rule: object, names: RuleNames, path: str = "rule", *,
                  subject: str = "contact") -> list[Unknown]:  # fmt: skip
    """Every unknown name in ``rule`` (a rule the grammar accepted)."""
    if not isinstance(rule, dict):
        return []
    found: list[Unknown] = []
    for key in ("all", "any"):
        for i, inner in enumerate(rule.get(key) or ()):
            found += rule_unknowns(inner, names, f"{path}.{key}[{i}]", subject=subject)
    if "not" in rule:
        found += rule_unknowns(rule["not"], names, f"{path}.not", subject=subject)
    if "account" in rule:
        found += rule_unknowns(rule["account"], names, f"{path}.account", subject="account")
    if "stage_at_least" in rule:
        found += check_one(f"{path}.stage_at_least", "funnel stage", rule["stage_at_least"],
                           names.funnel)  # fmt: skip
    if "attribute" in rule:
        found += _attribute(rule, names, path, subject)
    if isinstance(rule.get("tag"), str):
        prefix, _, value = rule["tag"].partition(":")
        vocabulary = {"behaviour": BEHAVIOURS, "risk": RISK_FLAGS}.get(prefix)
        if vocabulary is not None and value not in vocabulary:
            found.append(Unknown(f"{path}.tag", f"{prefix} tag", rule["tag"],
                                 tuple(f"{prefix}:{v}" for v in vocabulary)))  # fmt: skip
    if isinstance(rule.get("roles_engaged"), dict):
        found += check(f"{path}.roles_engaged.includes", "buying role",
                       rule["roles_engaged"].get("includes") or (), BUYING_ROLES)  # fmt: skip
    return found


def _attribute(rule: dict, names: RuleNames, path: str, subject: str) -> list[Unknown]:
    name = rule["attribute"]
    if subject == "account":
        known = names.account_attributes
    else:
        known = tuple(dict.fromkeys((*DERIVED_ATTRIBUTES, *names.contact_attributes)))
    if name not in known:
        return [Unknown(f"{path}.attribute", f"{subject} attribute", name, known)]
    by_name = {"role": BUYING_ROLES, "stage": names.stages, "account_stage": names.stages}
    vocabulary = by_name.get(name) if subject == "contact" else None
    if vocabulary is None:
        return []
    kind = "buying role" if name == "role" else "stage"
    return [
        Unknown(f"{path}.{where}", kind, value, vocabulary)
        for where, value in _values(rule)
        if value is not None and value not in vocabulary
    ]
