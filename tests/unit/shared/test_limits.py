"""Rate limits in the tenants file and the environment (shared/limits.py): a tenant's override
wins over the deployment default, each value is checked, a bad one is refused naming the line,
the field and what is valid."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.limits import DEFAULT_LIMITS, Limits, Rate, limits_from_env
from shared.ratelimit import NO_TENANT, registry_limits
from shared.tenants import DEMO_TENANTS_PATH, parse_tenants


def with_limits(limits: str) -> str:
    text = DEMO_TENANTS_PATH.read_text(encoding="utf-8")
    return text.replace("  - id: acme\n", f"  - id: acme\n    limits: {limits}\n", 1)


def test_a_tenant_override_wins_and_the_rest_are_the_deployment_defaults():
    registry = parse_tenants(with_limits("{api_per_s: 2, api_burst: 10, events_burst: 800}"))
    defaults = limits_from_env({"SIYU_LIMIT_LINKS_PER_S": "7.5", "SIYU_LIMIT_API_PER_S": "9"})
    effective = registry_limits(registry, defaults)
    acme, bloom = effective("acme"), effective("bloom")
    assert acme.rate("api") == Rate(2.0, 10)  # the tenant's, over the environment's 9/s
    assert acme.rate("events") == Rate(DEFAULT_LIMITS.events_per_s, 800)
    assert acme.rate("links") == Rate(7.5, DEFAULT_LIMITS.links_burst)
    assert bloom.rate("api") == Rate(9.0, DEFAULT_LIMITS.api_burst)
    # A tenant made through the API (not in the file) and platform requests: the defaults.
    assert effective("made-by-api") == effective(NO_TENANT) == defaults


def test_no_limits_anywhere_gives_the_generous_defaults():
    settings = Settings.from_env({})
    assert settings.limits == DEFAULT_LIMITS
    tenant = parse_tenants(DEMO_TENANTS_PATH.read_text(encoding="utf-8")).get("acme")
    assert tenant.limits == Limits()
    assert tenant.limits.over(settings.limits) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ("{events_per_s: 0}", "limits.events_per_s: must be > 0"),
        ("{api_per_s: -3}", "limits.api_per_s: must be > 0"),
        ("{api_per_s: .nan}", "limits.api_per_s"),
        ("{api_per_s: fast}", "limits.api_per_s: Not a valid number"),
        ("{links_burst: 2.5}", "limits.links_burst: Not a valid integer"),
        ("{links_burst: true}", "limits.links_burst: Not a valid integer"),
        ("{api_burst: 0}", "limits.api_burst: must be 1..10000000"),
        ("{events_burst: 100}", "limits.events_burst: must be at least 500"),
        ("{events_per_sec: 5}", "limits.events_per_sec: Unknown field"),
        ("[1, 2]", "limits"),
    ],
)
def test_bad_limits_are_refused_naming_line_and_field(limits, expected):
    with pytest.raises(ConfigError) as caught:
        parse_tenants(with_limits(limits), source="tenants.yaml")
    message = str(caught.value)
    assert expected in message
    assert "tenants.yaml:" in message
    assert "tenants[0].limits" in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SIYU_LIMIT_API_PER_S": "lots"}, "SIYU_LIMIT_API_PER_S='lots': expected a number"),
        ({"SIYU_LIMIT_API_PER_S": "0"}, "SIYU_LIMIT_API_PER_S='0': expected a number > 0"),
        ({"SIYU_LIMIT_API_PER_S": "inf"}, "SIYU_LIMIT_API_PER_S='inf'"),
        ({"SIYU_LIMIT_LINKS_BURST": "1.5"}, "SIYU_LIMIT_LINKS_BURST='1.5': expected an integer"),
        ({"SIYU_LIMIT_EVENTS_BURST": "499"}, "SIYU_LIMIT_EVENTS_BURST='499': must be at least 500"),
    ],
)
def test_bad_deployment_defaults_are_refused_naming_the_variable(env, expected):
    with pytest.raises(ConfigError, match="SIYU_LIMIT_") as caught:
        Settings.from_env(env)
    assert expected in str(caught.value)
