"""Every operation documents the error statuses it can answer, and none hides them behind a
catch-all ``default`` (which made schemathesis' status_code_conformance accept any status)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

METHODS = ("get", "post", "put", "patch", "delete")


def test_error_statuses_are_documented_per_operation(api):
    spec = api.client.get("/api/v1/openapi.json").json
    operations = [
        (method, path, op["responses"])
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]
    assert len(operations) > 40
    for method, path, responses in operations:
        assert "default" not in responses, (method, path)
        assert {"400", "401", "403", "503"} <= set(responses), (method, path, sorted(responses))
        if method in ("post", "put", "patch"):
            assert "413" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path, sorted(responses))
    error = spec["components"]["responses"]["BAD_REQUEST"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/Error"}
