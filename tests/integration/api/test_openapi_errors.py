"""Every operation documents the error statuses it can answer, and none hides them behind a
catch-all ``default`` (which made schemathesis' status_code_conformance accept any status)."""

from __future__ import annotations

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


def test_archiving_an_archived_campaign_is_a_documented_409(api):
    # found by schemathesis (stateful, as an operator): the 409 was not in the document
    item = api.call("POST", "/content", "operator", json={
        "title": "t", "format": "article", "payloads": {"wecom": {"text": "t"}},
    }).json["content_id"]  # fmt: skip
    campaign = api.call("POST", "/campaigns", "operator", json={
        "name": "c", "channel": "wecom_single", "audience": {}, "content": {"item": item},
        "trigger": {"schedule": {"cron": "0 10 * * TUE"}},
    }).json["campaign_id"]  # fmt: skip
    assert api.call("DELETE", f"/campaigns/{campaign}", "operator").status_code == 200
    again = api.call("DELETE", f"/campaigns/{campaign}", "operator")
    assert again.status_code == 409
    assert again.json["error"]["code"] == "conflict"
    spec = api.client.get("/api/v1/openapi.json").json
    assert "409" in spec["paths"]["/api/v1/campaigns/{campaign_id}"]["delete"]["responses"]


def test_the_documented_content_examples_are_accepted(api):
    spec = api.client.get("/api/v1/openapi.json").json
    path = spec["paths"]["/api/v1/content"]["post"]["requestBody"]["content"]["application/json"]
    created = api.call("POST", "/content", "operator", json=path["example"])
    assert created.status_code == 201, created.json
    patch = spec["paths"]["/api/v1/content/{content_id}"]["patch"]["requestBody"]["content"]
    changed = api.call("PATCH", f"/content/{created.json['content_id']}", "operator",
                       json=patch["application/json"]["example"])  # fmt: skip
    assert changed.status_code == 200, changed.json
