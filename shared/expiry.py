"""Token lifetimes as people type them: ``30d``, ``12h``, ``90m``, ``2w`` or an ISO date/time.

Used by ``--expires`` of ``siyu token create`` and ``siyu ingest token create`` (docs/security.md
"Tokens"). A date or time without a zone is UTC; the result must lie in the future.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.errors import SiyuError

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"^(\d{1,6})([mhdw])$")
MAX_LIFETIME = timedelta(days=3660)  # ten years: anything longer is a typo, or no expiry at all


class BadExpiry(SiyuError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_expires")


def parse_expires(value: str, *, now: datetime | None = None) -> datetime:
    """The moment ``value`` names, timezone-aware; BadExpiry saying what is accepted."""
    now = now or datetime.now(UTC)
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        try:
            at = now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:  # 999999w: past the year 9999, certainly more than ten years
            raise BadExpiry(f"--expires {value!r}: at most ten years ahead") from None
    else:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise BadExpiry(
                f"--expires {value!r}: expected a duration such as 30d, 12h, 90m or 2w, "
                "or an ISO date/time such as 2027-01-31 or 2027-01-31T18:00+08:00"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return check_expiry(at, now=now, what=f"--expires {value!r}")


def check_expiry(at: datetime, *, now: datetime | None = None, what: str = "expires_at"):
    """``at`` (timezone-aware) is in the future and within ten years, or BadExpiry."""
    now = now or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at <= now:
        raise BadExpiry(f"{what}: {at.isoformat()} is not in the future")
    if at - now > MAX_LIFETIME:
        raise BadExpiry(f"{what}: at most ten years ahead")
    return at


def expires_at_field():
    """The ``expires_at`` of a token-creating request body: optional, in the future."""
    from marshmallow import ValidationError, fields

    def future(value: datetime) -> None:
        try:
            check_expiry(value)
        except BadExpiry as exc:
            raise ValidationError(exc.message) from None

    return fields.DateTime(
        load_default=None,
        allow_none=True,
        validate=future,
        metadata={
            "description": "When the token stops working (401 token_expired); ISO 8601 (no "
            "zone: UTC), in the future, at most ten years ahead. Omitted or null: never"
        },
    )
