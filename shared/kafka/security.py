"""How the processes authenticate to Kafka: TLS and SASL settings from the environment, mapped to
kafka-python's options for producers, consumers and admin clients alike.

In the cluster every process connects as its own Kafka user (deploy/k8s/base/kafka-users.yaml)
over TLS with SCRAM-SHA-512; `siyu dev` and the tests use the embedded broker, which has neither,
so the default is PLAINTEXT. A setting that would be silently ignored (a password with PLAINTEXT,
a CA file without TLS) is refused instead: a half-configured client would otherwise fail later
with the broker's less helpful "connection closed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# What kafka-python speaks without extra packages (GSSAPI needs Kerberos, OAUTHBEARER a token
# provider object); Strimzi offers SCRAM-SHA-512 for KafkaUsers.
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def client_config(self) -> dict[str, Any]:
        """kafka-python options (KafkaProducer, KafkaConsumer, KafkaAdminClient take the same)."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            config |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.tls:
            config["ssl_check_hostname"] = True
            if self.ca_file:
                config["ssl_cafile"] = self.ca_file
            if self.cert_file:
                config |= {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}
        return config


def security_from_env(env: Mapping[str, str]) -> KafkaSecurity:
    """SIYU_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _USERNAME, _PASSWORD or _PASSWORD_FILE,
    _CA_FILE, _CERT_FILE and _KEY_FILE; ConfigError naming the setting and the valid values."""
    protocol = (env.get("SIYU_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"SIYU_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(PROTOCOLS)}"
        )
    mechanism = (env.get("SIYU_KAFKA_SASL_MECHANISM") or "").strip().upper() or None
    username = env.get("SIYU_KAFKA_USERNAME") or None
    password = _password(env)
    ca_file = _file(env, "SIYU_KAFKA_CA_FILE")
    cert_file = _file(env, "SIYU_KAFKA_CERT_FILE")
    key_file = _file(env, "SIYU_KAFKA_KEY_FILE")

    if mechanism is not None and mechanism not in MECHANISMS:
        raise ConfigError(
            f"SIYU_KAFKA_SASL_MECHANISM={mechanism!r}: expected one of {', '.join(MECHANISMS)}"
        )
    if password is not None and username is None:
        raise ConfigError("a Kafka password is set without SIYU_KAFKA_USERNAME")
    security = KafkaSecurity(
        protocol=protocol,
        mechanism=(mechanism or DEFAULT_MECHANISM) if protocol.startswith("SASL_") else mechanism,
        username=username,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )
    if security.sasl:
        if username is None or password is None:
            raise ConfigError(
                f"SIYU_KAFKA_SECURITY_PROTOCOL={protocol} needs SIYU_KAFKA_USERNAME and "
                "SIYU_KAFKA_PASSWORD (or SIYU_KAFKA_PASSWORD_FILE)"
            )
    else:
        ignored = [
            name
            for name, value in (
                ("SIYU_KAFKA_SASL_MECHANISM", mechanism),
                ("SIYU_KAFKA_USERNAME", username),
                ("SIYU_KAFKA_PASSWORD", password),
            )
            if value is not None
        ]
        if ignored:
            raise ConfigError(
                f"{', '.join(ignored)} set, but SIYU_KAFKA_SECURITY_PROTOCOL={protocol} sends no "
                "credentials: use SASL_SSL (or SASL_PLAINTEXT)"
            )
    if not security.tls:
        ignored = [
            name
            for name, value in (
                ("SIYU_KAFKA_CA_FILE", ca_file),
                ("SIYU_KAFKA_CERT_FILE", cert_file),
                ("SIYU_KAFKA_KEY_FILE", key_file),
            )
            if value is not None
        ]
        if ignored:
            raise ConfigError(
                f"{', '.join(ignored)} set, but SIYU_KAFKA_SECURITY_PROTOCOL={protocol} does not "
                "use TLS: use SSL or SASL_SSL"
            )
    if (cert_file is None) != (key_file is None):
        raise ConfigError(
            "a client certificate needs both SIYU_KAFKA_CERT_FILE and SIYU_KAFKA_KEY_FILE"
        )
    return security


def _password(env: Mapping[str, str]) -> str | None:
    inline = env.get("SIYU_KAFKA_PASSWORD") or None
    path = env.get("SIYU_KAFKA_PASSWORD_FILE") or None
    if inline is not None and path is not None:
        raise ConfigError("set SIYU_KAFKA_PASSWORD or SIYU_KAFKA_PASSWORD_FILE, not both")
    if path is None:
        return inline
    try:
        # A mounted Secret file often ends with a newline the password does not contain.
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"SIYU_KAFKA_PASSWORD_FILE={path}: cannot read it ({exc.strerror})"
        ) from None
    if not value:
        raise ConfigError(f"SIYU_KAFKA_PASSWORD_FILE={path}: the file is empty")
    return value


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name) or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{name}={path}: no such file")
    return path
