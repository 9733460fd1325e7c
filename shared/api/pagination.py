"""Keyset pagination: ``?limit=`` (1..200, default 50) and an opaque ``?cursor=``.

A cursor is the sort key of the last item returned, as base64url JSON. It is not signed: it only
ever becomes bound SQL parameters after the route's own tenant filter, so a forged cursor can move
within what the caller may see and no further. Responses are
``{"items": [...], "next_cursor": "..." | null}``; ``paged(ItemSchema)`` declares that in OpenAPI.

    rows = conn.execute("... WHERE (%(after)s::bigint IS NULL OR id < %(after)s)
                         ORDER BY id DESC LIMIT %(n)s", {"after": after, "n": limit + 1})
    return page(rows.fetchall(), limit, key=lambda r: r["id"])
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from shared.api.errors import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageArgs(Schema):
    """Query arguments of a paged list; subclass it to add filters."""

    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"Items per page, 1..{MAX_LIMIT}"},
    )
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(max=1000),
        metadata={"description": "next_cursor of the previous page"},
    )


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str | None) -> Any:
    """The sort key inside a cursor (None for no cursor); 400 ``invalid_cursor`` if mangled."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid(
            "cursor is not valid; start again without it", code="invalid_cursor"
        ) from None


def cursor_key(cursor: str | None, *types: type) -> tuple | None:
    """Decode a cursor holding a list of ``len(types)`` values of those types (or raise 400)."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    if not isinstance(key, list) or len(key) != len(types):
        raise invalid("cursor is not valid; start again without it", code="invalid_cursor")
    for value, kind in zip(key, types, strict=True):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise invalid("cursor is not valid; start again without it", code="invalid_cursor")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:  # beyond bigint
            raise invalid("cursor is not valid; start again without it", code="invalid_cursor")
    return tuple(key)


def page(rows: Sequence, limit: int, key: Callable[[Any], Any]) -> dict:
    """Build a page from up to ``limit + 1`` rows (the extra one says whether more follow)."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if more else None}


_PAGED: dict[type, type[Schema]] = {}


def paged(item_schema: type[Schema]) -> type[Schema]:
    """The response schema of a page of ``item_schema`` (one class per item schema, named
    ``<Item>Page`` in the OpenAPI document)."""
    if item_schema not in _PAGED:
        base = item_schema.__name__.removesuffix("Schema")
        _PAGED[item_schema] = Schema.from_dict(
            {
                "items": fields.List(fields.Nested(item_schema), required=True),
                "next_cursor": fields.String(
                    required=True,
                    allow_none=True,
                    metadata={"description": "Pass as ?cursor= for the next page; null at the end"},
                ),
            },
            name=f"{base}PageSchema",
        )
    return _PAGED[item_schema]
