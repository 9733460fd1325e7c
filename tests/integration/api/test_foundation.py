"""The admin API foundation through the real app: OpenAPI, auth, RBAC, tenant isolation,
pagination, audit, uniform errors, and `siyu token create`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate

from services.outreach import tokens as token_store
from shared.api import Blueprint, TokenStore, create_api_app, require
from shared.errors import SiyuError
from shared.tenants import DEMO_TENANTS_PATH
from siyu.cli import main as cli

# method, path, body, expected status for (viewer, operator, admin of acme, platform admin).
# "{doomed}" / "{victim}" are a tenant / an acme token made for the call; platform tokens add
# ?tenant=acme on tenant routes.
RBAC = [
    ("GET", "/me", None, (200, 200, 200, 200)),
    ("GET", "/tenants", None, (403, 403, 403, 200)),
    (
        "POST",
        "/tenants",
        {"tenant_id": "newco", "name": "NewCo", "mode": "b2c"},
        (403, 403, 403, 201),
    ),
    ("GET", "/tenants/acme", None, (403, 403, 403, 200)),
    ("PATCH", "/tenants/acme", {"name": "ACME renamed"}, (403, 403, 403, 200)),
    ("DELETE", "/tenants/{doomed}", None, (403, 403, 403, 204)),
    ("GET", "/tokens", None, (403, 403, 200, 200)),
    ("POST", "/tokens", {"name": "ci", "role": "viewer"}, (403, 403, 201, 201)),
    ("DELETE", "/tokens/{victim}", None, (403, 403, 204, 204)),
    ("GET", "/audit", None, (403, 403, 200, 200)),
]
TENANT_ROUTES = ("/tokens", "/audit")
WHO = ("viewer", "operator", "admin", "platform")


SERVICE_ROUTE_PREFIXES = (
    "/api/v1/contacts",
    "/api/v1/accounts",
    "/api/v1/segments",
    "/api/v1/lifecycle",
    "/api/v1/reports",
    "/api/v1/content",
    "/api/v1/campaigns",
    "/api/v1/deliveries",
    "/api/v1/settings/outreach",
    "/api/v1/ingest-tokens",  # tests/integration/api/test_tokens.py
    "/api/v1/channel-codes",  # tests/integration/outreach/test_channel_codes.py
    "/api/v1/welcomes",  # tests/integration/outreach/test_group_welcome_api.py
    "/api/v1/group-welcome-templates",
    "/api/v1/group-tasks",  # tests/integration/outreach/test_group_tasks.py
)


def _rule(path: str) -> str:
    return "/api/v1" + path.replace("acme", "<tenant>").replace("{doomed}", "<tenant>").replace(
        "{victim}", "<token_id>"
    )


def _make_tenant(api, tenant_id: str) -> None:
    api.sql(
        "INSERT INTO tenants (tenant_id, name, mode, lifecycle_model) "
        "VALUES (%s, %s, 'b2c', 'aarrr') RETURNING tenant_id",
        (tenant_id, tenant_id),
    )


def _walk(api, path: str, who: str, limit: int, **query) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        args = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        response = api.call("GET", path, who, query_string=args)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert pages < 100


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["details"], dict)
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_document_is_valid_and_lists_every_route(api):
    response = api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    assert spec["openapi"] == "3.0.3"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    routes = {
        (method, rule.rule)
        for rule in api.app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.rule != "/api/v1/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (method.upper(), path.replace("{", "<").replace("}", ">"))
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert routes == documented
    # The RBAC table below covers every route of the foundation (service routes have their own).
    foundation = {(m, r) for m, r in routes if not r.startswith(SERVICE_ROUTE_PREFIXES)}
    assert foundation == {(method, _rule(path)) for method, path, _, _ in RBAC}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own parameters (e.g. {tenant})
                continue
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in operation["responses"]
            assert "403" in operation["responses"]
    # Request schemas are the validating marshmallow schemas.
    create = spec["components"]["schemas"]["TenantCreate"]
    assert set(create["required"]) == {"tenant_id", "name", "mode"}
    assert create["properties"]["mode"]["enum"] == ["b2b", "b2c"]
    page = spec["components"]["schemas"]["TokenPage"]
    assert set(page["properties"]) == {"items", "next_cursor"}
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    params = {p["name"] for p in spec["paths"]["/api/v1/audit"]["get"]["parameters"]}
    assert params == {"limit", "cursor", "action", "since", "tenant"}


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer siyu_adm_forged",
        "Bearer x" * 50,
    ],
)
def test_missing_or_bad_token_is_401(api, header):
    headers = {} if header is None else {"Authorization": header}
    for method, path in [("GET", "/me"), ("GET", "/tokens"), ("POST", "/tenants")]:
        response = api.call(method, path, None, headers=headers, json={"bad": "body"})
        _error(response, 401, "unauthenticated")


def test_revoked_token_is_401_at_once(api):
    token_id, secret = api.token("acme", "viewer", "soon-gone")
    assert api.call("GET", "/me", secret).status_code == 200
    assert api.call("DELETE", f"/tokens/{token_id}").status_code == 204
    _error(api.call("GET", "/me", secret), 401, "unauthenticated")
    # Revoked behind the API's back (another process, SQL): effective at once too.
    api.sql(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s RETURNING 1",
        (api.ids["viewer"],),
    )
    _error(api.call("GET", "/me", "viewer"), 401, "unauthenticated")


def test_last_used_at_is_recorded(api):
    assert api.call("GET", "/me", "operator").status_code == 200
    (row,) = api.sql(
        "SELECT last_used_at FROM api_tokens WHERE token_id = %s", (api.ids["operator"],)
    )
    assert row["last_used_at"] is not None
    (row,) = api.sql(
        "SELECT token_hash FROM api_tokens WHERE token_id = %s", (api.ids["operator"],)
    )
    assert row["token_hash"] != api.tokens["operator"]
    assert len(row["token_hash"]) == 64


def test_token_store_never_caches_validity(api):
    with pytest.raises(ValueError):
        TokenStore(api.pool, ttl_s=61)
    store = TokenStore(api.pool, ttl_s=60)
    principal = store.authenticate(api.tokens["admin"])
    assert principal.token_id == api.ids["admin"]
    assert principal.role == "admin"
    api.sql(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s RETURNING 1",
        (api.ids["admin"],),
    )
    assert store.authenticate(api.tokens["admin"]) is None  # ttl_s spaces last_used_at only


def test_me(api):
    body = api.call("GET", "/me", "operator").get_json()
    assert body == {
        "token_id": api.ids["operator"],
        "name": "test-operator",
        "role": "operator",
        "tenant_id": "acme",
        "platform": False,
    }
    body = api.call("GET", "/me", "platform").get_json()
    assert body["platform"] is True
    assert body["tenant_id"] is None


# --- authorisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("method", "path", "body", "expected"), RBAC, ids=lambda v: str(v))
def test_rbac(api, who, method, path, body, expected):
    if "{doomed}" in path:
        _make_tenant(api, f"doomed-{who}")
        path = path.replace("{doomed}", f"doomed-{who}")
    if "{victim}" in path:
        victim, _ = api.token("acme", "viewer", "victim")
        path = path.replace("{victim}", victim)
    query = {"tenant": "acme"} if who == "platform" and path.startswith(TENANT_ROUTES) else {}
    response = api.call(method, path, who, json=body, query_string=query)
    status = expected[WHO.index(who)]
    assert response.status_code == status, response.get_json()
    if status == 403:
        _error(response, 403, "forbidden")


def test_platform_token_must_name_an_existing_tenant(api):
    response = api.call("POST", "/tokens", "platform", json={"name": "x", "role": "viewer"})
    _error(response, 400, "tenant_required")
    # GET /tokens without ?tenant lists the platform tokens (tests/integration/api/test_tokens.py).
    for method, path in [("GET", "/tokens"), ("POST", "/tokens")]:
        response = api.call(
            method, path, "platform", json={"name": "x", "role": "viewer"},
            query_string={"tenant": "nobody"},
        )  # fmt: skip
        _error(response, 404, "unknown_tenant")
    # Audit may span every tenant for a platform admin.
    assert api.call("GET", "/audit", "platform").status_code == 200


# --- tenant isolation --------------------------------------------------------------------------


def test_a_tenant_admin_cannot_see_or_touch_another_tenant(api):
    bloom_token, bloom_secret = api.token("bloom", "viewer", "bloom-reader")
    # A mutation in bloom, to be invisible from acme.
    assert (
        api.call("POST", "/tokens", "bloom", json={"name": "b", "role": "viewer"}).status_code
        == 201
    )

    _error(
        api.call("GET", "/tokens", "admin", query_string={"tenant": "bloom"}), 404, "unknown_tenant"
    )
    _error(
        api.call("GET", "/audit", "admin", query_string={"tenant": "bloom"}), 404, "unknown_tenant"
    )
    # The same answer for a tenant that does not exist: nothing leaks.
    _error(
        api.call("GET", "/tokens", "admin", query_string={"tenant": "zzz"}), 404, "unknown_tenant"
    )
    _error(api.call("DELETE", f"/tokens/{bloom_token}", "admin"), 404, "not_found")
    _error(api.call("DELETE", "/tokens/tok_doesnotexist", "admin"), 404, "not_found")
    _error(
        api.call("DELETE", f"/tokens/{bloom_token}", "admin", query_string={"tenant": "bloom"}),
        404,
        "unknown_tenant",
    )
    assert api.call("GET", "/me", bloom_secret).status_code == 200  # still valid

    listed = _walk(api, "/tokens", "admin", 200)
    assert {t["tenant_id"] for t in listed} == {"acme"}
    assert bloom_token not in {t["token_id"] for t in listed}
    audit = _walk(api, "/audit", "admin", 200)
    assert {e["tenant_id"] for e in audit} <= {"acme"}
    bloom_audit = _walk(api, "/audit", "bloom", 200)
    assert [e["action"] for e in bloom_audit] == ["token.create"]


# --- pagination --------------------------------------------------------------------------------


def test_pagination_walks_every_item_exactly_once(api):
    for i in range(9):
        api.token("acme", "viewer", f"bulk-{i}")
    expected = {
        r["token_id"] for r in api.sql("SELECT token_id FROM api_tokens WHERE tenant_id = 'acme'")
    }
    assert len(expected) == 12
    for limit in (1, 2, 5, 12, 200):
        walked = [t["token_id"] for t in _walk(api, "/tokens", "admin", limit)]
        assert len(walked) == len(set(walked)) == 12
        assert set(walked) == expected
    for i in range(5):
        _make_tenant(api, f"extra-{i}")
    tenants = [t["tenant_id"] for t in _walk(api, "/tenants", "platform", 2)]
    assert tenants == sorted(tenants)
    assert len(tenants) == 7
    for i in range(7):
        api.call("PATCH", "/tenants/acme", "platform", json={"settings": {"n": i}})
    entries = [e["id"] for e in _walk(api, "/audit", "platform", 3, action="tenant.update")]
    assert len(entries) == 7
    assert entries == sorted(entries, reverse=True)


def test_pagination_refuses_bad_limits_and_cursors(api):
    for limit in (0, 201, "many"):
        error = _error(
            api.call("GET", "/tokens", query_string={"limit": limit}), 400, "invalid_request"
        )
        assert "limit" in error["details"]["query"]
    for cursor in (
        "%%%",
        "bm90IGpzb24",
        "WyJ4Il0",
        "WzEsMl0",
    ):  # not base64, not JSON, wrong shapes
        _error(api.call("GET", "/audit", query_string={"cursor": cursor}), 400, "invalid_cursor")
    body = api.call("GET", "/tokens").get_json()
    assert len(body["items"]) == 3
    assert body["next_cursor"] is None  # default limit 50


# --- audit -------------------------------------------------------------------------------------


def test_every_mutation_is_audited_with_actor_and_target(api):
    calls = [
        ("platform", "POST", "/tenants", {"tenant_id": "audited", "name": "A", "mode": "b2b"}, {}),
        ("platform", "PATCH", "/tenants/audited", {"timezone": "Europe/Berlin"}, {}),
        ("admin", "POST", "/tokens", {"name": "made", "role": "operator"}, {}),
        (
            "platform",
            "POST",
            "/tokens",
            {"name": "made-by-platform", "role": "admin"},
            {"tenant": "acme"},
        ),
    ]
    for who, method, path, body, query in calls:
        assert api.call(method, path, who, json=body, query_string=query).status_code in (200, 201)
    made = api.sql("SELECT token_id FROM api_tokens WHERE name = 'made'")[0]["token_id"]
    assert api.call("DELETE", f"/tokens/{made}", "admin").status_code == 204
    assert api.call("DELETE", "/tenants/audited", "platform").status_code == 204

    entries = _walk(api, "/audit", "platform", 50)
    seen = [
        (e["actor"], e["actor_name"], e["tenant_id"], e["action"], e["target"]) for e in entries
    ]
    platform, admin = api.ids["platform"], api.ids["admin"]
    by_platform = api.sql("SELECT token_id FROM api_tokens WHERE name = 'made-by-platform'")[0][
        "token_id"
    ]
    assert seen[::-1] == [
        (platform, "test-platform", "audited", "tenant.create", "audited"),
        (platform, "test-platform", "audited", "tenant.update", "audited"),
        (admin, "test-admin", "acme", "token.create", made),
        (platform, "test-platform", "acme", "token.create", by_platform),
        (admin, "test-admin", "acme", "token.revoke", made),
        (platform, "test-platform", "audited", "tenant.delete", "audited"),
    ]
    assert entries[-1]["details"]["mode"] == "b2b"
    assert entries[-1]["at"]
    assert "token" not in entries[3]["details"]  # never a secret in the log
    # Filters.
    only = _walk(api, "/audit", "admin", 10, action="token.revoke")
    assert [e["target"] for e in only] == [made]
    assert _walk(api, "/audit", "admin", 10, since="2999-01-01T00:00:00+00:00") == []
    _error(api.call("GET", "/audit", query_string={"since": "yesterday"}), 400, "invalid_request")


# --- tenants and tokens ------------------------------------------------------------------------


def test_tenant_lifecycle(api):
    body = {
        "tenant_id": "newco",
        "name": "新公司",
        "mode": "b2b",
        "settings": {"quiet_hours": [22, 8]},
    }
    created = api.call("POST", "/tenants", "platform", json=body)
    assert created.status_code == 201
    tenant = created.get_json()
    assert tenant["lifecycle_model"] == "aisceas"
    assert tenant["timezone"] == "Asia/Shanghai"
    _error(api.call("POST", "/tenants", "platform", json=body), 409, "conflict")
    _error(api.call("GET", "/tenants/nobody", "platform"), 404, "unknown_tenant")
    _error(api.call("PATCH", "/tenants/newco", "platform", json={}), 400, "invalid_request")
    _error(
        api.call("PATCH", "/tenants/newco", "platform", json={"tenant_id": "x"}),
        400,
        "invalid_request",
    )
    patched = api.call("PATCH", "/tenants/newco", "platform", json={"name": "NewCo"}).get_json()
    assert patched["name"] == "NewCo"
    assert patched["settings"] == {"quiet_hours": [22, 8]}

    # A token of the new tenant works until the tenant is deleted.
    made = api.call(
        "POST",
        "/tokens",
        "platform",
        json={"name": "n", "role": "admin"},
        query_string={"tenant": "newco"},
    )
    secret = made.get_json()["token"]
    assert secret.startswith("siyu_adm_")
    assert api.call("GET", "/tokens", secret).status_code == 200
    assert api.call("DELETE", "/tenants/newco", "platform").status_code == 204
    _error(api.call("GET", "/me", secret), 401, "unauthenticated")
    _error(api.call("DELETE", "/tenants/newco", "platform"), 404, "unknown_tenant")


def test_created_token_is_returned_once_and_listed_without_secrets(api):
    made = api.call("POST", "/tokens", "admin", json={"name": "crm", "role": "operator"})
    assert made.status_code == 201
    body = made.get_json()
    assert body["tenant_id"] == "acme"
    assert body["role"] == "operator"
    assert api.call("GET", "/me", body["token"]).get_json()["role"] == "operator"
    listed = api.call("GET", "/tokens").get_json()["items"]
    assert listed[0]["token_id"] == body["token_id"]  # newest first
    for item in listed:
        assert set(item) == {
            "token_id",
            "tenant_id",
            "role",
            "name",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        }
    _error(api.call("POST", "/tokens", json={"name": "x", "role": "root"}), 400, "invalid_request")


# --- errors ------------------------------------------------------------------------------------


def test_error_bodies_have_one_shape(api):
    error = _error(
        api.call("POST", "/tenants", "platform", json={"tenant_id": "Bad Id!", "mode": "b2x"}),
        400,
        "invalid_request",
    )
    fields = error["details"]["json"]
    assert set(fields) == {"tenant_id", "name", "mode"}
    assert fields["name"] == ["Missing data for required field."]
    error = _error(
        api.call(
            "POST",
            "/tenants",
            "platform",
            json={"tenant_id": "ok", "name": "x", "mode": "b2b", "extra": 1},
        ),
        400,
        "invalid_request",
    )
    assert error["details"]["json"]["extra"] == ["Unknown field."]
    _error(
        api.call("POST", "/tenants", "platform", data="{not json", content_type="application/json"),
        400,
        "invalid_request",
    )
    _error(api.call("GET", "/me", None), 401, "unauthenticated")
    _error(api.call("GET", "/tenants", "admin"), 403, "forbidden")
    _error(api.call("GET", "/nowhere"), 404, "not_found")
    # Outside /api/ a browser is asking: the console's page, not JSON (console/views.py).
    outside = api.client.get("/nowhere")
    assert outside.status_code == 404 and outside.mimetype == "text/html"
    response = api.call("PUT", "/me")
    _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    big = {"tenant_id": "big", "name": "x" * (2 * 1024 * 1024), "mode": "b2b"}
    _error(api.call("POST", "/tenants", "platform", json=big), 413, "body_too_large")


def test_an_unexpected_error_is_a_bare_500(api):
    blp = Blueprint("boom", __name__)

    @blp.route("/boom", methods=["GET"])
    @require("viewer", scope="any")
    def boom():
        raise RuntimeError("secret internals at /srv/app.py line 42")

    app = create_api_app("boom", pool=api.pool, blueprints=[blp], token_cache_ttl_s=0)
    response = app.test_client().get(
        "/api/v1/boom", headers={"Authorization": f"Bearer {api.tokens['viewer']}"}
    )
    error = _error(response, 500, "internal")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"] == "internal error"


def test_a_route_without_require_is_refused_at_startup(api):
    blp = Blueprint("open", __name__)

    @blp.route("/open", methods=["GET"])
    def wide_open():
        return {}

    with pytest.raises(RuntimeError, match="has no @require"):
        create_api_app("open", pool=api.pool, blueprints=[blp])


def test_ops_endpoints(api):
    assert api.client.get("/healthz").status_code == 200
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"postgres": "ok"}
    api.call("GET", "/me", "viewer")
    assert b"siyu_api_requests_total" in api.client.get("/metrics").data


def test_tenants_are_seeded_from_the_tenants_file_without_overwriting(api):
    api.call("PATCH", "/tenants/acme", "platform", json={"name": "Edited"})
    from shared.config import Settings
    from siyu.api import create_app

    tenants = {"SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    create_app(Settings.from_env(tenants), pool=api.pool, schema_for=lambda s: api.schema)
    rows = {r["tenant_id"]: r["name"] for r in api.sql("SELECT tenant_id, name FROM tenants")}
    assert rows["acme"] == "Edited"
    assert "bloom" in rows


# --- siyu token create -------------------------------------------------------------------------


def test_siyu_token_create(api, stack, monkeypatch):
    monkeypatch.setenv("SIYU_DATABASE_URL", stack.dsn)
    monkeypatch.setenv("SIYU_OUTREACH_SCHEMA", api.schema)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    runner = CliRunner()

    result = runner.invoke(
        cli, ["token", "create", "--tenant", "bloom", "--role", "operator", "--name", "ops"]
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("siyu_adm_")
    me = api.call("GET", "/me", secret).get_json()
    assert me["tenant_id"] == "bloom"
    assert me["role"] == "operator"
    assert me["name"] == "ops"

    result = runner.invoke(cli, ["token", "create"])  # platform token, default role viewer
    assert result.exit_code == 0, result.output
    me = api.call("GET", "/me", result.output.strip().splitlines()[-1]).get_json()
    assert me["platform"] is True
    assert me["role"] == "viewer"

    result = runner.invoke(cli, ["token", "create", "--tenant", "nobody"])
    assert result.exit_code == 1
    assert "unknown tenant 'nobody'" in result.output
    result = runner.invoke(cli, ["token", "create", "--tenant", "acme", "--role", "root"])
    assert result.exit_code == 2
    assert "'root' is not one of" in result.output
    from shared.config import Settings

    with pytest.raises(SiyuError, match="unknown role 'root'"):
        token_store.main(Settings.from_env(), tenant="acme", role="root", name=None)
    cli_entries = api.sql("SELECT actor, tenant_id, action FROM audit_log WHERE actor = 'cli'")
    assert [(e["tenant_id"], e["action"]) for e in cli_entries] == [
        ("bloom", "token.create"),
        (None, "token.create"),
    ]


def test_siyu_token_create_without_migrations_says_so(stack, monkeypatch, schema):
    monkeypatch.setenv("SIYU_DATABASE_URL", stack.dsn)
    monkeypatch.setenv("SIYU_OUTREACH_SCHEMA", schema)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    result = CliRunner().invoke(cli, ["token", "create", "--tenant", "acme"])
    assert result.exit_code == 1
    assert "run `siyu migrate` first" in result.output
