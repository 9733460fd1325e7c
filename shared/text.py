"""Text that PostgreSQL can store: it refuses U+0000 in text and in jsonb."""

from __future__ import annotations

from typing import Any


def contains_nul(value: Any) -> bool:
    """Whether a JSON-like value holds U+0000 in any string, key or nested item."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


def json_depth(value: Any) -> int:
    """How deep a JSON-like value nests (a scalar 0, ``[]`` 1, ``[[1]]`` 2), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest
