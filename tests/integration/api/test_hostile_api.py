"""Hostile requests against the whole admin API: another tenant's token on every route,
10 MB bodies, bodies that are not UTF-8, SQL metacharacters stored verbatim."""

from __future__ import annotations

import re

import pytest

from tests.integration.api.test_schemathesis import full_api  # noqa: F401 - the fixture

SQL_META = "'; DROP TABLE campaigns; -- \" \\ %s %(x)s $$ /* */"


def routes(api) -> list[tuple[str, str]]:
    spec = api.client.get("/api/v1/openapi.json").get_json()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    ]


def test_another_tenants_token_gets_nothing_on_any_route(full_api):  # noqa: F811
    """Everything acme owns, asked for by bloom's admin (the strongest tenant role): never a 2xx
    that reveals or changes it; lists answer bloom's own (empty) data."""
    api = full_api
    content = api.call(
        "POST",
        "/content",
        "operator",
        json={"title": "acme only", "format": "article", "payloads": {"wecom": {"text": "x"}}},
    ).json
    ids = {"content_id": content["content_id"], "campaign_id": "cmp_x", "contact_id": "c_x",
           "account_id": "a_x", "segment_id": "seg-x", "name": "custom", "token_id": "tok_x",
           "tenant": "acme"}  # fmt: skip
    for method, path in routes(api):
        url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), path)
        if "{" in path and "tenant" not in path:
            response = api.call(method, url.removeprefix("/api/v1"), "bloom", json={})
            assert response.status_code in (400, 403, 404, 405, 409, 422), (method, url)
    # The content itself is untouched and invisible to bloom.
    assert api.call("GET", f"/content/{content['content_id']}", "bloom").status_code == 404
    listed = api.call("GET", "/content", "bloom").json["items"]
    assert listed == []


@pytest.mark.parametrize("path", ["/content", "/campaigns", "/segments", "/tokens"])
def test_ten_megabyte_bodies_are_413(full_api, path):  # noqa: F811
    response = full_api.call("POST", path, "admin", data=b"{" + b" " * (10 * 1024 * 1024) + b"}",
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert response.json["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("body", [b'{"title": "\xff\xfe"}', b"\xc3\x28", b'{"a": "\xed\xa0\x80"}'])
def test_bodies_that_are_not_utf8_are_400(full_api, body):  # noqa: F811
    response = full_api.call("POST", "/content", "operator", data=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400


def test_sql_metacharacters_are_stored_verbatim(full_api):  # noqa: F811
    created = full_api.call("POST", "/content", "operator", json={
        "title": SQL_META, "format": "article", "topics": [SQL_META],
        "payloads": {"wecom": {"text": SQL_META}}})  # fmt: skip
    assert created.status_code == 201
    got = full_api.call("GET", f"/content/{created.json['content_id']}", "viewer").json
    assert got["title"] == SQL_META
    assert got["topics"] == [SQL_META]
    assert got["payloads"]["wecom"]["text"] == SQL_META
    found = full_api.call("GET", "/content", "viewer", query_string={"topic": SQL_META}).json
    assert [c["content_id"] for c in found["items"]] == [created.json["content_id"]]
    searched = full_api.call("GET", "/contacts", "viewer", query_string={"q": SQL_META})
    assert searched.status_code == 200
    assert searched.json["items"] == []
