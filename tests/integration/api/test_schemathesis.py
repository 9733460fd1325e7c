"""Property-based tests of the whole admin API from its own OpenAPI document (schemathesis'
CLI, every phase: examples, coverage, fuzzing, stateful) against the real app served over HTTP,
once per caller: acme's viewer, operator and admin, bloom's admin (another tenant's token,
over acme's data) and a platform admin (tenants, tokens, ``?tenant=``). Generated requests, valid and not, never get a 5xx, and every answer matches
the schema and the statuses documented for its operation.

The CLI runs in its own process (schemathesis' pytest plugin does not work with pytest 9), with
deterministic generation (no seed, no example database), so every run sends the same requests;
its failures come back through its JUnit report. One worker: with two, Hypothesis' lambda
descriptions call ``ast.parse`` from two threads and CPython 3.11 fails with "AST constructor
recursion depth mismatch" inside schemathesis. ``SIYU_SCHEMATHESIS_EXAMPLES`` raises the examples
per operation for a longer hunt (default 20: under a minute per caller on 2 cores, the
coverage phase being most of it; 80 took 5.5 min for the five). With 10 it already finds issue
13's PATCH /content 500 (the exact body of the issue) when that fix is undone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from defusedxml import ElementTree as ET
from werkzeug.serving import make_server

from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import create_app
from tests.integration.api.conftest import Api, issue_tokens
from tests.integration.api.test_segment_people import seed

EXAMPLES = int(os.environ.get("SIYU_SCHEMATHESIS_EXAMPLES", "20"))
PHASES = "examples,coverage,fuzzing,stateful"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
CALLERS = ["viewer", "operator", "admin", "bloom", "platform"]


@pytest.fixture
def full_api(stack, schema):
    """The app with every service's routes over private outreach and segment schemas, the
    segment schema holding acme's and bloom's people (the consumer's own code made them)."""
    schemas = {"outreach": schema, "segment": f"{schema}_seg", "ingest": f"{schema}_ing"}
    for service, name in schemas.items():
        migrate_service(stack.dsn, service, schema=name)
    seed(stack.dsn, schemas["segment"])
    pool = create_pool(stack.dsn, name="api-fuzz", schema=schema, max_size=8, timeout=3)
    settings = Settings.from_env(
        {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    )
    app = create_app(settings, pool=pool, token_cache_ttl_s=0,
                     schema_for=lambda service: schemas.get(service, service))  # fmt: skip
    api = Api(app.test_client(), app, pool, schema)
    issue_tokens(api)
    _content_and_campaign(api)
    yield api
    pool.close()


def _content_and_campaign(api: Api) -> None:
    """acme's library is not empty, so lists and previews answer with items to check."""
    item = api.call("POST", "/content", "operator", json={
        "title": "白皮书", "format": "whitepaper", "stages": ["attention"],
        "payloads": {"wecom": {"text": "本周白皮书"}},
    })  # fmt: skip
    assert item.status_code == 201, item.json
    campaign = api.call("POST", "/campaigns", "operator", json={
        "name": "每周二", "channel": "wecom_single", "audience": {"stages": ["attention"]},
        "content": {"item": item.json["content_id"]},
        "trigger": {"schedule": {"cron": "0 10 * * TUE"}},
    })  # fmt: skip
    assert campaign.status_code == 201, campaign.json


@pytest.fixture
def served(full_api):
    """The app over HTTP on a free port, as schemathesis' CLI calls it."""
    server = make_server("127.0.0.1", 0, full_api.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield full_api, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()


def _failures(junit: Path) -> list[str]:
    found = []
    for case in ET.parse(junit).iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            found.append(f"{case.get('name')}: {problem.text or problem.get('message')}")
    return found


@pytest.mark.timeout(600)
@pytest.mark.parametrize("who", CALLERS)
def test_schemathesis_finds_nothing(served, who, tmp_path):
    api, base = served
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
        "--url", base, "--phases", PHASES, "--checks", CHECKS,
        "--header", f"Authorization: Bearer {api.tokens[who]}",
        "--max-examples", str(EXAMPLES), "--generation-deterministic",
        "--workers", "1", "--request-timeout", "10",
        "--suppress-health-check", "all", "--no-color", "--continue-on-failure",
        "--report", "junit", "--report-junit-path", str(junit),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=540, check=False,
                         cwd=tmp_path)  # fmt: skip
    assert junit.exists(), run.stdout[-4000:] + run.stderr[-4000:]
    print(run.stdout[-3000:])  # the summary: operations, phases, cases (pytest -s)
    failures = _failures(junit)
    assert not failures, "\n".join(failures) or run.stdout[-8000:]
    assert run.returncode == 0, "\n".join(failures) or run.stdout[-8000:]


@pytest.mark.parametrize(
    ("who", "method", "path", "kwargs"),
    [
        ("admin", "GET", "/deliveries", {"query_string": {"campaign_id": "a\x00b"}}),
        ("admin", "GET", "/campaigns/cmp\x00x", {}),
        ("admin", "POST", "/content", {"json": {"title": "x\x00", "format": "article",
                                                "payloads": {"wecom": {"text": "t"}}}}),
        # schemathesis, as a platform admin: ?tenant= is looked up before the NUL check ran
        ("platform", "GET", "/content/x", {"query_string": {"tenant": "\x00"}}),
        ("platform", "GET", "/campaigns", {"query_string": {"tenant": "Ha\x00f"}}),
    ],
)  # fmt: skip
def test_nul_characters_are_a_clear_400(full_api, who, method, path, kwargs):
    response = full_api.call(method, path, who, **kwargs)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_characters"


def test_numbers_beyond_bigint_are_a_clear_400(full_api):
    from shared.api.pagination import encode_cursor

    huge = full_api.call("GET", "/deliveries", "admin", query_string={"run_id": 2**70})
    assert huge.status_code == 400
    forged = full_api.call("GET", "/deliveries", "admin",
                           query_string={"cursor": encode_cursor([2**70])})  # fmt: skip
    assert forged.status_code == 400
    assert forged.json["error"]["code"] == "invalid_cursor"
