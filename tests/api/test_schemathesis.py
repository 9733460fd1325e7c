"""Property-based tests of the whole admin API from its own OpenAPI document (schemathesis):
generated requests, valid and not, with an admin token, never get a 5xx, and every answer
matches the schema and the statuses documented for its operation.

The operations are walked here rather than through schemathesis' pytest plugin, which does not
work with this pytest version; each operation gets its own Hypothesis run.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from services.api import create_app
from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from tests.api.conftest import Api, issue_tokens

pytestmark = pytest.mark.integration

EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture
def full_api(stack, schema):
    """The app with every service's routes over private outreach and segment schemas."""
    schemas = {"outreach": schema, "segment": f"{schema}_seg"}
    for service, name in schemas.items():
        migrate_service(stack.dsn, service, schema=name)
    pool = create_pool(stack.dsn, name="api-fuzz", schema=schema, max_size=4, timeout=3)
    settings = Settings.from_env({"SIYU_DATABASE_URL": stack.dsn})
    app = create_app(settings, pool=pool, token_cache_ttl_s=0,
                     schema_for=lambda service: schemas.get(service, service))  # fmt: skip
    api = Api(app.test_client(), app, pool, schema)
    issue_tokens(api)
    yield api
    pool.close()


def test_generated_requests_never_get_a_server_error(full_api):
    api = full_api
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api.app)
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def check(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/deliveries", {"query_string": {"campaign_id": "a\x00b"}}),
        ("GET", "/campaigns/cmp\x00x", {}),
        ("POST", "/content", {"json": {"title": "x\x00", "format": "article",
                                       "payloads": {"wecom": {"text": "t"}}}}),
    ],
)  # fmt: skip
def test_nul_characters_are_a_clear_400(full_api, method, path, kwargs):
    response = full_api.call(method, path, "admin", **kwargs)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_characters"


def test_numbers_beyond_bigint_are_a_clear_400(full_api):
    from shared.api.pagination import encode_cursor

    huge = full_api.call("GET", "/deliveries", "admin", query_string={"run_id": 2**70})
    assert huge.status_code == 400
    forged = full_api.call("GET", "/deliveries", "admin",
                           query_string={"cursor": encode_cursor([2**70])})  # fmt: skip
    assert forged.status_code == 400 and forged.json["error"]["code"] == "invalid_cursor"
