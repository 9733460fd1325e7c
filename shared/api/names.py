"""Unknown names in a request: a stage, role, attribute, flag or item the tenant does not have.

A misspelled name used to be stored and then match nothing ("attension" previewed 0 recipients
and launched); now every name is checked against what the tenant has, and the answer is a 400
(``invalid_request``; ``invalid_segment`` for a segment rule, like its other errors) naming each
bad field, its value and the values it could have been:

    {"audience.stages[0]": ["Unknown stage 'attension'. Valid: attention, ... Did you mean
                             'attention'?"],
     "valid": {"audience.stages[0]": ["attention", "interest", ...]}}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from shared.api.errors import ApiError, invalid


@dataclass(frozen=True)
class Unknown:
    field: str  # the request path, e.g. "audience.stages[0]", "rule.all[1].attribute"
    kind: str  # what the name should be: "stage", "role", "attribute"...
    value: object
    valid: tuple[str, ...]
    # Why the name cannot be checked at all (the names are not known yet): said instead of
    # "unknown", which would be a guess.
    unchecked: str | None = None

    def message(self) -> str:
        if self.unchecked is not None:
            return f"Cannot check {self.kind} {self.value!r}: {self.unchecked}"
        text = f"Unknown {self.kind} {self.value!r}."
        if len(self.valid) <= 20:
            text += f" Valid: {', '.join(self.valid) or '(none)'}."
        close = difflib.get_close_matches(str(self.value).lower(), self.valid, n=1, cutoff=0.6)
        return f"{text} Did you mean {close[0]!r}?" if close else text


def check(field: str, kind: str, values: Iterable[object], valid: Iterable[str]) -> list[Unknown]:
    """The values of a list field (``field[i]``) that are not in ``valid``."""
    allowed = tuple(valid)
    return [
        Unknown(f"{field}[{i}]", kind, v, allowed) for i, v in enumerate(values) if v not in allowed
    ]


def check_one(field: str, kind: str, value: object, valid: Iterable[str]) -> list[Unknown]:
    allowed = tuple(valid)
    return [] if value is None or value in allowed else [Unknown(field, kind, value, allowed)]


def unknown_names(found: list[Unknown], code: str = "invalid_request") -> ApiError | None:
    """The 400 for ``found``, or None when every name is known."""
    if not found:
        return None
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    details: dict = {u.field: [u.message()] for u in found}
    details["valid"] = {u.field: list(u.valid) for u in found}
    return invalid(f"{first.field}: {first.message()}{more}", details, code=code)
