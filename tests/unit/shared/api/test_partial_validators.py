"""Every marshmallow schema of services/ and shared/, loaded partially (as a PATCH is), answers
a ValidationError or data, never another exception: its validators must not assume a field that
may be left out (issue 13, item 2: ``data["msgtype"]`` made a PATCH a 500).

Schemas that build domain objects (a post_load hook, in them or
nested) are loaded whole instead. Bodies are
built from each schema's own fields: nothing, each field alone with values of several
shapes, and each nested schema with each of its fields alone, so a new schema is covered by
being defined.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from marshmallow import Schema, ValidationError, fields

import services
import shared

VALUES = (None, "", "x", 0, 1.5, True, {}, [], [{}], ["x"], {"x": "y"})


def _modules() -> Iterator[object]:
    for package in (services, shared):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".fake_wechat" in info.name or info.name.endswith("__main__"):
                continue
            yield importlib.import_module(info.name)


def _schemas() -> list[type[Schema]]:
    found = {}
    for module in _modules():
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Schema)
                    and value.__module__.startswith(("services.", "shared."))):  # fmt: skip
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def _nested(field: fields.Field) -> Schema | None:
    inner = field.inner if isinstance(field, fields.List) else field
    return inner.schema if isinstance(inner, fields.Nested) else None


def _bodies(schema: Schema, depth: int = 0) -> Iterator[dict]:
    yield {}
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        key = field.data_key or name
        for value in VALUES:
            yield {key: value}
        nested = _nested(field) if depth < 3 else None
        if nested is not None:
            many = isinstance(field, fields.List) or field.many
            for body in _bodies(nested, depth + 1):
                yield {key: [body] if many else body}


def _builds(schema: Schema, depth: int = 0) -> bool:
    """Whether it or a schema nested in it has a post_load hook."""
    if schema._hooks.get("post_load"):
        return True
    nested = (_nested(f) for f in schema.fields.values()) if depth < 5 else ()
    return any(n is not None and _builds(n, depth + 1) for n in nested)


def _instance(cls: type[Schema]) -> Schema:
    """Partial, unless the schema builds a domain object (a post_load hook: a Tenant, a
    LifecycleModel), which only a whole document can be; those load whole, still never crashing
    on a body of the wrong shape."""
    if _builds(cls()):
        return cls()
    try:
        return cls(partial=True)
    except TypeError:  # a PATCH schema sets partial itself
        return cls()


SCHEMAS = _schemas()


def test_the_audit_sees_the_schemas_it_is_about():
    names = {cls.__name__ for cls in SCHEMAS}
    assert {"OaMassPayloadSchema", "CampaignPatchSchema", "ContentPatchSchema"} <= names
    assert len(SCHEMAS) > 60


@pytest.mark.parametrize("cls", SCHEMAS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_partial_loading_never_raises_anything_but_a_validation_error(cls):
    schema = _instance(cls)
    for body in _bodies(schema):
        try:
            schema.load(body)
        except ValidationError:
            pass
        except Exception as exc:
            pytest.fail(f"{cls.__qualname__}.load({body!r}, partial): {exc!r}")
