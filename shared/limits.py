"""Per-tenant request rates (docs/security.md "Rate limits"): what a tenant may send to the
business events API, its tracked links and the admin API.

A tenant's ``limits:`` in the tenants file overrides any of the deployment's defaults, which come
from the environment (``SIYU_LIMIT_EVENTS_PER_S`` ...). The buckets themselves are
shared/ratelimit.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, post_load, validate, validates_schema
from marshmallow import fields as mf

from shared.errors import ConfigError

SURFACES = ("events", "links", "api")
UNITS = {"events": "events", "links": "clicks", "api": "requests"}
# The largest batch of POST /api/v1/events (services/ingest/events.py MAX_BATCH): events are
# counted one by one, so a smaller burst would refuse such a batch forever.
MIN_EVENTS_BURST = 500
MAX_PER_S = 1_000_000.0


@dataclass(frozen=True)
class Rate:
    """``per_s`` a second on average, up to ``burst`` at once after a quiet spell."""

    per_s: float
    burst: int

    def describe(self, unit: str) -> str:
        return f"{self.per_s:g} {unit}/s, bursts of {self.burst}"


@dataclass(frozen=True)
class Limits:
    """A tenant's overrides (None: the deployment default), or the deployment defaults."""

    events_per_s: float | None = None
    events_burst: int | None = None
    links_per_s: float | None = None
    links_burst: int | None = None
    api_per_s: float | None = None
    api_burst: int | None = None

    def over(self, defaults: Limits) -> Limits:
        """These limits with every unset one taken from ``defaults``."""
        return replace(
            defaults,
            **{f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None},
        )

    def rate(self, surface: str) -> Rate:
        per_s, burst = getattr(self, f"{surface}_per_s"), getattr(self, f"{surface}_burst")
        if per_s is None or burst is None:
            raise ValueError(f"{surface} limits are not set (use .over(defaults))")
        return Rate(float(per_s), int(burst))


# Generous: a tenant's normal traffic (an integration sending batches, an ops team in the admin
# UI, a script polling a job every 10 ms, `siyu simulate` at its 1000 requests/s maximum) never
# meets them; a runaway script does.
DEFAULT_LIMITS = Limits(
    events_per_s=1000.0,
    events_burst=10_000,
    links_per_s=200.0,
    links_burst=2_000,
    api_per_s=100.0,
    api_burst=1_000,
)


def _burst_error(name: str, value: int) -> str | None:
    if name == "events_burst" and value < MIN_EVENTS_BURST:
        return (
            f"must be at least {MIN_EVENTS_BURST} (the largest batch of POST /api/v1/events; "
            "events are counted one by one)"
        )
    return None


def _per_s() -> mf.Float:
    return mf.Float(
        allow_nan=False,
        validate=validate.Range(
            min=0, min_inclusive=False, max=MAX_PER_S, error=f"must be > 0 and <= {MAX_PER_S:g}"
        ),
    )


def _burst() -> mf.Integer:
    return mf.Integer(
        strict=True, validate=validate.Range(min=1, max=10_000_000, error="must be 1..10000000")
    )


class LimitsSchema(Schema):
    """``limits:`` of a tenant: any of the six keys; the others keep the deployment default."""

    class Meta:
        unknown = RAISE

    events_per_s = _per_s()
    events_burst = _burst()
    links_per_s = _per_s()
    links_burst = _burst()
    api_per_s = _per_s()
    api_burst = _burst()

    @validates_schema(skip_on_field_errors=True)
    def _bursts(self, data: dict, **kwargs: Any) -> None:
        errors = {
            name: [error]
            for name in ("events_burst",)
            if name in data and (error := _burst_error(name, data[name]))
        }
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> Limits:
        return Limits(**data)


ENV_PREFIX = "SIYU_LIMIT_"


def limits_from_env(env: Mapping[str, str]) -> Limits:
    """The deployment defaults: ``SIYU_LIMIT_<KEY>`` (e.g. SIYU_LIMIT_API_PER_S=20) over
    DEFAULT_LIMITS; ConfigError naming the variable for a bad value."""
    found: dict[str, float | int] = {}
    for f in fields(Limits):
        name = ENV_PREFIX + f.name.upper()
        raw = env.get(name)
        if raw in (None, ""):
            continue
        burst = f.name.endswith("_burst")
        try:
            value = int(raw) if burst else float(raw)
        except ValueError:
            kind = "an integer" if burst else "a number"
            raise ConfigError(f"{name}={raw!r}: expected {kind}") from None
        if burst and not 1 <= value <= 10_000_000:
            raise ConfigError(f"{name}={raw!r}: expected an integer from 1 to 10000000")
        if not burst and not (math.isfinite(value) and 0 < value <= MAX_PER_S):
            raise ConfigError(f"{name}={raw!r}: expected a number > 0 and <= {MAX_PER_S:g}")
        if burst and (error := _burst_error(f.name, int(value))):
            raise ConfigError(f"{name}={raw!r}: {error}")
        found[f.name] = value
    return replace(DEFAULT_LIMITS, **found)
