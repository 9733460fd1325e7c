"""Custom resources checked against the operators' own CRDs (deploy/k8s/crds/), offline.

A cluster's API server accepts a custom resource when its CRD *serves* the resource's apiVersion,
and validates it against that version's ``openAPIV3Schema``. kubectl asks for strict field
validation by default, so a field the schema does not declare is an error, not silently pruned.
This module does the same with a well-kept OpenAPI 3.0 validator (``openapi-schema-validator``,
which knows ``nullable``); what it adds is the Kubernetes structural-schema rules the validator
cannot know:

- an object schema with ``properties`` and no ``additionalProperties`` refuses other fields,
  unless it says ``x-kubernetes-preserve-unknown-fields``;
- ``x-kubernetes-int-or-string`` accepts an integer or a string;
- ``x-kubernetes-list-type: set`` / ``map`` lists hold unique items / unique keys.

Not evaluated: ``x-kubernetes-validations`` (CEL rules, e.g. Gateway API's cross-field checks);
they need the API server. Besides validity, fields whose description says "Deprecated" are
reported (the Go-doc "Deprecated:" paragraph the generated CRDs carry), so that the manifests
use none.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "crds"


@dataclass(frozen=True)
class Version:
    served: bool
    schema: dict[str, Any]  # as published
    strict: dict[str, Any]  # the same with the structural-schema rules spelled out


class NotServed(Exception):
    """The CRD exists but does not serve this apiVersion (or no CRD defines the kind)."""


@cache
def definitions() -> dict[tuple[str, str], dict[str, Version]]:
    """(group, kind) -> version name -> Version, from every CRD file."""
    found: dict[tuple[str, str], dict[str, Version]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            versions = {
                v["name"]: Version(
                    v["served"],
                    v["schema"]["openAPIV3Schema"],
                    _structural(copy.deepcopy(v["schema"]["openAPIV3Schema"])),
                )
                for v in spec["versions"]
            }
            found[(spec["group"], spec["names"]["kind"])] = versions
    return found


def is_custom(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return any(g == group for g, _ in definitions())


def served_version(obj: dict[str, Any]) -> Version:
    group, _, version = obj["apiVersion"].rpartition("/")
    versions = definitions().get((group, obj["kind"]))
    if versions is None:
        raise NotServed(f"no CRD in {CRDS.name}/ defines {obj['kind']} in group {group!r}")
    served = sorted(name for name, v in versions.items() if v.served)
    if version not in served:
        raise NotServed(
            f"{obj['kind']} {obj['apiVersion']} is not served by its CRD; "
            f"served versions: {', '.join(f'{group}/{s}' for s in served)}"
        )
    return versions[version]


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem with a custom resource, as ``path: message``; empty when it would apply."""
    try:
        version = served_version(obj)
    except NotServed as e:
        return [str(e)]
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in OAS30Validator(version.strict).iter_errors(obj)
    ]
    errors += _list_types(version.schema, obj, "")
    return sorted(errors)


def deprecated_fields(obj: dict[str, Any]) -> list[str]:
    """Paths of fields the resource sets whose schema description says they are deprecated."""
    try:
        version = served_version(obj)
    except NotServed:
        return []
    return sorted(_deprecated(version.schema, obj, ""))


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    if preserve and "additionalProperties" not in node:
        out["additionalProperties"] = True
    return out


def _list_types(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            sub = props.get(key) or (
                schema["additionalProperties"]
                if isinstance(schema.get("additionalProperties"), dict)
                else None
            )
            if sub is not None:
                problems += _list_types(sub, item, f"{where}.{key}".lstrip("."))
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        if kind == "set" and len({yaml.safe_dump(v) for v in value}) != len(value):
            problems.append(f"{where}: items of a list of type set must be unique")
        if kind == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            if len(set(seen)) != len(seen):
                problems.append(f"{where}: duplicate {'/'.join(keys)} in a list of type map")
        for i, item in enumerate(value):
            problems += _list_types(schema.get("items", {}), item, f"{where}.{i}")
    return problems


def _is_deprecated(schema: dict[str, Any], value: Any) -> bool:
    # Go-doc convention of the generated CRDs ("Deprecated: ..." paragraph), or Strimzi's way of
    # marking one value of an enum ("`ingress` (deprecated) type ...").
    text = schema.get("description", "")
    if any(line.strip().startswith("Deprecated:") for line in text.splitlines()):
        return True
    return isinstance(value, str) and f"`{value}` (deprecated)" in text


def _deprecated(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    found = [where] if where and _is_deprecated(schema, value) else []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key)
            if sub is not None:
                found += _deprecated(sub, item, f"{where}.{key}".lstrip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _deprecated(schema.get("items", {}), item, f"{where}.{i}")
    return found
