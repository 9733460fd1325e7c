"""Kafka authentication settings: SIYU_KAFKA_* mapped to kafka-python's options, refused with a
message naming the setting when incomplete or contradictory. The embedded broker of the tests
has no SASL and no TLS, so no test connects with them (docs/security.md, "Least privilege")."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.kafka import consumer, producer, topics
from shared.kafka.security import KafkaSecurity, security_from_env
from shared.kafka.settings import KafkaSettings

SCRAM = {
    "SIYU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "SIYU_KAFKA_USERNAME": "siyu-ingest",
    "SIYU_KAFKA_PASSWORD": "s3cret",
}


def test_the_default_is_plaintext_without_credentials():
    assert security_from_env({}).client_config() == {"security_protocol": "PLAINTEXT"}
    assert Settings.from_env({}).kafka.security == KafkaSecurity()


def test_scram_over_tls_with_the_cluster_ca(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    security = security_from_env({**SCRAM, "SIYU_KAFKA_CA_FILE": str(ca)})
    assert security.client_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",  # the default: what Strimzi's KafkaUsers use
        "sasl_plain_username": "siyu-ingest",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
    }
    assert "s3cret" not in repr(security)
    with_ca = Settings.from_env({**SCRAM, "SIYU_KAFKA_CA_FILE": str(ca)})
    assert "s3cret" not in repr(with_ca)


def test_the_password_can_come_from_a_mounted_file(tmp_path):
    path = tmp_path / "password"
    path.write_text("from-a-file\n", encoding="utf-8")
    env = {**SCRAM, "SIYU_KAFKA_PASSWORD": "", "SIYU_KAFKA_PASSWORD_FILE": str(path)}
    env["SIYU_KAFKA_SASL_MECHANISM"] = "scram-sha-256"
    config = security_from_env(env).client_config()
    assert config["sasl_plain_password"] == "from-a-file"
    assert config["sasl_mechanism"] == "SCRAM-SHA-256"


def test_mutual_tls(tmp_path):
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x", encoding="utf-8")
    env = {
        "SIYU_KAFKA_SECURITY_PROTOCOL": "ssl",
        "SIYU_KAFKA_CA_FILE": str(files["ca"]),
        "SIYU_KAFKA_CERT_FILE": str(files["cert"]),
        "SIYU_KAFKA_KEY_FILE": str(files["key"]),
    }
    assert security_from_env(env).client_config() == {
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(files["ca"]),
        "ssl_certfile": str(files["cert"]),
        "ssl_keyfile": str(files["key"]),
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIYU_KAFKA_SECURITY_PROTOCOL": "TLS"},
         "SIYU_KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
         "SASL_SSL"),
        ({**SCRAM, "SIYU_KAFKA_SASL_MECHANISM": "GSSAPI"},
         "SIYU_KAFKA_SASL_MECHANISM='GSSAPI': expected one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
        ({**SCRAM, "SIYU_KAFKA_USERNAME": ""},
         "a Kafka password is set without SIYU_KAFKA_USERNAME"),
        ({**SCRAM, "SIYU_KAFKA_PASSWORD": ""},
         "SIYU_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SIYU_KAFKA_USERNAME and SIYU_KAFKA_PASSWORD"),
        ({**SCRAM, "SIYU_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
         "SIYU_KAFKA_USERNAME, SIYU_KAFKA_PASSWORD set, but SIYU_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
         "sends no credentials"),
        ({**SCRAM, "SIYU_KAFKA_PASSWORD_FILE": "/nonexistent"},
         "set SIYU_KAFKA_PASSWORD or SIYU_KAFKA_PASSWORD_FILE, not both"),
        ({**SCRAM, "SIYU_KAFKA_PASSWORD": "", "SIYU_KAFKA_PASSWORD_FILE": "/nonexistent/pw"},
         "SIYU_KAFKA_PASSWORD_FILE=/nonexistent/pw: cannot read it"),
        ({**SCRAM, "SIYU_KAFKA_CA_FILE": "/nonexistent/ca.crt"},
         "SIYU_KAFKA_CA_FILE=/nonexistent/ca.crt: no such file"),
        ({**SCRAM, "SIYU_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SIYU_KAFKA_CA_FILE": "{ca}"},
         "SIYU_KAFKA_CA_FILE set, but SIYU_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use "
         "TLS"),
        ({"SIYU_KAFKA_SECURITY_PROTOCOL": "SSL", "SIYU_KAFKA_CERT_FILE": "{ca}"},
         "a client certificate needs both SIYU_KAFKA_CERT_FILE and SIYU_KAFKA_KEY_FILE"),
    ],
)  # fmt: skip
def test_incomplete_or_contradictory_settings_are_refused_by_name(env, message, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("x", encoding="utf-8")
    env = {k: v.format(ca=ca) for k, v in env.items()}
    with pytest.raises(ConfigError) as caught:
        security_from_env(env)
    assert message in str(caught.value)
    with pytest.raises(ConfigError):
        Settings.from_env(env)  # every process refuses to start with it


def test_every_client_the_processes_create_authenticates(monkeypatch):
    """Producers, consumers and the admin client all get the same options."""
    seen = {}

    def fake(kind):
        def create(*args, **kwargs):
            seen[kind] = kwargs
            return type("Client", (), {"list_topics": lambda self: [], "close": lambda self: 0,
                                       "create_topics": lambda self, t: None})()  # fmt: skip

        return create

    monkeypatch.setattr(producer, "KafkaProducer", fake("producer"))
    monkeypatch.setattr(consumer, "KafkaConsumer", fake("consumer"))
    monkeypatch.setattr(topics, "KafkaAdminClient", fake("admin"))
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "siyu-segment", "pw")
    kafka = KafkaSettings(bootstrap="kafka:9093", security=security)
    producer.create_producer(kafka, client_id="p")
    consumer.create_consumer(kafka, group_id="siyu-segment", client_id="c")
    topics.ensure_topics(kafka, topics.TOPICS[:1])
    for kind in ("producer", "consumer", "admin"):
        assert seen[kind]["security_protocol"] == "SASL_SSL", kind
        assert seen[kind]["sasl_mechanism"] == "SCRAM-SHA-512", kind
        assert seen[kind]["sasl_plain_username"] == "siyu-segment", kind
        assert seen[kind]["sasl_plain_password"] == "pw", kind
