"""Process settings from the environment (shared/config.py): every SIYU_* variable, its
defaults and the errors that name it."""

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.tenants import DEMO_TENANTS_PATH, load_tenants


def test_settings_from_env():
    settings = Settings.from_env(
        {
            "SIYU_DATABASE_URL": "postgresql://u@h/db",
            "SIYU_KAFKA_BOOTSTRAP": "k:9092",
            "SIYU_TENANTS": "/etc/siyu/tenants.yaml",
            "SIYU_LOG_LEVEL": "debug",
            "SIYU_KAFKA_PARTITIONS": "12",
        }
    )
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.kafka.bootstrap == "k:9092"
    assert settings.kafka.partitions == 12
    assert str(settings.tenants_path) == "/etc/siyu/tenants.yaml"
    assert settings.log_level == "DEBUG"


def test_settings_without_siyu_tenants_load_no_tenants():
    """The demo tenants' webhook secrets are in the repository: only `siyu dev` falls back to
    them (docs/security.md "Safe defaults"); everything else refuses, naming the variable."""
    settings = Settings.from_env({})
    assert settings.tenants_path is None
    with pytest.raises(ConfigError, match=r"SIYU_TENANTS is not set.*Only `siyu dev`"):
        load_tenants(settings.tenants_path)
    assert Settings.from_env({"SIYU_TENANTS": ""}).tenants_path is None
    explicit = Settings.from_env({"SIYU_TENANTS": str(DEMO_TENANTS_PATH)})
    assert len(load_tenants(explicit.tenants_path)) == 2  # named explicitly, the demo file loads
    assert settings.database_url is None
    with pytest.raises(ConfigError, match="SIYU_DATABASE_URL is not set"):
        settings.require_database()
    with pytest.raises(ConfigError, match="SIYU_KAFKA_BOOTSTRAP is not set"):
        settings.require_kafka()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIYU_LOG_LEVEL": "LOUD"}, "SIYU_LOG_LEVEL"),
        ({"SIYU_KAFKA_PARTITIONS": "six"}, "SIYU_KAFKA_PARTITIONS='six': expected an integer"),
        ({"SIYU_KAFKA_SESSION_TIMEOUT_MS": "-1"}, "non-negative"),
    ],
)
def test_settings_errors(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)
