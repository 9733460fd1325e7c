"""Lifecycle models and the funnel report through the real admin app on the session's Postgres.

State is seeded by the real segment code (``apply_batch``) into a private segment schema; the
app maps ``segment`` to it. Tenants: the demo ones (acme B2B on AISCEAS, bloom B2C on AARRR)
plus ``loyal``, a B2C tenant whose lifecycle_model names a custom model.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import defusedxml.ElementTree as ET
import psycopg
import pytest
from openapi_spec_validator import validate

from services.outreach.admin import BLUEPRINTS as ADMIN
from services.outreach.tokens import create_token, seed_tenants
from services.segment.api_funnel import reports
from services.segment.api_lifecycle import lifecycle
from services.segment.consumer import apply_batch
from services.segment.dry_runs import JOBS
from services.segment.funnel import FIGURES, LEGEND
from services.segment.lifecycle.grammar import builtin_models
from services.segment.tenant_model import model_for
from services.segment.topics import Topics
from shared.api import create_api_app
from shared.api.audit import blp as audit_blp
from shared.config import Settings
from shared.db import create_pool
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.jobs import EXTENSION, Runner
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from tests.integration.api.conftest import finished_job

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
# The funnel over all the history written here (it starts on T0): without `from` a report
# covers the last 90 days only.
ALL_TIME = {"from": "2026-01-01"}


def _today() -> date:
    """Today in Asia/Shanghai, the demo tenants' zone: a period's default end."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


COMPANY = "苏州精工机械有限公司"
LI = {"crm_id": "C-7", "account_key": COMPANY}
WANG = {"crm_id": "C-8", "account_key": COMPANY}
ZHAO = {"crm_id": "C-9", "account_key": COMPANY}

# A custom model in the rules' document format (B2C: follow -> engaged -> buyer).
LOYALTY = {
    "name": "loyalty",
    "title": "Loyalty <tea> & co",
    "stages": [
        {"name": "follower", "title": "Follower", "when": {"event": ["oa.subscribe", "oa.scan"]}},
        {"name": "engaged", "when": {"event": ["oa.click", "biz.content.downloaded"]}},
        {"name": "buyer", "title": "Buyer", "when": {"event": "biz.order.paid"}},
    ],
    "side_stages": [{"name": "dormant"}],
    "regress": [
        {"from": ["buyer"], "to": "dormant", "when": {"days_since_last_event": {"gte": 60}}}
    ],
}


