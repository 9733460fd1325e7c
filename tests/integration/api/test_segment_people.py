"""The segment people routes (contacts, accounts, segments) through the real admin API app.

The segment state is made by the real segment code: touchpoints applied with the consumer's
``apply_batch`` into a private segment schema (stage changes and profiles stay in its outbox), and
segments defined with ``save_segment`` before the events, so the consumer fills their members.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest
from openapi_spec_validator import validate

from services.segment.consumer import apply_batch
from services.segment.identity import contact_id_for
from services.segment.recompute import main as recompute_main
from services.segment.segments import save_segment
from services.segment.topics import Topics
from shared.config import Settings
from shared.db import create_pool
from shared.jobs import EXTENSION as JOBS
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from shared.vocabulary import BUYING_ROLES
from siyu.api import create_app
from tests.integration.api.conftest import Api, issue_tokens
from tests.integration.segment.test_consumer import JOURNEY, tp
from tests.kafka_helpers import wait_until

TENANTS = load_tenants(DEMO_TENANTS_PATH)
JINGGONG = "苏州精工机械有限公司"
YUNSHAN = "杭州云杉科技有限公司"
TECH_EXAMINING = {
    "all": [{"attribute": "role", "equals": "technical"}, {"stage_at_least": "examination"}]
}
DECIDERS = {"attribute": "role", "equals": "decision_maker"}

# Beyond the JOURNEY of test_consumer (李工 seen through four ids, 王总, a stranger wmNew):
EXTRA = [
    # A third member of the same company whose title names no buying role ("unknown").
    tp(8, "biz.contact.updated", minutes=60, crm_id="C-9", account_key=JINGGONG,
       attributes={"name": "赵六", "title": "经理", "company": JINGGONG}),
    # Company facts from the CRM (no person: the account only).
    tp(9, "biz.account.updated", minutes=12, account_key=JINGGONG,
       attributes={"industry": "machinery", "size": "200-500", "company": JINGGONG}),
    # Menu clicks by 李工, two per minute: the timeline orders ties by event id.
    *[tp(10 + i, "oa.click", minutes=70 + i // 2, openid="oLi",
         attributes={"event_key": f"K{i}"}) for i in range(9)],
    # Another company: a finance contact and an overdue invoice (payment risk).
    tp(30, "biz.contact.updated", minutes=5, crm_id="C-30", account_key=YUNSHAN,
       attributes={"name": "陈会计", "title": "财务经理", "company": YUNSHAN}),
    tp(31, "biz.invoice.overdue", minutes=15, crm_id="C-30", account_key=YUNSHAN,
       attributes={"invoice_id": "INV-1", "amount": 50000, "currency": "CNY"}),
]  # fmt: skip


def _chain() -> list:
    """周链 seen as an openid, then with a unionid, then with a CRM id, each hashing smaller than
    the one before: the contact is re-keyed twice (openid -> unionid -> crm_id contact)."""
    for i in range(1000):
        a, b, c = f"oZhou{i}", f"uZhou{i}", f"C-Z{i}"
        if (
            contact_id_for("acme", "openid", a)
            > contact_id_for("acme", "unionid", b)
            > (contact_id_for("acme", "crm_id", c))
        ):
            return [
                tp(50, "oa.subscribe", minutes=1, openid=a),
                tp(51, "oa.click", minutes=2, openid=a, unionid=b),
                tp(52, "biz.contact.updated", minutes=3, unionid=b, crm_id=c,
                   attributes={"name": "周链", "title": "采购经理"}),
            ]  # fmt: skip
    raise AssertionError("no chain found")


CHAIN = _chain()

BLOOM = [
    tp(40, "oa.subscribe", tenant="bloom", openid="oHua"),
    tp(41, "biz.contact.updated", minutes=3, tenant="bloom", openid="oHua", crm_id="B-1",
       attributes={"name": "小花"}),
    tp(42, "biz.order.paid", minutes=30, tenant="bloom", openid="oHua",
       attributes={"amount": 88, "currency": "CNY"}),
]  # fmt: skip


class People(Api):
    """The API plus the private segment schema it reads."""

    segment_schema: str = ""
    settings: Settings | None = None

    def seg(self, query: str, params=()) -> list[dict]:
        with psycopg.connect(
            self.settings.database_url,
            options=f"-c search_path={self.segment_schema}",
            row_factory=psycopg.rows.dict_row,
        ) as conn:
            return conn.execute(query, params).fetchall()

    def contact(self, name: str, tenant: str = "acme") -> str:
        (row,) = self.seg(
            "SELECT contact_id FROM contacts WHERE tenant_id = %s AND name = %s", (tenant, name)
        )
        return row["contact_id"]


def seed(dsn: str, segment_schema: str) -> None:
    pool = create_pool(dsn, name="segment-seed", schema=segment_schema, max_size=1)
    try:
        with pool.connection() as conn:
            save_segment(conn, "acme", "tech-examining", "Technical, examining", TECH_EXAMINING)
            save_segment(conn, "acme", "deciders", "Decision makers", DECIDERS, "Bosses")
            save_segment(conn, "bloom", "buyers", "Buyers", {"event": "biz.order.paid"})
        topics = Topics.with_prefix("t.")
        for batch in (JOURNEY, EXTRA[:3], EXTRA[3:], CHAIN[:2], CHAIN[2:], BLOOM):
            with pool.connection() as conn:
                apply_batch(conn, TENANTS, batch, topics)
        # The journeys happened in November 2026; the API serves scores decayed to the time of
        # the response. Read as derived just now, the filters' thresholds below hold whatever the
        # date the suite runs (the decay itself: test_scores_are_served_decayed_...).
        with pool.connection() as conn:
            conn.execute("UPDATE contacts SET score_at = now()")
            conn.execute("UPDATE accounts SET refreshed_at = now()")
    finally:
        pool.close()


@pytest.fixture
def people(stack, schema):
    segment_schema = f"{schema}_seg"
    migrate_service(stack.dsn, "outreach", schema=schema)
    migrate_service(stack.dsn, "segment", schema=segment_schema)
    seed(stack.dsn, segment_schema)
    pool = create_pool(stack.dsn, name="api-test", schema=schema, max_size=4, timeout=3)
    settings = Settings.from_env(
        {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    )
    schemas = {"outreach": schema, "segment": segment_schema}
    app = create_app(
        settings,
        pool=pool,
        schema_for=lambda service: schemas.get(service, service),
        token_cache_ttl_s=0,
    )
    built = People(app.test_client(), app, pool, schema)
    built.segment_schema, built.settings = segment_schema, settings
    issue_tokens(built)
    yield built
    # The app's job threads first: a segment build still running would hold the schema's locks
    # while it is dropped (a deadlock).
    app.extensions[JOBS].stop()
    pool.close()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{segment_schema}" CASCADE')


# --- helpers -------------------------------------------------------------------------------------


def _ok(response, status: int = 200):
    assert response.status_code == status, response.get_json()
    return response.get_json()


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


def _walk(api, path: str, who: str = "viewer", limit: int = 50, **query) -> list[dict]:
    items, cursor = [], None
    for _ in range(200):
        args = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        body = _ok(api.call("GET", path, who, query_string=args))
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


def _recompute_settings(api, kafka) -> Settings:
    """Settings of `siyu segment recompute` (it publishes profiles: private topics)."""
    ensure_topics(kafka)
    return Settings(
        database_url=api.settings.database_url, kafka=kafka, tenants_path=DEMO_TENANTS_PATH
    )


def _built(api, segment_id: str) -> dict:
    """The segment once its background build is over (the app's job threads run it)."""

    def done():
        got = _ok(api.call("GET", f"/segments/{segment_id}", "viewer"))
        return got if got["status"] != "building" else None

    return wait_until(done, timeout=30, interval=0.02, message=f"segment {segment_id} to build")


def _names(api, who: str = "viewer", **query) -> set:
    return {c["name"] for c in _walk(api, "/contacts", who, **query)}


# --- contacts ------------------------------------------------------------------------------------


def test_contact_search_and_filters(people):
    everyone = _walk(people, "/contacts")
    assert [c["contact_id"] for c in everyone] == sorted(c["contact_id"] for c in everyone)
    assert _names(people) == {"李工", "王总", "赵六", "陈会计", "周链", None}  # None: wmNew
    assert set(everyone[0]) == {
        "contact_id", "name", "title", "corp_name", "role", "stage", "score", "account_id",
        "last_event_at", "last_active_at",
    }  # fmt: skip
    for limit in (1, 2, 5):  # every page size walks everyone once
        walked = [c["contact_id"] for c in _walk(people, "/contacts", limit=limit)]
        assert walked == [c["contact_id"] for c in everyone]

    # q: name, title, company (substrings, any case), or an identity value exactly.
    assert _names(people, q="李") == {"李工"}
    assert _names(people, q="it经理") == {"李工"}
    assert _names(people, q="精工机械") == {"李工", "王总", "赵六"}
    assert _names(people, q="wmLi") == {"李工"}
    assert _names(people, q="C-8") == {"王总"}
    assert _names(people, q="wmL") == set()  # identities match exactly
    assert _names(people, q="%") == set()  # LIKE wildcards are literal
    assert _names(people, q="_") == set()
    # Filters, alone and combined.
    assert _names(people, stage="examination") == {"李工"}
    assert _names(people, role="technical") == {"李工"}
    assert _names(people, role="procurement") == {"周链"}
    assert _names(people, role="unknown") == {"赵六", None}
    li = people.contact("李工")
    jinggong = _ok(people.call("GET", f"/contacts/{li}", "viewer"))["account_id"]
    assert _names(people, account_id=jinggong) == {"李工", "王总", "赵六"}
    assert _names(people, account_id=jinggong, role="decision_maker") == {"王总"}
    assert _names(people, segment="tech-examining") == {"李工"}
    assert _names(people, segment="deciders") == {"王总"}
    unknown = people.call("GET", "/contacts", "viewer", query_string={"segment": "nope"})
    assert (
        unknown.status_code == 400
    )  # a segment the tenant lacks (tests/integration/api/test_unknown_names)
    assert _names(people, min_score=10) == {"李工"}
    assert _names(people, min_score=2.5) == {"李工", "周链", None}
    assert _names(people, min_score=0) == _names(people)
    assert _names(people, q="精工", min_score=2.5, stage="examination") == {"李工"}
    assert _names(people, behaviour="new") == set()  # B2B contacts are grouped by role
    assert _names(people, "bloom", behaviour="new") == {"小花"}
    assert _names(people, "bloom", behaviour="loyal") == set()

    error = _error(
        people.call("GET", "/contacts", "viewer", query_string={"role": "boss"}),
        400,
        "invalid_request",
    )
    assert "role" in error["details"]["query"]
    _error(
        people.call("GET", "/contacts", "viewer", query_string={"min_score": "high"}),
        400,
        "invalid_request",
    )
    _error(
        people.call("GET", "/contacts", "viewer", query_string={"cursor": "WzEsMl0"}),
        400,
        "invalid_cursor",
    )


def test_contact_detail(people):
    li = people.contact("李工")
    body = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert body["contact_id"] == li
    assert body["name"] == "李工"
    assert body["title"] == "IT经理"
    assert [(i["kind"], i["value"]) for i in body["identities"]] == [
        ("crm_id", "C-7"),
        ("external_userid", "wmLi"),
        ("openid", "oLi"),
        ("unionid", "uLi"),
    ]
    assert all(i["first_seen"] for i in body["identities"])
    assert (body["role"], body["role_source"]) == ("technical", "title")
    assert 0 < body["role_confidence"] <= 1
    assert body["stage"] == "examination"
    assert body["stage_since"].startswith("2026-11-02T09:30")
    assert body["score"] > 0
    assert body["events_count"] == 15
    assert isinstance(body["features"], dict)
    assert "recency_days" in body["features"]
    assert body["behaviour"] == []
    assert body["tags"] == []
    assert body["segments"] == [
        {
            "segment_id": "tech-examining",
            "name": "Technical, examining",
            "since": body["segments"][0]["since"],
        }
    ]
    account = body["account"]
    assert account["name"] == JINGGONG
    assert account["members"] == 3
    assert account["roles_engaged"] == ["technical"]  # 王总: a CRM record, no own action
    assert [f["flag"] for f in account["risk_flags"]] == ["new"]
    history = body["stage_history"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        (None, "attention"),
        ("attention", "examination"),
    ]
    assert [h["changed_at"] for h in history] == sorted(h["changed_at"] for h in history)
    assert "biz.trial.started" in history[-1]["cause"]
    assert history[-1]["event_id"]
    assert history[-1]["model"] == "aisceas"
    assert history[-1]["actor"] is None

    stranger = _ok(people.call("GET", "/contacts", "viewer", query_string={"q": "wmNew"}))
    (new,) = stranger["items"]
    detail = _ok(people.call("GET", f"/contacts/{new['contact_id']}", "viewer"))
    assert detail["account"] is None
    assert detail["segments"] == []
    assert detail["role"] is None
    assert detail["identities"][0]["kind"] == "external_userid"

    _error(people.call("GET", "/contacts/c_nobody", "viewer"), 404, "not_found")


def test_scores_are_served_decayed_to_the_time_of_the_response(people):
    """Scores decay between derivations too (docs/domain.md "Scoring"): 60 days of a 30-day
    half-life leave a quarter, in the detail, the list, the filter and the account."""
    li = people.contact("李工")
    with psycopg.connect(people.settings.database_url,
                         options=f"-c search_path={people.segment_schema}") as conn:  # fmt: skip
        conn.execute(
            "UPDATE contacts SET score = 40, score_at = now() - interval '60 days' "
            "WHERE contact_id = %s",
            (li,),
        )
        conn.execute(
            "UPDATE accounts SET score = 8, refreshed_at = now() - interval '30 days' "
            "WHERE account_id = (SELECT account_id FROM contacts WHERE contact_id = %s)",
            (li,),
        )
    body = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert body["score"] == pytest.approx(10.0, abs=0.01)
    assert body["account"]["score"] == pytest.approx(4.0, abs=0.01)
    (listed,) = [c for c in _walk(people, "/contacts") if c["contact_id"] == li]
    assert listed["score"] == pytest.approx(10.0, abs=0.01)
    assert "李工" in _names(people, min_score=9.9)
    assert "李工" not in _names(people, min_score=10.1)
    account = _ok(people.call("GET", f"/accounts/{body['account_id']}", "viewer"))
    assert account["score"] == pytest.approx(4.0, abs=0.01)
    (row,) = [a for a in _walk(people, "/accounts") if a["account_id"] == body["account_id"]]
    assert row["score"] == pytest.approx(4.0, abs=0.01)
    members = [m for ms in account["members_by_role"].values() for m in ms]
    assert [m["score"] for m in members if m["contact_id"] == li] == [pytest.approx(10.0, abs=0.01)]
    # A score derived long ago (an event dated 1900) decays to nothing, without an error.
    wang = people.contact("王总")
    with psycopg.connect(people.settings.database_url,
                         options=f"-c search_path={people.segment_schema}") as conn:  # fmt: skip
        conn.execute(
            "UPDATE contacts SET score = 50, score_at = '1900-01-01T00:00:00Z' "
            "WHERE contact_id = %s",
            (wang,),
        )
    assert _ok(people.call("GET", f"/contacts/{wang}", "viewer"))["score"] == pytest.approx(0.0)
    assert "王总" in _names(people, min_score=0)
    assert "王总" not in _names(people, min_score=0.001)


def test_a_merged_contact_is_404_with_where_it_went(people):
    li = people.contact("李工")
    merged = people.seg(
        "SELECT from_contact FROM contact_merges WHERE tenant_id = 'acme' AND into_contact = %s",
        (li,),
    )
    assert merged
    for row in merged:
        for path in (
            f"/contacts/{row['from_contact']}",
            f"/contacts/{row['from_contact']}/timeline",
        ):
            error = _error(people.call("GET", path, "viewer"), 404, "not_found")
            assert error["details"] == {"merged_into": li}
    # Re-keyed twice (openid -> unionid -> crm_id contact): the answer is the live contact.
    zhou = people.contact("周链")
    first = contact_id_for("acme", "openid", CHAIN[0].identity.openid)
    second = contact_id_for("acme", "unionid", CHAIN[1].identity.unionid)
    assert zhou == contact_id_for("acme", "crm_id", CHAIN[2].identity.crm_id)
    assert people.seg(
        "SELECT from_contact, into_contact FROM contact_merges WHERE from_contact = ANY(%s) "
        "ORDER BY merged_at",
        ([first, second],),
    ) == [
        {"from_contact": first, "into_contact": second},
        {"from_contact": second, "into_contact": zhou},
    ]
    for gone in (first, second):
        error = _error(people.call("GET", f"/contacts/{gone}", "viewer"), 404, "not_found")
        assert error["details"] == {"merged_into": zhou}
    assert _ok(people.call("GET", f"/contacts/{zhou}", "viewer"))["role"] == "procurement"
    # Not for another tenant's token.
    error = _error(people.call("GET", f"/contacts/{first}", "bloom"), 404, "not_found")
    assert error["details"] == {}


def test_timeline_pages_walk_every_event_once_newest_first(people):
    li = people.contact("李工")
    expected = people.seg(
        "SELECT event_id, type FROM events WHERE tenant_id = 'acme' AND contact_id = %s "
        "ORDER BY occurred_at DESC, event_id DESC",
        (li,),
    )
    assert len(expected) == 15
    for limit in (1, 2, 4, 15, 50):
        events = _walk(people, f"/contacts/{li}/timeline", limit=limit)
        assert [e["event_id"] for e in events] == [e["event_id"] for e in expected]
    events = _walk(people, f"/contacts/{li}/timeline")
    assert set(events[0]) == {"event_id", "type", "occurred_at", "attributes"}
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert times == sorted(times, reverse=True)
    assert events[0]["type"] == "oa.click"
    assert events[0]["attributes"]["event_key"] == "K8"
    assert events[-1]["type"] == "oa.subscribe"
    joined = next(e for e in events if e["type"] == "wecom.chat.member_joined")
    assert joined["attributes"]["chat_id"] == "wrGroup"
    # Two clicks share each minute: the pair is split across pages and still walked once.
    assert times.count(times[1]) == 2
    for cursor in ("WyJ4IiwieSJd", "WyJub3QgYSB0aW1lIiwiZSJd", "WzEsMl0"):
        _error(
            people.call(
                "GET", f"/contacts/{li}/timeline", "viewer", query_string={"cursor": cursor}
            ),
            400,
            "invalid_cursor",
        )
    _error(people.call("GET", "/contacts/c_nobody/timeline", "viewer"), 404, "not_found")


# --- accounts ------------------------------------------------------------------------------------


def test_accounts_list_and_filters(people):
    listed = _walk(people, "/accounts")
    by_name = {a["name"]: a for a in listed}
    assert set(by_name) == {JINGGONG, YUNSHAN}
    assert [a["account_id"] for a in listed] == sorted(a["account_id"] for a in listed)
    jinggong = by_name[JINGGONG]
    assert set(jinggong) == {
        "account_id", "name", "stage", "score", "members", "roles_engaged", "risk_flags",
    }  # fmt: skip
    assert jinggong["members"] == 3
    assert jinggong["stage"] == "examination"
    assert jinggong["roles_engaged"] == ["technical"]  # 王总: a CRM record, no own action
    assert [a["account_id"] for a in _walk(people, "/accounts", limit=1)] == [
        a["account_id"] for a in listed
    ]

    def names(**query) -> set:
        return {a["name"] for a in _walk(people, "/accounts", **query)}

    assert names(risk_flag="payment_risk") == {YUNSHAN}
    assert names(risk_flag="new") == {JINGGONG, YUNSHAN}
    assert names(risk_flag="churn_risk") == set()
    assert names(stage="examination") == {JINGGONG}
    assert names(q="云杉") == {YUNSHAN}
    assert names(q="精工", risk_flag="payment_risk") == set()
    _error(
        people.call("GET", "/accounts", "viewer", query_string={"risk_flag": "doomed"}),
        400,
        "invalid_request",
    )


def test_account_detail_members_by_role_and_coverage(people):
    (jinggong,) = _walk(people, "/accounts", q="精工")
    body = _ok(people.call("GET", f"/accounts/{jinggong['account_id']}", "viewer"))
    assert body["name"] == JINGGONG
    assert body["members"] == 3
    groups = body["members_by_role"]
    assert set(groups) == {"decision_maker", "technical", "unknown"}
    assert [m["name"] for m in groups["technical"]] == ["李工"]
    assert [m["name"] for m in groups["decision_maker"]] == ["王总"]
    assert [m["name"] for m in groups["unknown"]] == ["赵六"]
    member = groups["technical"][0]
    assert set(member) == {
        "contact_id", "name", "title", "role_confidence", "stage", "score", "last_event_at",
        "last_active_at",
    }  # fmt: skip
    assert member["title"] == "IT经理"
    assert member["stage"] == "examination"
    coverage = body["coverage"]
    # A CRM record is staff's doing, not 王总's engagement (docs/domain.md "Activity").
    assert coverage["engaged"] == ["technical"]
    assert coverage["missing"] == [r for r in BUYING_ROLES if r not in coverage["engaged"]]
    assert coverage["ratio"] == pytest.approx(1 / len(BUYING_ROLES))
    assert body["attributes"] == {"industry": "machinery", "size": "200-500"}
    assert [(f["flag"], bool(f["reason"])) for f in body["risk_flags"]] == [("new", True)]
    # Evaluated at each member's event: attention at the first, examination at the trial.
    assert [(h["from_stage"], h["to_stage"]) for h in body["stage_history"]] == [
        (None, "attention"),
        ("attention", "examination"),
    ]
    assert body["stage"] == "examination"
    assert body["stage_since"]
    assert body["created_at"]

    (yunshan,) = _walk(people, "/accounts", q="云杉")
    body = _ok(people.call("GET", f"/accounts/{yunshan['account_id']}", "viewer"))
    assert [m["name"] for m in body["members_by_role"]["finance"]] == ["陈会计"]
    payment = body["risk_flags"][0]
    assert payment["flag"] == "payment_risk"
    assert "50,000 CNY" in payment["reason"]
    assert payment["since"].startswith("2026-11-02T09:15")
    assert body["coverage"]["engaged"] == []  # 陈会计 is a CRM record and an invoice: no action
    assert body["stage_history"] == []

    _error(people.call("GET", "/accounts/nobody", "viewer"), 404, "not_found")


# --- segments ------------------------------------------------------------------------------------


def test_segments_crud_validation_and_audit(people, kafka):
    listed = _walk(people, "/segments")
    assert [s["segment_id"] for s in listed] == ["deciders", "tech-examining"]
    assert {s["segment_id"]: s["members_count"] for s in listed} == {
        "deciders": 1,
        "tech-examining": 1,
    }
    assert listed[0]["description"] == "Bosses"
    assert listed[0]["rule"] == DECIDERS

    body = {
        "segment_id": "finance-people",
        "name": "Finance",
        "description": "Who signs off budgets",
        "rule": {"attribute": "role", "equals": "finance"},
    }
    created = _ok(people.call("POST", "/segments", "admin", json=body), 201)
    assert {k: created[k] for k in body} == body
    assert created["members_count"] == 0
    assert created["created_at"]
    assert created["updated_at"]
    _error(people.call("POST", "/segments", "admin", json=body), 409, "conflict")
    _error(
        people.call("POST", "/segments", "admin", json={**body, "segment_id": "deciders"}),
        409,
        "conflict",
    )

    # Validation: the rule grammar and the id through save_segment, the shape by the schema.
    error = _error(
        people.call(
            "POST", "/segments", "admin",
            json={**body, "segment_id": "bad-rule",
                  "rule": {"all": [{"tag": "vip"}, {"event": "oa.teleport"}]}},
        ),
        400,
        "invalid_segment",
    )  # fmt: skip
    assert error["details"] == {"rule.all[1].event": ["Unknown event type 'oa.teleport'."]}
    error = _error(
        people.call("POST", "/segments", "admin", json={**body, "segment_id": "Bad Id"}),
        400,
        "invalid_segment",
    )
    assert list(error["details"]) == ["segment_id"]
    error = _error(
        people.call("POST", "/segments", "admin", json={"segment_id": "x-y", "rule": "deciders"}),
        400,
        "invalid_request",
    )
    assert set(error["details"]["json"]) == {"name", "rule"}
    _error(
        people.call("POST", "/segments", "admin", json={**body, "segment_id": "z-z", "extra": 1}),
        400,
        "invalid_request",
    )
    assert (
        people.seg("SELECT segment_id FROM segments WHERE segment_id IN ('bad-rule', 'z-z')") == []
    )

    # Membership is built in the background (tests/integration/api/test_segment_builds.py); a
    # recompute, as ever, evaluates every contact too.
    assert created["status"] == "building"
    settings = _recompute_settings(people, kafka)
    assert recompute_main(settings, tenant="acme", schema=people.segment_schema) == 0
    got = _built(people, "finance-people")
    assert got["members_count"] == 1
    assert got["rule"] == body["rule"]
    (member,) = _walk(people, "/segments/finance-people/members")
    assert member["name"] == "陈会计"
    assert member["role"] == "finance"
    assert member["since"]

    # Replace.
    replacement = {
        "name": "Finance & procurement",
        "rule": {"attribute": "role", "in": ["finance", "procurement"]},
    }
    replaced = _ok(people.call("PUT", "/segments/finance-people", "admin", json=replacement))
    assert replaced["name"] == replacement["name"]
    assert replaced["rule"] == replacement["rule"]
    assert replaced["description"] == ""
    assert replaced["updated_at"] > created["updated_at"]
    assert replaced["created_at"] == created["created_at"]
    assert replaced["members_count"] == 1  # until it is built again
    assert _built(people, "finance-people")["members_count"] == 2
    assert {m["name"] for m in _walk(people, "/segments/finance-people/members")} == {
        "陈会计",
        "周链",
    }
    _error(
        people.call(
            "PUT",
            "/segments/finance-people",
            "admin",
            json={**replacement, "rule": {"score": "high"}},
        ),
        400,
        "invalid_segment",
    )
    _error(people.call("PUT", "/segments/nope", "admin", json=replacement), 404, "not_found")
    _error(
        people.call("PUT", "/segments/finance-people", "admin", json={"name": "no rule"}),
        400,
        "invalid_request",
    )

    # Delete: the members go with it.
    assert people.call("DELETE", "/segments/finance-people", "admin").status_code == 204
    _error(people.call("GET", "/segments/finance-people", "viewer"), 404, "not_found")
    _error(people.call("GET", "/segments/finance-people/members", "viewer"), 404, "not_found")
    _error(people.call("DELETE", "/segments/finance-people", "admin"), 404, "not_found")
    assert people.seg("SELECT * FROM segment_members WHERE segment_id = 'finance-people'") == []

    entries = _walk(people, "/audit", "admin")
    seen = [(e["actor"], e["tenant_id"], e["action"], e["target"]) for e in entries][::-1]
    admin = people.ids["admin"]
    assert seen == [
        (admin, "acme", "segment.create", "finance-people"),
        (admin, "acme", "segment.replace", "finance-people"),
        (admin, "acme", "segment.delete", "finance-people"),
    ]  # refused changes leave no entry
    assert entries[-1]["details"]["rule"] == body["rule"]
    assert entries[1]["details"]["previous"]["name"] == "Finance"
    assert entries[0]["details"]["name"] == "Finance & procurement"


def test_segment_members_are_paged(people):
    rule = {"not": {"attribute": "role", "equals": "technical"}}
    _ok(
        people.call(
            "POST", "/segments", "admin", json={"segment_id": "not-tech", "name": "N", "rule": rule}
        ),
        201,
    )
    _built(people, "not-tech")
    everyone = _walk(people, "/segments/not-tech/members", limit=50)
    assert {m["name"] for m in everyone} == {"王总", "赵六", "陈会计", "周链", None}
    for limit in (1, 2, 3):
        walked = _walk(people, "/segments/not-tech/members", limit=limit)
        assert [m["contact_id"] for m in walked] == [m["contact_id"] for m in everyone]
    assert [m["contact_id"] for m in everyone] == sorted(m["contact_id"] for m in everyone)
    assert _ok(people.call("GET", "/segments/not-tech", "viewer"))["members_count"] == 5


# --- roles and tenants ---------------------------------------------------------------------------


def test_only_admins_change_segments(people):
    body = {"segment_id": "rbac", "name": "R", "rule": DECIDERS}
    for who in ("viewer", "operator"):
        _error(people.call("POST", "/segments", who, json=body), 403, "forbidden")
        _error(people.call("PUT", "/segments/deciders", who, json=body), 403, "forbidden")
        _error(people.call("DELETE", "/segments/deciders", who), 403, "forbidden")
        for path in ("/contacts", "/accounts", "/segments", "/segments/deciders/members"):
            assert people.call("GET", path, who).status_code == 200
    for method, path in [("GET", "/contacts"), ("POST", "/segments"), ("DELETE", "/segments/x")]:
        _error(people.call(method, path, None, json=body), 401, "unauthenticated")
    assert _ok(people.call("GET", "/segments/deciders", "viewer"))["name"] == "Decision makers"
    # A platform admin names the tenant.
    _error(people.call("GET", "/contacts", "platform"), 400, "tenant_required")
    made = people.call("POST", "/segments", "platform", json=body, query_string={"tenant": "acme"})
    assert made.status_code == 201
    assert len(_walk(people, "/contacts", "platform", tenant="acme")) == 6


def test_another_tenant_sees_nothing_of_acme(people):
    li = people.contact("李工")
    account = _ok(people.call("GET", f"/contacts/{li}", "viewer"))["account_id"]
    assert _names(people, "bloom") == {"小花"}
    for query in ({"q": "李工"}, {"q": "uLi"}, {"account_id": account}):
        assert _walk(people, "/contacts", "bloom", **query) == []
    # acme's segment is as unknown to bloom as one that does not exist: only bloom's are listed
    error = people.call("GET", "/contacts", "bloom", query_string={"segment": "deciders"}).json
    assert error["error"]["details"]["valid"] == {"segment": ["buyers"]}
    assert _walk(people, "/accounts", "bloom") == []
    assert [s["segment_id"] for s in _walk(people, "/segments", "bloom")] == ["buyers"]
    for path in (
        f"/contacts/{li}",
        f"/contacts/{li}/timeline",
        f"/accounts/{account}",
        "/segments/deciders",
        "/segments/deciders/members",
    ):
        _error(people.call("GET", path, "bloom"), 404, "not_found")
    _error(
        people.call("PUT", "/segments/deciders", "bloom", json={"name": "x", "rule": DECIDERS}),
        404,
        "not_found",
    )
    _error(people.call("DELETE", "/segments/deciders", "bloom"), 404, "not_found")
    # bloom's own things are equally invisible from acme.
    hua = people.contact("小花", "bloom")
    _error(people.call("GET", f"/contacts/{hua}", "viewer"), 404, "not_found")
    _error(people.call("GET", "/segments/buyers", "viewer"), 404, "not_found")
    assert _ok(people.call("GET", f"/contacts/{hua}", "bloom"))["behaviour"] == ["new", "impulse"]
    # Segment ids are per tenant: bloom may reuse acme's.
    made = people.call(
        "POST", "/segments", "bloom", json={"segment_id": "deciders", "name": "D", "rule": DECIDERS}
    )
    assert made.status_code == 201
    (acme_deciders,) = people.seg(
        "SELECT name FROM segments WHERE tenant_id = 'acme' AND segment_id = 'deciders'"
    )
    assert acme_deciders["name"] == "Decision makers"
    # A tenant token cannot name another tenant.
    _error(
        people.call("GET", "/contacts", "viewer", query_string={"tenant": "bloom"}),
        404,
        "unknown_tenant",
    )


# --- OpenAPI -------------------------------------------------------------------------------------


ROUTES = {
    ("get", "/api/v1/contacts"),
    ("get", "/api/v1/contacts/{contact_id}"),
    ("get", "/api/v1/contacts/{contact_id}/timeline"),
    ("get", "/api/v1/accounts"),
    ("get", "/api/v1/accounts/{account_id}"),
    ("get", "/api/v1/segments"),
    ("post", "/api/v1/segments"),
    ("get", "/api/v1/segments/{segment_id}"),
    ("put", "/api/v1/segments/{segment_id}"),
    ("delete", "/api/v1/segments/{segment_id}"),
    ("get", "/api/v1/segments/{segment_id}/members"),
}


def test_openapi_documents_the_people_routes(people):
    spec = _ok(people.client.get("/api/v1/openapi.json"))
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
    assert documented >= ROUTES
    # Our part of the document is valid OpenAPI 3 (other services' routes are theirs to check).
    ours = {p for _, p in ROUTES}
    validate({**spec, "paths": {p: ops for p, ops in spec["paths"].items() if p in ours}})
    for method, path in ROUTES:
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"bearerAuth": []}]
        assert operation["x-siyu-role"] == ("viewer" if method == "get" else "admin")
        assert operation["x-siyu-scope"] == "tenant"
        assert operation["summary"]
    schemas = spec["components"]["schemas"]
    create = schemas["SegmentCreate"]
    assert set(create["required"]) == {"segment_id", "name", "rule"}
    assert create["properties"]["segment_id"]["pattern"]
    assert {"members_count", "updated_at"} <= set(schemas["Segment"]["properties"])
    assert set(schemas["ContactItemPage"]["properties"]) == {"items", "next_cursor"}
    assert {"identities", "stage_history", "segments", "account"} <= set(
        schemas["Contact"]["properties"]
    )
    assert {"members_by_role", "coverage", "risk_flags"} <= set(schemas["Account"]["properties"])
    params = {p["name"] for p in spec["paths"]["/api/v1/contacts"]["get"]["parameters"]}
    assert params == {
        "limit", "cursor", "q", "stage", "role", "account_id", "segment", "behaviour",
        "min_score", "source_channel", "tenant",
    }  # fmt: skip
    members = spec["paths"]["/api/v1/segments/{segment_id}/members"]["get"]
    assert "built in the background" in members["description"]
    assert "built in the background" in spec["paths"]["/api/v1/segments"]["post"]["description"]
    segment = schemas["Segment"]["properties"]
    assert segment["status"]["enum"] == ["building", "ready", "failed"]
    assert "progress" in segment
    assert "409" in spec["paths"]["/api/v1/segments"]["post"]["responses"]
