from __future__ import annotations

import io
import json
import logging

import structlog
from flask import Flask

from shared.health import ops_blueprint
from shared.logging import configure_logging
from shared.metrics import KAFKA_PRODUCED


def log_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_logs_carry_context_and_hide_secrets():
    stream = io.StringIO()
    configure_logging("INFO", process="test", stream=stream)
    structlog.contextvars.bind_contextvars(tenant_id="acme", event_id="e1")
    try:
        structlog.get_logger("t").info(
            "webhook_accepted",
            access_token="ACCESS-123",
            config={"app_secret": "APPSECRET", "nested": {"encoding_aes_key": "AESKEY"}},
            database_url="postgresql://siyu:pa55word@db:5432/siyu",
        )
        logging.getLogger("kafka.conn").warning("broker down")
    finally:
        structlog.contextvars.clear_contextvars()
    text = stream.getvalue()
    for secret in ("ACCESS-123", "APPSECRET", "AESKEY", "pa55word"):
        assert secret not in text
    first, second = log_lines(stream)
    assert first["event"] == "webhook_accepted"
    assert first["tenant_id"] == "acme"
    assert first["event_id"] == "e1"
    assert first["level"] == "info"
    assert first["process"] == "test"
    assert "timestamp" in first
    assert first["database_url"] == "postgresql://siyu:***@db:5432/siyu"
    assert second["event"] == "broker down"
    assert second["logger"] == "kafka.conn"


def test_log_level_filters():
    stream = io.StringIO()
    configure_logging("WARNING", process="test", stream=stream)
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    assert [line["event"] for line in log_lines(stream)] == ["loud"]


def make_app(checks):
    app = Flask("t")
    app.register_blueprint(ops_blueprint(checks))
    return app.test_client()


def test_healthz_is_alive_even_when_dependencies_are_down():
    def down():
        raise ConnectionError("db unreachable")

    client = make_app({"postgres": down})
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["postgres"] == "failed"  # why: in the log only


def test_readyz_ok_when_every_check_passes():
    ready = make_app({"postgres": lambda: None, "kafka": lambda: None}).get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"postgres": "ok", "kafka": "ok"}}


def test_metrics_endpoint_serves_prometheus_text():
    KAFKA_PRODUCED.labels(topic="siyu.touchpoints.v1", outcome="ok").inc()
    response = make_app({}).get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert 'siyu_kafka_produced_total{outcome="ok",topic="siyu.touchpoints.v1"}' in response.text


def test_identities_and_personal_fields_are_logged_as_keyed_hashes(monkeypatch):
    from shared.privacy import install_privacy_key, pseudonym

    install_privacy_key("a deployment's key")  # the conftest fixture restores the tests' key
    stream = io.StringIO()
    configure_logging("INFO", process="test", stream=stream)
    structlog.contextvars.bind_contextvars(tenant_id="acme", openid="oSecretOpenid")
    try:
        structlog.get_logger("t").warning(
            "enrichment_failed",
            external_userid="wmSecretExternal",
            ExternalUserID="wmSecretExternal",
            contact={"name": "李雷", "mobile": "13800138000", "email": "li@example.com"},
            members=["wmMember1", "wmMember2"],
            contact_id="c_0123",
            attempts=3,
        )
    finally:
        structlog.contextvars.clear_contextvars()
    text = stream.getvalue()
    for personal in ("oSecretOpenid", "wmSecretExternal", "李雷", "13800138000", "li@example",
                     "wmMember1"):  # fmt: skip
        assert personal not in text
    (line,) = log_lines(stream)
    # The same value reads the same everywhere: lines about one person still correlate.
    assert line["external_userid"] == line["ExternalUserID"] == pseudonym("wmSecretExternal")
    assert line["openid"] == pseudonym("oSecretOpenid")
    assert line["openid"].startswith("h:")
    assert line["contact"]["name"] == pseudonym("李雷")
    assert line["members"] == [pseudonym("wmMember1"), pseudonym("wmMember2")]
    # Internal ids, tenants and counts stay readable.
    assert line["tenant_id"] == "acme"
    assert line["contact_id"] == "c_0123"
    assert line["attempts"] == 3
