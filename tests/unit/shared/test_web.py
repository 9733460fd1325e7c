"""Safe defaults of the HTTP apps (docs/security.md "Safe defaults"): no ``/static`` route, API
answers neither sniffed nor cached, and ``/readyz`` names a failing check without its error."""

from __future__ import annotations

import io
import json

import pytest
from flask_smorest import Blueprint

from services.ingest.app import IngestDeps, create_app
from shared.api import require
from shared.api.app import create_api_app
from shared.health import create_ops_app
from shared.logging import configure_logging
from shared.tenants import DEMO_TENANTS_PATH, load_tenants


def _ingest():
    deps = IngestDeps(tenants=load_tenants(DEMO_TENANTS_PATH), publisher=None, tokens=None,
                      links=None)  # fmt: skip
    return create_app(deps).test_client()


def _admin():
    blp = Blueprint("probe", __name__)

    @blp.route("/probe", methods=["GET"])
    @require("viewer")
    def probe():
        return {}

    return create_api_app("probe", pool=None, blueprints=[blp]).test_client()


APPS = {"ingest": _ingest, "admin": _admin, "ops": lambda: create_ops_app("ops").test_client()}


@pytest.mark.parametrize("app", sorted(APPS))
def test_there_is_no_static_route(app):
    client = APPS[app]()
    for path in ("/static/x", "/static/../pyproject.toml", "/static/app.py"):
        assert client.get(path).status_code == 404, path
    assert not any(r.rule.startswith("/static") for r in client.application.url_map.iter_rules())


@pytest.mark.parametrize(
    ("app", "path"),
    [("ingest", "/api/v1/events"), ("ingest", "/r/nope"), ("ingest", "/healthz"),
     ("admin", "/api/v1/probe"), ("admin", "/api/v1/openapi.json"), ("admin", "/healthz")],
)  # fmt: skip
def test_api_answers_are_not_sniffed_or_cached(app, path):
    client = APPS[app]()
    response = client.post(path) if path == "/api/v1/events" else client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff", response.status_code
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_names_the_failing_check_and_logs_why():
    def down():
        raise ConnectionError("connection to 10.0.3.7 failed: password authentication for siyu_x")

    def ok():
        return None

    stream = io.StringIO()
    configure_logging("INFO", process="test", stream=stream)
    ready = create_ops_app("ops", {"postgres": down, "kafka": ok}).test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json == {"status": "not_ready", "checks": {"postgres": "failed", "kafka": "ok"}}
    assert "10.0.3.7" not in ready.text
    assert "siyu_x" not in ready.text
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()
               if "readiness_check_failed" in x]  # fmt: skip
    assert line["check"] == "postgres"
    assert "10.0.3.7" in line["error"]