def tp(key: str, type_: str, at: timedelta, tenant: str = "acme", **ids) -> Touchpoint:
    attributes = ids.pop("attributes", {})
    source = {"oa": "wechat_oa", "wecom": "wecom", "biz": "api", "link": "link"}[
        type_.split(".")[0]
    ]
    return Touchpoint(
        event_id=make_event_id(tenant, source, key),
        tenant_id=tenant,
        source=source,
        type=type_,
        occurred_at=T0 + at,
        received_at=T0 + at,
        identity=Identity(**ids),
        attributes=attributes,
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def days(n: float) -> timedelta:
    return timedelta(days=n)


# The B2B committee of tests/integration/segment/test_journeys_e2e.py, one batch per step (days apart):
# the account moves attention (minute 0) -> interest (minute 11) -> comparison (day 3) -> action
# (day 10): it is evaluated at each member's event (docs/domain.md "Event time and replay").
B2B_STEPS = [
    [
        tp("add-li", "wecom.contact.added", minutes(0), external_userid="wmLi",
           staff_userid="zhangwei"),
        tp("crm-li", "biz.contact.updated", minutes(1), **LI, external_userid="wmLi",
           attributes={"name": "李工", "title": "IT经理", "company": COMPANY}),
        tp("crm-wang", "biz.contact.updated", minutes(2), **WANG,
           attributes={"name": "王总", "title": "总经理", "company": COMPANY}),
        tp("crm-zhao", "biz.contact.updated", minutes(3), **ZHAO,
           attributes={"name": "赵经理", "title": "采购经理", "company": COMPANY}),
        tp("dl-1", "biz.content.downloaded", minutes(10), **LI,
           attributes={"title": "白皮书", "format": "whitepaper"}),
        tp("dl-2", "biz.content.downloaded", minutes(11), **LI,
           attributes={"title": "行业报告", "format": "industry_report"}),
    ],
    [tp("web-1", "biz.webinar.attended", days(3), **ZHAO, attributes={"title": "OEE"})],
    [tp("order-1", "biz.order.paid", days(10), **WANG,
        attributes={"amount": 380000, "currency": "CNY"})],
]  # fmt: skip

# B2C (bloom, AARRR): Mei follows, clicks twice, orders; Bo only follows.
B2C = [
    tp("mei-sub", "oa.subscribe", days(0), "bloom", openid="oMei"),
    tp("mei-c1", "oa.click", days(1), "bloom", openid="oMei", attributes={"event_key": "NEW"}),
    tp("mei-c2", "oa.click", days(1) + minutes(5), "bloom", openid="oMei",
       attributes={"event_key": "MENU"}),
    tp("mei-order", "biz.order.paid", days(5), "bloom", openid="oMei",
       attributes={"amount": 88.0, "currency": "CNY"}),
    tp("bo-sub", "oa.subscribe", days(2), "bloom", openid="oBo"),
]  # fmt: skip

# The custom-model tenant: two followers, one clicks.
LOYAL = [
    tp("l-sub-1", "oa.subscribe", days(0), "loyal", openid="oL1"),
    tp("l-sub-2", "oa.subscribe", days(0), "loyal", openid="oL2"),
    tp("l-click", "oa.click", days(2), "loyal", openid="oL1", attributes={"event_key": "X"}),
]


class Lifecycle:
    def __init__(self, stack, schema, tmp_path):
        self.dsn = stack.dsn
        self.seg = f"{schema}_seg"
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(
            DEMO_TENANTS_PATH.read_text(encoding="utf-8")
            + "\n  - id: loyal\n    name: Loyal Tea\n    mode: b2c\n"
            "    lifecycle_model: loyalty\n    timezone: Asia/Shanghai\n",
            encoding="utf-8",
        )
        self.tenants = load_tenants(tenants_file)
        migrate_service(stack.dsn, "outreach", schema=schema)
        migrate_service(stack.dsn, "segment", schema=self.seg)
        self.pool = create_pool(stack.dsn, name="lifecycle-test", schema=schema, max_size=4)
        self.seg_pool = create_pool(stack.dsn, name="lifecycle-seg", schema=self.seg, max_size=2)
        with self.pool.connection() as conn:
            seed_tenants(conn, self.tenants)
        settings = Settings.from_env(
            {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(tenants_file)}
        )
        self.app = create_api_app(
            "siyu.api_test",
            pool=self.pool,
            blueprints=[*ADMIN, audit_blp, lifecycle, reports],
            schema_for=lambda service: {"outreach": schema, "segment": self.seg}.get(
                service, service
            ),
            token_cache_ttl_s=0,
            settings=settings,
        )
        # Dry runs are background jobs: run in the test's thread when polled (finished_job).
        self.app.extensions[EXTENSION] = Runner(
            self.pool, self.app.extensions["siyu.api"].schema_for, {k.name: k for k in JOBS}
        )
        self.client = self.app.test_client()
        self.tokens = {}
        for who, tenant, role in [
            ("viewer", "acme", "viewer"),
            ("operator", "acme", "operator"),
            ("admin", "acme", "admin"),
            ("bloom", "bloom", "admin"),
            ("loyal", "loyal", "admin"),
            ("platform", None, "admin"),
        ]:
            with self.pool.connection() as conn:
                self.tokens[who] = create_token(conn, tenant_id=tenant, role=role, name=who)[1]

    def call(self, method: str, path: str, who: str = "admin", **kwargs):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def ok(self, method: str, path: str, who: str = "admin", status: int = 200, **kwargs):
        response = self.call(method, path, who, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    def dry_run(self, name: str, who: str = "admin", **kwargs) -> dict:
        """POST /lifecycle/<name>/dry-run (202: a job), then the job's result once done."""
        queued = self.call("POST", f"/lifecycle/{name}/dry-run", who, **kwargs)
        assert queued.status_code == 202, queued.get_data(as_text=True)
        job = finished_job(self, queued, who)
        assert job["status"] == "done", job
        return job["result"]

    def apply(self, touchpoints) -> None:
        with self.seg_pool.connection() as conn:
            apply_batch(conn, self.tenants, list(touchpoints), Topics.with_prefix("t."))

    def rows(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.dsn, options=f"-c search_path={self.seg}") as conn:
            return conn.execute(query, params).fetchall()

    def snapshot(self) -> dict[str, list[tuple]]:
        tables = ("contacts", "accounts", "stage_history", "outbox", "segment_members", "events")
        state = {t: self.rows(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}
        state["lifecycle_models"] = self.rows("SELECT * FROM lifecycle_models ORDER BY 1, 2")
        return state


@pytest.fixture
def lc(stack, schema, tmp_path):
    built = Lifecycle(stack, schema, tmp_path)
    yield built
    built.pool.close()
    built.seg_pool.close()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{built.seg}" CASCADE')


@pytest.fixture
def seeded(lc):
    for step in B2B_STEPS:
        lc.apply(step)
    lc.apply(B2C)
    return lc


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


# --- models --------------------------------------------------------------------------------------


def test_openapi_documents_the_routes(lc):
    spec = lc.client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    paths = spec["paths"]
    assert set(paths["/api/v1/lifecycle/{name}"]) >= {"get", "put", "delete"}
    assert "post" in paths["/api/v1/lifecycle/{name}/dry-run"]
    funnel = paths["/api/v1/reports/funnel"]["get"]
    assert {p["name"] for p in funnel["parameters"]} >= {
        "model", "from", "to", "mode", "subject", "segment", "account_id", "format",
    }  # fmt: skip
    assert "image/svg+xml" in funnel["responses"]["200"]["content"]
    assert paths["/api/v1/lifecycle/{name}"]["put"]["x-siyu-role"] == "admin"
    assert "Funnel" in spec["components"]["schemas"]


def test_list_and_get_models(lc):
    body = lc.ok("GET", "/lifecycle", "viewer")
    assert body["active"] == "aisceas"
    assert body["mode"] == "b2b"
    assert [(m["name"], m["builtin"], m["active"]) for m in body["items"]] == [
        ("aarrr", True, False),
        ("aisceas", True, True),
    ]
    aisceas = body["items"][1]
    assert [s["name"] for s in aisceas["stages"]] == list(
        builtin_models("b2b")["aisceas"].stage_names
    )
    assert aisceas["stages"][0]["title"] == "Attention"
    assert aisceas["stages"][0]["when"]["event"][0] == "oa.subscribe"  # the stored document
    assert aisceas["side_stages"] == [{"name": "lapsed", "title": "Lapsed", "flags": ["lapsed"]}]
    assert aisceas["regress"][0]["from"] == ["action", "share"]
    assert aisceas["created_at"] is None

    one = lc.ok("GET", "/lifecycle/aarrr", "viewer")
    assert one["name"] == "aarrr"
    assert not one["active"]
    assert one["stages"][1]["name"] == "activation"
    # bloom is B2C: the B2C variants, AARRR active.
    bloom = lc.ok("GET", "/lifecycle", "bloom")
    assert bloom["active"] == "aarrr"
    assert bloom["mode"] == "b2c"
    assert bloom["items"][1]["description"].startswith("B2C")
    _error(lc.call("GET", "/lifecycle/nope", "viewer"), 404, "not_found")


def test_put_custom_model_create_replace_and_audit(lc):
    created = lc.ok("PUT", "/lifecycle/loyalty", json=LOYALTY, status=201)
    assert created["builtin"] is False
    assert created["active"] is False
    assert [s["name"] for s in created["stages"]] == ["follower", "engaged", "buyer"]
    assert created["stages"][1]["title"] == "Engaged"
    assert created["side_stages"] == [{"name": "dormant", "title": "Dormant", "flags": []}]
    assert created["stages"][2]["when"] == {"event": "biz.order.paid"}

    # Without a name the path names it; replacing answers 200 and moves updated_at.
    changed = {k: v for k, v in LOYALTY.items() if k != "name"} | {"title": "Loyalty v2"}
    replaced = lc.ok("PUT", "/lifecycle/loyalty", json=changed)
    assert replaced["title"] == "Loyalty v2"
    assert replaced["updated_at"] > created["updated_at"]
    assert replaced["created_at"] == created["created_at"]
    listed = lc.ok("GET", "/lifecycle")
    assert [m["name"] for m in listed["items"]] == ["aarrr", "aisceas", "loyalty"]
    assert lc.ok("GET", "/lifecycle/loyalty")["title"] == "Loyalty v2"

    audit = lc.ok("GET", "/audit", query_string={"limit": 10})["items"]
    actions = [(a["action"], a["target"]) for a in audit]
    assert actions[:2] == [("lifecycle.replace", "loyalty"), ("lifecycle.create", "loyalty")]
    assert audit[1]["details"]["stages"] == ["follower", "engaged", "buyer"]


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        (
            {"stages": [{"name": "a", "when": {"event": "oa.nope"}}]},
            {"stages[0].when.event"},
        ),
        (
            {
                "stages": [
                    {"name": "one", "when": {"event": "oa.subscribe"}},
                    {"name": "two", "when": {"any": [{"stage_at_least": "three"}]}},
                ],
                "regress": [{"from": ["one"], "to": "ghost", "when": {"score": {"gte": 1}}}],
            },
            {"stages[1].when.any[0].stage_at_least", "regress[0].to"},
        ),
        ({"stages": []}, {"stages"}),
        ({"title": "no stages"}, {"stages"}),
        ({"stages": [{"name": "a", "when": {"event": "oa.click"}}], "colour": "red"}, {"colour"}),
        ({"name": "other", "stages": [{"name": "a", "when": {"event": "oa.click"}}]}, {"name"}),
    ],
)
def test_put_invalid_model_is_400_with_paths(lc, document, paths):
    error = _error(lc.call("PUT", "/lifecycle/mine", json=document), 400, "invalid_model")
    assert set(error["details"]) == paths, error
    assert all(isinstance(m, list) and m for m in error["details"].values())
    assert lc.rows("SELECT count(*) FROM lifecycle_models")[0][0] == 0


def test_stage_flags_are_stored_shown_and_checked(lc):
    flagged = {**LOYALTY, "stages": [{**LOYALTY["stages"][0], "flags": ["evaluating"]},
                                     *LOYALTY["stages"][1:]],
               "side_stages": [{"name": "dormant", "flags": ["lapsed"]}]}  # fmt: skip
    created = lc.ok("PUT", "/lifecycle/loyalty", json=flagged, status=201)
    assert [s["flags"] for s in created["stages"]] == [["evaluating"], [], []]
    assert created["side_stages"][0]["flags"] == ["lapsed"]
    assert lc.ok("GET", "/lifecycle/aisceas", "viewer")["stages"][3]["flags"] == ["evaluating"]

    bad = {**flagged, "stages": [{**LOYALTY["stages"][0], "flags": ["evaluatng"]}]}
    error = _error(lc.call("PUT", "/lifecycle/loyalty", json=bad), 400, "invalid_model")
    assert error["details"] == {
        "stages[0].flags[0]": ["Unknown stage flag 'evaluatng'. Valid: evaluating, lapsed."]
    }
    funnel_lapsed = {**flagged, "stages": [{**LOYALTY["stages"][0], "flags": ["lapsed"]}]}
    error = _error(lc.call("PUT", "/lifecycle/loyalty", json=funnel_lapsed), 400, "invalid_model")
    assert "marks a side stage" in error["details"]["stages[0].flags[0]"][0]
    assert lc.ok("GET", "/lifecycle/loyalty")["stages"][0]["flags"] == ["evaluating"]  # kept


def test_builtin_names_cannot_be_overwritten_or_deleted(lc):
    for name in ("aarrr", "aisceas"):
        _error(lc.call("PUT", f"/lifecycle/{name}", json=LOYALTY | {"name": name}), 409, "conflict")
        _error(lc.call("DELETE", f"/lifecycle/{name}"), 409, "conflict")
    assert lc.rows("SELECT count(*) FROM lifecycle_models")[0][0] == 0


def test_delete_rules(lc):
    lc.ok("PUT", "/lifecycle/loyalty", json=LOYALTY, status=201)
    assert lc.call("DELETE", "/lifecycle/loyalty").status_code == 204
    _error(lc.call("DELETE", "/lifecycle/loyalty"), 404, "not_found")
    _error(lc.call("GET", "/lifecycle/loyalty"), 404, "not_found")
    actions = [a["action"] for a in lc.ok("GET", "/audit")["items"]]
    assert actions[0] == "lifecycle.delete"
    # The active model of a tenant cannot go (loyal evaluates with its "loyalty").
    lc.ok("PUT", "/lifecycle/loyalty", "loyal", json=LOYALTY, status=201)
    assert lc.ok("GET", "/lifecycle", "loyal")["active"] == "loyalty"
    _error(lc.call("DELETE", "/lifecycle/loyalty", "loyal"), 409, "conflict")


def test_rbac(lc):
    lc.ok("PUT", "/lifecycle/loyalty", json=LOYALTY, status=201)
    for who in ("viewer", "operator"):
        _error(lc.call("PUT", "/lifecycle/loyalty", who, json=LOYALTY), 403, "forbidden")
        _error(lc.call("DELETE", "/lifecycle/loyalty", who), 403, "forbidden")
    _error(lc.call("POST", "/lifecycle/aisceas/dry-run", "viewer", json={}), 403, "forbidden")
    for path in ("/lifecycle", "/lifecycle/loyalty", "/reports/funnel"):
        assert lc.call("GET", path, "viewer").status_code == 200
    assert lc.call("POST", "/lifecycle/aisceas/dry-run", "operator", json={}).status_code == 202
    response = lc.client.get("/api/v1/lifecycle")
    _error(response, 401, "unauthenticated")


def test_cross_tenant_isolation(seeded):
    lc = seeded
    lc.ok("PUT", "/lifecycle/mine", "bloom", json=LOYALTY | {"name": "mine"}, status=201)
    _error(lc.call("GET", "/lifecycle/mine"), 404, "not_found")
    _error(lc.call("DELETE", "/lifecycle/mine"), 404, "not_found")
    assert "mine" not in [m["name"] for m in lc.ok("GET", "/lifecycle")["items"]]
    _error(lc.call("GET", "/lifecycle", query_string={"tenant": "bloom"}), 404, "unknown_tenant")
    # The same name in another tenant is another model.
    lc.ok("PUT", "/lifecycle/mine", json=LOYALTY | {"name": "mine", "title": "acme's"}, status=201)
    assert lc.ok("GET", "/lifecycle/mine", "bloom")["title"] == "Loyalty <tea> & co"
    # Platform admins pick the tenant.
    platform = lc.ok("GET", "/lifecycle/mine", "platform", query_string={"tenant": "bloom"})
    assert platform["title"] == "Loyalty <tea> & co"
    # Reports and dry runs see the tenant's own subjects only.
    bloom = lc.ok("GET", "/reports/funnel", "bloom")
    assert bloom["subject"] == "contacts"
    assert bloom["total"] == 2
    run = lc.dry_run("aarrr", "bloom", json={})
    assert run["evaluated"] == 2
    acme = lc.ok("GET", "/reports/funnel", query_string={"subject": "contacts"})
    assert acme["total"] == lc.rows("SELECT count(*) FROM contacts WHERE tenant_id = 'acme'")[0][0]


# --- a custom model in use -----------------------------------------------------------------------


def test_a_tenant_naming_a_custom_model_is_derived_with_it(lc):
    tenant = lc.tenants.get("loyal")
    with lc.seg_pool.connection() as conn:
        assert model_for(tenant, conn).name == "aarrr"  # not stored yet: the mode's default
    lc.ok("PUT", "/lifecycle/loyalty", "loyal", json=LOYALTY, status=201)
    with lc.seg_pool.connection() as conn:
        model = model_for(tenant, conn)
        assert model.stage_names == ("follower", "engaged", "buyer")
        assert model_for(tenant, conn) is model  # compiled once per (tenant, name, updated_at)
    assert model_for(tenant).name == "aarrr"  # without a connection: the default

    lc.apply(LOYAL)
    stages = dict(lc.rows("SELECT i.value, c.stage FROM contacts c JOIN identities i "
                          "USING (tenant_id, contact_id) WHERE c.tenant_id = 'loyal'"))  # fmt: skip
    assert stages == {"oL1": "engaged", "oL2": "follower"}
    assert {r[0] for r in lc.rows("SELECT DISTINCT model FROM stage_history")} == {"loyalty"}
    report = lc.ok("GET", "/reports/funnel", "loyal", query_string=ALL_TIME)
    assert report["model"] == "loyalty"
    assert report["active"] is True
    assert [(s["name"], s["now"], s["entered"]) for s in report["stages"]] == [
        ("follower", 1, 2),
        ("engaged", 1, 1),
        ("buyer", 0, 0),
    ]
    assert report["stages"][0]["median_days"] == 2.0  # oL1: followed day 0, clicked day 2

    # A replaced model is recompiled (its updated_at moved).
    lc.ok("PUT", "/lifecycle/loyalty", "loyal", json=LOYALTY | {"title": "v2"})
    with lc.seg_pool.connection() as conn:
        assert model_for(tenant, conn).title == "v2"


# --- dry run -------------------------------------------------------------------------------------


def test_dry_run_shows_who_would_move_and_writes_nothing(seeded):
    lc = seeded
    before = lc.snapshot()
    audit_before = lc.ok("GET", "/audit")["items"]

    # The active model, as of day 10: nobody moves (everything was derived at event time).
    quiet = lc.dry_run("aisceas", "operator",
                  json={"now": (T0 + days(10) + minutes(1)).isoformat()})  # fmt: skip
    assert quiet["evaluated"] == 3
    assert quiet["moving"] == 0
    assert quiet["sample"] == []

    # A year later the paying customer has lapsed (180 days without activity).
    later = lc.dry_run("aisceas", "operator",
                  json={"now": (T0 + days(365)).isoformat()})  # fmt: skip
    assert later["model"] == "aisceas"
    pairs = {(m["from"], m["to"]): m["count"] for m in later["moves"]}
    wang = lc.rows("SELECT contact_id FROM contacts WHERE name = '王总'")[0][0]
    assert pairs[("action", "lapsed")] == 1
    sample = {s["contact_id"]: s for s in later["sample"]}
    assert sample[wang]["from"] == "action"
    assert sample[wang]["to"] == "lapsed"
    assert sample[wang]["cause"].startswith("regress action -> lapsed: ")
    assert "days since last event" in sample[wang]["cause"]
    assert later["moving"] == sum(pairs.values()) == len(later["sample"])

    # An unsaved model: the contacts enter its stages from their evidence.
    candidate = {
        "stages": [
            {"name": "engaged", "when": {"event": "biz.content.downloaded", "min": 2}},
            {"name": "buyer", "when": {"event": "biz.order.paid"}},
        ]
    }
    run = lc.dry_run("trial", "operator",
                json={"model": candidate, "now": (T0 + days(11)).isoformat()})  # fmt: skip
    assert run["model"] == "trial"
    assert run["evaluated"] == 3
    pairs = {(m["from"], m["to"]): m["count"] for m in run["moves"]}
    assert pairs == {("interest", "engaged"): 1, ("action", "buyer"): 1}
    by_name = {s["name"]: s for s in run["sample"]}
    assert by_name["李工"]["cause"] == "stage engaged: 2 of biz.content.downloaded"
    assert by_name["王总"]["path"] == ["buyer"]
    assert "赵经理" not in by_name  # a webinar is no evidence in this model

    bad = lc.call("POST", "/lifecycle/trial/dry-run", "operator", json={"model": {"stages": 3}})
    assert set(_error(bad, 400, "invalid_model")["details"]) == {"stages"}
    _error(lc.call("POST", "/lifecycle/nope/dry-run", "operator", json={}), 404, "not_found")
    bad_now = lc.call("POST", "/lifecycle/aisceas/dry-run", "operator", json={"now": "yesterday"})
    _error(bad_now, 400, "invalid_request")

    assert lc.snapshot() == before
    assert lc.ok("GET", "/audit")["items"] == audit_before


def test_dry_run_of_a_stored_custom_model_and_without_body(seeded):
    lc = seeded
    lc.ok("PUT", "/lifecycle/loyalty", "bloom", json=LOYALTY, status=201)
    run = lc.dry_run("loyalty", "bloom")  # no body at all
    pairs = {(m["from"], m["to"]): m["count"] for m in run["moves"]}
    # Mei is dormant by now (wall clock, > 60 days after day 5) once she is a buyer.
    assert pairs[("acquisition", "follower")] == 1
    assert sum(pairs.values()) == 2 == run["moving"]
    mei = next(s for s in run["sample"] if s["from"] == "revenue")
    assert mei["path"][0] == "buyer"


# --- the funnel ----------------------------------------------------------------------------------


def test_funnel_of_the_b2b_account(seeded):
    lc = seeded
    report = lc.ok("GET", "/reports/funnel", "viewer", query_string=ALL_TIME)
    assert report["model"] == "aisceas"
    assert report["active"] is True
    assert report["subject"] == "accounts"
    assert report["total"] == 1
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == [
        "attention", "interest", "search", "comparison", "examination", "action", "share",
    ]  # fmt: skip
    assert stages["action"]["now"] == 1
    assert sum(s["now"] for s in report["stages"]) == 1
    # Skipped stages are not entered, nor converted to (no more "reached or later").
    assert [s["entered"] for s in report["stages"]] == [1, 1, 0, 1, 0, 1, 0]
    assert [c["rate"] for c in report["conversions"]] == [1.0, 0.0, None, 0.0, None, 0.0]
    assert report["conversions"][1] == {
        "from": "interest", "to": "search", "entered": 1, "converted": 0, "rate": 0.0,
    }  # fmt: skip
    # Interest from minute 11 of day 0 to day 3, comparison from day 3 to day 10.
    assert stages["interest"]["median_days"] == pytest.approx(3 - 11 / 1440, abs=1e-3)
    assert stages["comparison"]["median_days"] == 7.0
    assert stages["action"]["median_days"] is None
    assert stages["action"]["stays"] == 0
    assert report["side_stages"][0]["name"] == "lapsed"
    assert report["side_stages"][0]["now"] == 0
    assert report["filters"] == {"segment": None, "account_id": None, "source_channel": None}
    today = _today()
    assert report["period"] == {
        "from": "2026-01-01", "to": today.isoformat(), "start": "2026-01-01T00:00:00+08:00",
        "end": f"{today + timedelta(days=1)}T00:00:00+08:00", "time_zone": "Asia/Shanghai",
    }  # fmt: skip

    # The same through mode=b2b, and the account filter.
    assert (
        lc.ok("GET", "/reports/funnel", query_string={"mode": "b2b", **ALL_TIME})["stages"]
        == (report["stages"])
    )
    account = lc.rows("SELECT account_id FROM accounts")[0][0]
    one = lc.ok("GET", "/reports/funnel", query_string={"account_id": account})
    assert one["total"] == 1
    assert one["filters"]["account_id"] == account
    _error(lc.call("GET", "/reports/funnel", query_string={"account_id": "nope"}), 404, "not_found")


def test_funnel_of_contacts_matches_their_stages(seeded):
    lc = seeded
    report = lc.ok("GET", "/reports/funnel", query_string={"subject": "contacts", **ALL_TIME})
    expected = dict(
        lc.rows("SELECT stage, count(*) FROM contacts WHERE tenant_id = 'acme' GROUP BY 1")
    )
    got = {s["name"]: s["now"] for s in report["stages"] if s["now"]}
    assert got == {k: v for k, v in expected.items() if k is not None}
    assert report["unstaged"] == expected.get(None, 0)
    assert report["total"] == sum(expected.values())
    # Entered follows the history (and the current stage): each contact once per stage.
    entries = lc.rows(
        "SELECT subject_id, to_stage FROM stage_history WHERE tenant_id = 'acme' "
        "AND subject_kind = 'contact' AND model = 'aisceas' UNION "
        "SELECT contact_id, stage FROM contacts WHERE tenant_id = 'acme' AND stage IS NOT NULL"
    )
    order = list(builtin_models("b2b")["aisceas"].stage_names)
    assert [s["entered"] for s in report["stages"]] == [
        sum(1 for _, stage in entries if stage == name) for name in order
    ]


def test_funnel_of_b2c_contacts_with_conversion(seeded):
    lc = seeded
    report = lc.ok("GET", "/reports/funnel", "bloom", query_string=ALL_TIME)
    assert report["model"] == "aarrr"
    assert report["subject"] == "contacts"
    stages = {s["name"]: s for s in report["stages"]}
    # Nobody was ever in retention (an order goes straight to revenue): 0 entered, no rate,
    # and activation did not convert to it (the report once said "1 reached, 100%").
    assert [s["entered"] for s in report["stages"]] == [2, 1, 0, 1, 0]
    assert [c["rate"] for c in report["conversions"]] == [0.5, 0.0, None, 0.0]
    assert stages["acquisition"]["now"] == 1
    assert stages["revenue"]["now"] == 1
    # Mei: acquisition day 0 -> activation day 1 (second click) -> revenue day 5.
    assert stages["acquisition"]["median_days"] == pytest.approx(1 + 5 / 1440, abs=1e-3)
    assert stages["activation"]["median_days"] == pytest.approx(4 - 5 / 1440, abs=1e-3)
    # Accounts of a B2C tenant: there are none.
    accounts = lc.ok("GET", "/reports/funnel", "bloom", query_string={"subject": "accounts"})
    assert accounts["total"] == 0
    assert accounts["stages"][0]["entered"] == 0


def test_funnel_filters(seeded):
    lc = seeded

    def entered(who="bloom", **query):
        body = lc.ok("GET", "/reports/funnel", who, query_string=query)
        return [s["entered"] for s in body["stages"]], body

    # Days are the tenant's (Asia/Shanghai); T0 is 2026-01-05 10:00 there.
    assert entered(**{"from": "2026-01-05"})[0] == [2, 1, 0, 1, 0]
    # Bo followed on the 7th; Mei was activated on the 6th (her acquisition was before).
    assert entered(**{"from": "2026-01-06", "to": "2026-01-08"})[0] == [1, 1, 0, 0, 0]
    assert entered(**{"from": "2026-01-09"})[0] == [0, 0, 0, 1, 0]  # Mei's order on the 10th
    assert entered(to="2026-01-04")[0] == [0, 0, 0, 0, 0]
    _, body = entered(**{"from": "2026-01-06", "to": "2026-01-08"})
    assert body["filters"] == {"segment": None, "account_id": None, "source_channel": None}
    assert body["period"] == {
        "from": "2026-01-06", "to": "2026-01-08", "start": "2026-01-06T00:00:00+08:00",
        "end": "2026-01-09T00:00:00+08:00", "time_zone": "Asia/Shanghai",
    }  # fmt: skip

    # A segment: contacts in it (B2B accounts: with a member in it).
    with lc.seg_pool.connection() as conn:
        conn.execute(
            "INSERT INTO segments (tenant_id, segment_id, name, rule) VALUES "
            "('bloom', 'buyers', 'Buyers', '{}'), ('acme', 'tech', 'Tech', '{}')"
        )
        conn.execute(
            "INSERT INTO segment_members (tenant_id, segment_id, contact_id, since) "
            "SELECT tenant_id, 'buyers', contact_id, now() FROM contacts "
            "WHERE tenant_id = 'bloom' AND stage = 'revenue'"
        )
    assert entered(segment="buyers", **ALL_TIME)[0] == [1, 1, 0, 1, 0]
    assert lc.ok("GET", "/reports/funnel", query_string={"segment": "tech"})["total"] == 0
    _error(lc.call("GET", "/reports/funnel", query_string={"segment": "nope"}), 404, "not_found")

    for bad in ({"from": "2026-02-01", "to": "2026-01-01"}, {"mode": "b2b", "subject":
                "contacts"}, {"format": "pdf"}, {"mode": "b2x"}, {"from": "soon"}):  # fmt: skip
        _error(lc.call("GET", "/reports/funnel", query_string=bad), 400, "invalid_request")
    _error(lc.call("GET", "/reports/funnel", query_string={"model": "nope"}), 404, "not_found")


def test_funnel_figures_are_documented_in_openapi(lc):
    schemas = lc.client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    stage = schemas["FunnelStage"]["properties"]
    for figure in ("entered", "now", "conversion"):
        assert stage[figure]["description"] == FIGURES[figure]
    assert "later entered the next stage" in stage["conversion"]["description"]
    assert "reached" not in stage
    funnel = schemas["Funnel"]["properties"]
    assert {"figures", "weeks", "period", "generated_at"} <= set(funnel)
    assert "time zone" in funnel["generated_at"]["description"]


def test_funnel_times_and_weeks_in_the_tenants_zone(seeded):
    lc = seeded
    body = lc.ok("GET", "/reports/funnel", "bloom", query_string={"from": "2026-01-05",
                 "to": "2026-01-11"})  # fmt: skip
    assert body["figures"] == FIGURES
    assert body["generated_at"].endswith("+08:00")
    assert body["period"]["start"] == "2026-01-05T00:00:00+08:00"
    assert body["period"]["end"] == "2026-01-12T00:00:00+08:00"
    # Monday 5 to Sunday 11 January: one ISO week, Shanghai's.
    assert body["weeks"] == [
        {
            "week": "2026-W02",
            "start": "2026-01-05T00:00:00+08:00",
            "end": "2026-01-12T00:00:00+08:00",
            "entered": {"acquisition": 2, "activation": 1, "retention": 0, "revenue": 1,
                        "referral": 0, "lapsed": 0},
        }
    ]  # fmt: skip


def test_funnel_bad_period_is_a_clear_400(seeded):
    lc = seeded
    backwards = lc.call("GET", "/reports/funnel", query_string={"from": "2026-02-01",
                        "to": "2026-01-01"})  # fmt: skip
    error = _error(backwards, 400, "invalid_request")
    assert "from (2026-02-01) is after to (2026-01-01)" in str(error)
    too_long = lc.call("GET", "/reports/funnel", query_string={"from": "2000-01-01",
                       "to": "2026-01-01"})  # fmt: skip
    assert "longer than" in str(_error(too_long, 400, "invalid_request"))
    # Without to, the period ends today: the same checks.
    since_2000 = lc.call("GET", "/reports/funnel", query_string={"from": "2000-01-01"})
    assert "longer than 3660 days" in str(_error(since_2000, 400, "invalid_request"))
    future = lc.call("GET", "/reports/funnel", query_string={"from": "2999-01-01"})
    assert "is after to" in str(_error(future, 400, "invalid_request"))
    # The last days a date can name are refused, not a 500 (weeks end past `to`).
    for edge in ({"to": "9999-12-31"}, {"from": "9999-12-30", "to": "9999-12-31"}):
        refused = _error(lc.call("GET", "/reports/funnel", query_string=edge), 400,
                         "invalid_request")  # fmt: skip
        assert "must be between 1970-01-01 and 9998-12-31" in str(refused)
    longest = (_today() - timedelta(days=3659)).isoformat()
    assert lc.ok("GET", "/reports/funnel", query_string={"from": longest})["total"] == 1


def test_funnel_default_period_is_the_last_90_days(seeded):
    lc = seeded
    today = _today()
    body = lc.ok("GET", "/reports/funnel", "bloom")
    assert body["period"] == {
        "from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat(),
        "start": f"{today - timedelta(days=89)}T00:00:00+08:00",
        "end": f"{today + timedelta(days=1)}T00:00:00+08:00", "time_zone": "Asia/Shanghai",
    }  # fmt: skip
    assert body["total"] == 2  # the scope is every contact; the figures are the period's
    if today > date(2026, 4, 5):  # the history (January 2026) is older than 90 days
        assert [s["entered"] for s in body["stages"]] == [0, 0, 0, 0, 0]
        assert [s["now"] for s in body["stages"]] == [0, 0, 0, 0, 0]
    # The 90 days end at `to` when it is given: 2025-11-03 to 2026-01-31 holds it all.
    body = lc.ok("GET", "/reports/funnel", "bloom", query_string={"to": "2026-01-31"})
    assert (body["period"]["from"], body["period"]["to"]) == ("2025-11-03", "2026-01-31")
    assert [s["entered"] for s in body["stages"]] == [2, 1, 0, 1, 0]


def test_funnel_of_another_model_reads_its_history(seeded):
    lc = seeded
    # acme derives with AISCEAS: no AARRR history, so an empty AARRR funnel.
    body = lc.ok("GET", "/reports/funnel", query_string={"model": "aarrr"})
    assert body["active"] is False
    assert body["total"] == 0
    assert body["stages"][0]["name"] == "acquisition"


def test_funnel_svg(seeded):
    lc = seeded
    response = lc.call("GET", "/reports/funnel", "viewer", query_string={"format": "svg",
                       **ALL_TIME})  # fmt: skip
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.get_data())
    ns = "{http://www.w3.org/2000/svg}"
    assert [g.get("data-stage") for g in root.iter(f"{ns}g") if g.get("class") == "stage"] == [
        *builtin_models("b2b")["aisceas"].stage_names, "lapsed",
    ]  # fmt: skip
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "Comparison" in texts
    assert "进入 1 · 当前 1" in texts
    assert "\u2193 转化 0.0%" in texts
    # The legend says what the figures mean (in Chinese, for ops staff), in a CJK font.
    legend = next(g for g in root.iter(f"{ns}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{ns}text")][1:] == list(LEGEND)
    assert "Noto Sans CJK SC" in root.get("font-family")
    assert any(f"统计期：2026-01-01 至 {_today()}（Asia/Shanghai）" in (t or "") for t in texts)

    lc.ok("PUT", "/lifecycle/loyalty", "loyal", json=LOYALTY, status=201)
    lc.apply(LOYAL)
    svg = lc.call("GET", "/reports/funnel", "loyal", query_string={"format": "svg"})
    root = ET.fromstring(svg.get_data())
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "Loyalty <tea> & co 漏斗" in texts  # escaped in the markup, intact once parsed
    assert b"<tea>" not in svg.get_data()
