"""The shared vocabulary (what outreach validates campaigns with) is what segment derives with,
and the unknown-name answer names the field, the value and the valid values."""

from __future__ import annotations

import pytest

from services.segment import behaviour, risk, roles
from services.segment.lifecycle.grammar import builtin_models
from shared.api.names import Unknown, check, check_one, unknown_names
from shared.vocabulary import (
    BEHAVIOURS,
    BUILTIN_MODELS,
    BUILTIN_SIDE_STAGES,
    BUILTIN_STAGES,
    BUYING_ROLES,
    RISK_FLAGS,
    stages_of,
    time_zone_error,
)


@pytest.mark.parametrize("mode", ["b2b", "b2c"])
def test_builtin_stages_are_the_rule_packs(mode):
    models = builtin_models(mode)
    assert set(BUILTIN_STAGES) == set(BUILTIN_MODELS) == set(models)
    for name, model in models.items():
        assert BUILTIN_STAGES[name] == tuple(model.stage_names)
        assert BUILTIN_SIDE_STAGES[name] == tuple(model.side_stages)


def test_roles_flags_and_behaviours_are_segments():
    assert BUYING_ROLES == roles.BUYING_ROLES  # segment ranks ties in this order
    assert set(RISK_FLAGS) == set(risk.SEVERITY)
    assert set(BEHAVIOURS) == set(behaviour.SEGMENTS)


def test_a_custom_model_has_no_shared_stages():
    assert stages_of("aisceas")[-1] == "lapsed"
    assert stages_of("my-funnel") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Asia/Shanghai", None),
        ("UTC", None),
        ("Asia/Shangai", "Unknown time zone 'Asia/Shangai'. Did you mean 'Asia/Shanghai'?"),
        ("Asia", "Unknown time zone 'Asia'. Give an IANA name such as Asia/Shanghai."),  # a dir
        ("zone.tab", "Unknown time zone 'zone.tab'. Give an IANA name such as Asia/Shanghai."),
        ("../etc/passwd", "Unknown time zone '../etc/passwd'. Give an IANA name such as "
                          "Asia/Shanghai."),
    ],
)  # fmt: skip
def test_time_zones_are_checked_by_name(name, expected):
    assert time_zone_error(name) == expected


def test_unknown_names_answer():
    assert unknown_names([]) is None
    found = check("audience.stages", "stage", ["attention", "Intrest"], ["attention", "interest"])
    found += check_one("trigger.event.risk_flag", "risk flag", "churn", RISK_FLAGS)
    found += check_one("trigger.event.stage_entered", "stage", None, ["attention"])
    assert [u.field for u in found] == ["audience.stages[1]", "trigger.event.risk_flag"]
    error = unknown_names(found)
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.message.startswith("audience.stages[1]: Unknown stage 'Intrest'.")
    assert error.message.endswith("(and 1 more)")
    assert error.details == {
        "audience.stages[1]": [
            "Unknown stage 'Intrest'. Valid: attention, interest. Did you mean 'interest'?"
        ],
        "trigger.event.risk_flag": [
            "Unknown risk flag 'churn'. Valid: payment_risk, churn_risk, lost, inactive, new, "
            "growing. Did you mean 'churn_risk'?"
        ],
        "valid": {"audience.stages[1]": ["attention", "interest"],
                  "trigger.event.risk_flag": list(RISK_FLAGS)},
    }  # fmt: skip
    many = Unknown("tz", "time zone", "x", tuple(f"z{i}" for i in range(30)))
    assert many.message() == "Unknown time zone 'x'."  # long lists only in details
