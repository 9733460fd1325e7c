"""Staff overrides through the real admin API app: a contact's buying role, a contact's or an
account's stage, and merging two accounts found to be one company.

The state is the one of tests/integration/api/test_segment_people.py (its ``people`` fixture: the consumer's
``apply_batch`` into a private segment schema); touchpoints applied after an override go through
``apply_batch`` too, so what the consumer does with overridden state is what is tested.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.consumer import apply_batch
from services.segment.topics import Topics
from shared import messages
from shared.db import create_pool
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.kafka.topics import STAGE_CHANGES
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from shared.vocabulary import BUYING_ROLES
from tests.integration.api import test_segment_people as base
from tests.integration.api.test_segment_people import JINGGONG, YUNSHAN, _error, _ok, _walk

people = base.people  # the fixture: the seeded segment schema and the app over it

TENANTS = load_tenants(DEMO_TENANTS_PATH)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the seed's first event
AISCEAS = [
    "attention", "interest", "search", "comparison", "examination", "action", "share", "lapsed",
]  # fmt: skip
XINXING = "上海新星科技有限公司"


def tp(key: str, type_: str, at: datetime, **ids) -> Touchpoint:
    attributes = ids.pop("attributes", {})
    source = {"oa": "wechat_oa", "biz": "api"}[type_.split(".")[0]]
    return Touchpoint(
        event_id=make_event_id("acme", source, f"ov-{key}"),
        tenant_id="acme",
        source=source,
        type=type_,
        occurred_at=at,
        received_at=at,
        identity=Identity(**ids),
        attributes=attributes,
    )


def _apply(api, *touchpoints: Touchpoint) -> None:
    """One consumer batch, as `siyu segment consume` applies it."""
    pool = create_pool(
        api.settings.database_url, name="segment-apply", schema=api.segment_schema, max_size=1
    )
    try:
        with pool.connection() as conn:
            apply_batch(conn, TENANTS, list(touchpoints), Topics.with_prefix("t."))
    finally:
        pool.close()


def _later(minutes: int) -> datetime:
    """Event time after the wall clock: evidence that arrives after an override was made."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


def _audit(api, action: str) -> list[dict]:
    return api.sql(
        "SELECT tenant_id, actor, action, target, details FROM audit_log WHERE action = %s "
        "ORDER BY id",
        (action,),
    )


def _stage_changes(api, subject_id: str) -> list[dict]:
    """The stage changes the API queued (the API's topics have no prefix; the seed's do)."""
    rows = api.seg(
        "SELECT value FROM outbox WHERE tenant_id = 'acme' AND topic = %s ORDER BY id",
        (STAGE_CHANGES,),
    )
    decoded = [messages.decode(messages.STAGE_CHANGE, bytes(r["value"])) for r in rows]
    return [m for m in decoded if m["subject_id"] == subject_id]


def _account_of(api, name: str) -> str:
    return _ok(api.call("GET", f"/contacts/{api.contact(name)}", "viewer"))["account_id"]


def _moves(history: list[dict]) -> list[tuple]:
    return [(h["from_stage"], h["to_stage"], h["actor"]) for h in history]


# --- role ----------------------------------------------------------------------------------------


def test_role_override_wins_survives_events_and_clears(people):
    li, zhao = people.contact("李工"), people.contact("赵六")
    body = {"role": "finance", "reason": "CRM: he approves budgets"}
    got = _ok(people.call("PUT", f"/contacts/{li}/role", "operator", json=body))
    assert got == {
        "contact_id": li,
        "role": "finance",
        "role_confidence": 1.0,
        "role_source": "api",
        "role_override": "finance",
    }
    detail = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert (detail["role"], detail["role_source"], detail["role_override"]) == (
        "finance", "api", "finance",
    )  # fmt: skip
    # Derived again in the same transaction: the account's role coverage and the segments.
    assert detail["account"]["roles_engaged"] == ["finance"]  # 王总: a CRM record, no action
    assert detail["segments"] == []  # tech-examining needs the technical role
    (entry,) = _audit(people, "contact.role_override")
    assert (entry["tenant_id"], entry["actor"], entry["target"]) == (
        "acme",
        people.ids["operator"],
        li,
    )
    assert entry["details"]["role"] == "finance"
    assert entry["details"]["reason"] == body["reason"]
    assert entry["details"]["previous"] == {"role": "technical", "role_override": None}

    # A role for a contact whose title names none: the deciders segment takes him in.
    _ok(people.call("PUT", f"/contacts/{zhao}/role", "operator",
                    json={"role": "decision_maker", "reason": "owner's brother"}))  # fmt: skip
    assert {c["name"] for c in _walk(people, "/contacts", segment="deciders")} == {"王总", "赵六"}

    # New events (the title asserted again by the CRM, a click) do not undo the override.
    _apply(
        people,
        tp("1", "biz.contact.updated", T0 + timedelta(hours=2), crm_id="C-7",
           account_key=JINGGONG, attributes={"name": "李工", "title": "IT经理"}),
        tp("2", "oa.click", T0 + timedelta(hours=3), openid="oLi"),
    )  # fmt: skip
    detail = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert (detail["role"], detail["role_source"]) == ("finance", "api")
    assert detail["events_count"] == 17

    # null clears it: back to the role of the title.
    cleared = _ok(people.call("PUT", f"/contacts/{li}/role", "admin",
                              json={"role": None, "reason": "CRM was wrong"}))  # fmt: skip
    assert (cleared["role"], cleared["role_source"], cleared["role_override"]) == (
        "technical", "title", None,
    )  # fmt: skip
    assert cleared["role_confidence"] < 1
    detail = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert detail["account"]["roles_engaged"] == ["technical"]
    assert [s["segment_id"] for s in detail["segments"]] == ["tech-examining"]
    assert len(_audit(people, "contact.role_override")) == 3


def test_role_override_refusals(people):
    li = people.contact("李工")
    ok = {"role": "technical", "reason": "checked"}
    error = _error(
        people.call("PUT", f"/contacts/{li}/role", "operator", json={**ok, "role": "boss"}),
        400,
        "invalid_request",
    )
    assert "role" in error["details"]["json"]
    for bad in ({"role": "finance"}, {**ok, "reason": ""}, {"reason": "no role key"}):
        _error(people.call("PUT", f"/contacts/{li}/role", "operator", json=bad), 400,
               "invalid_request")  # fmt: skip
    _error(people.call("PUT", f"/contacts/{li}/role", "viewer", json=ok), 403, "forbidden")
    _error(people.call("PUT", f"/contacts/{li}/role", "bloom", json=ok), 404, "not_found")
    _error(people.call("PUT", "/contacts/nobody/role", "operator", json=ok), 404, "not_found")
    hua = people.contact("小花", "bloom")
    _error(people.call("PUT", f"/contacts/{hua}/role", "operator", json=ok), 404, "not_found")
    (row,) = people.seg("SELECT role_override FROM contacts WHERE contact_id = %s", (li,))
    assert row["role_override"] is None
    assert _audit(people, "contact.role_override") == []


# --- stages --------------------------------------------------------------------------------------


def test_contact_stage_override_then_evidence_moves_it_on(people):
    li = people.contact("李工")
    before = datetime.now(UTC)
    body = {"stage": "interest", "reason": "went quiet; nurture again"}
    got = _ok(people.call("POST", f"/contacts/{li}/stage", "operator", json=body))
    assert got["contact_id"] == li
    assert got["stage"] == "interest"
    assert datetime.fromisoformat(got["stage_since"]) >= before  # the wall clock
    last = got["stage_history"][-1]
    assert (last["from_stage"], last["to_stage"]) == ("examination", "interest")
    assert last["cause"] == "manual: went quiet; nurture again"
    assert last["actor"] == people.ids["operator"]
    assert last["event_id"] is None
    assert last["model"] == "aisceas"
    # Segments follow the stage at once (tech-examining needs examination at least).
    assert got["segments"] == []
    # The stage change is queued with the actor; the change is audited.
    (change,) = _stage_changes(people, li)
    assert (change["from_stage"], change["to_stage"], change["actor"]) == (
        "examination", "interest", people.ids["operator"],
    )  # fmt: skip
    assert change["subject"] == "contact"
    assert change["cause"] == last["cause"]
    (entry,) = _audit(people, "contact.stage_override")
    assert (entry["actor"], entry["target"]) == (people.ids["operator"], li)
    assert entry["details"] == {**body, "previous": "examination", "model": "aisceas"}
    # The account is not lowered with it (accounts move forward only).
    assert got["account"]["stage"] == "examination"

    _error(people.call("POST", f"/contacts/{li}/stage", "operator", json=body), 409, "conflict")

    # New evidence (a signed contract, after the override) moves it on from the override.
    _apply(people, tp("3", "biz.contract.signed", _later(1), crm_id="C-7"))
    detail = _ok(people.call("GET", f"/contacts/{li}", "viewer"))
    assert detail["stage"] == "action"
    assert _moves(detail["stage_history"]) == [
        (None, "attention", None),
        ("attention", "examination", None),
        ("examination", "interest", people.ids["operator"]),
        ("interest", "action", None),
    ]
    assert "biz.contract.signed" in detail["stage_history"][-1]["cause"]


def test_side_stage_override_holds_against_forward_evidence(people):
    zhou = people.contact("周链")
    got = _ok(people.call("POST", f"/contacts/{zhou}/stage", "admin",
                          json={"stage": "lapsed", "reason": "left the company"}))  # fmt: skip
    assert got["stage"] == "lapsed"
    _apply(people, tp("4", "oa.click", _later(1), crm_id=people.seg(
        "SELECT value FROM identities WHERE contact_id = %s AND kind = 'crm_id'", (zhou,)
    )[0]["value"]))  # fmt: skip
    assert _ok(people.call("GET", f"/contacts/{zhou}", "viewer"))["stage"] == "lapsed"


def test_stage_override_refusals(people):
    li = people.contact("李工")
    account = _account_of(people, "李工")
    for path in (f"/contacts/{li}/stage", f"/accounts/{account}/stage"):
        error = _error(
            people.call("POST", path, "operator", json={"stage": "negotiation", "reason": "x"}),
            400,
            "invalid_request",
        )
        assert error["details"]["valid"] == {"stage": AISCEAS}
        assert "negotiation" in error["details"]["stage"][0]
        _error(people.call("POST", path, "operator", json={"stage": "action"}), 400,
               "invalid_request")  # fmt: skip
        ok = {"stage": "action", "reason": "signed on paper"}
        _error(people.call("POST", path, "viewer", json=ok), 403, "forbidden")
        _error(people.call("POST", path, "bloom", json=ok), 404, "not_found")
    ok = {"stage": "action", "reason": "signed on paper"}
    _error(people.call("POST", "/contacts/nobody/stage", "operator", json=ok), 404, "not_found")
    _error(people.call("POST", "/accounts/nobody/stage", "operator", json=ok), 404, "not_found")
    # bloom's model is AARRR: its names, not acme's.
    hua = people.contact("小花", "bloom")
    error = _error(
        people.call("POST", f"/contacts/{hua}/stage", "bloom", json=ok), 400, "invalid_request"
    )
    assert "acquisition" in error["details"]["valid"]["stage"]
    assert _audit(people, "contact.stage_override") == []
    assert _audit(people, "account.stage_override") == []
    assert people.seg("SELECT 1 FROM stage_history WHERE actor IS NOT NULL") == []


def test_account_stage_override_then_members_move_it_on(people):
    account = _account_of(people, "李工")
    body = {"stage": "comparison", "reason": "second vendor in play"}
    got = _ok(people.call("POST", f"/accounts/{account}/stage", "operator", json=body))
    assert got["account_id"] == account
    assert got["stage"] == "comparison"
    assert _moves(got["stage_history"]) == [
        # Evaluated at each member's event: attention at the first, examination at the trial.
        (None, "attention", None),
        ("attention", "examination", None),
        ("examination", "comparison", people.ids["operator"]),
    ]
    assert got["stage_history"][-1]["cause"] == "manual: second vendor in play"
    (change,) = _stage_changes(people, account)
    assert (change["subject"], change["to_stage"], change["actor"]) == (
        "account", "comparison", people.ids["operator"],
    )  # fmt: skip
    (entry,) = _audit(people, "account.stage_override")
    assert entry["target"] == account
    assert entry["details"]["previous"] == "examination"
    # Members see their account's new stage.
    li = _ok(people.call("GET", f"/contacts/{people.contact('李工')}", "viewer"))
    assert li["account"]["stage"] == "comparison"
    assert li["stage"] == "examination"
    _error(people.call("POST", f"/accounts/{account}/stage", "operator", json=body), 409,
           "conflict")  # fmt: skip

    # A member's next touch re-derives the account: its trial (and a member) say examination.
    _apply(people, tp("5", "oa.click", _later(2), crm_id="C-8"))
    detail = _ok(people.call("GET", f"/accounts/{account}", "viewer"))
    assert detail["stage"] == "examination"
    assert _moves(detail["stage_history"]) == [
        (None, "attention", None),
        ("attention", "examination", None),
        ("examination", "comparison", people.ids["operator"]),
        ("comparison", "examination", None),
    ]
    assert "biz.trial.started" in detail["stage_history"][-1]["cause"]


# --- merge ---------------------------------------------------------------------------------------


def test_account_merge(people):
    jinggong, yunshan = _account_of(people, "李工"), _account_of(people, "陈会计")
    chen = people.contact("陈会计")
    body = {"into": jinggong, "reason": "云杉 is 精工's software arm"}
    _error(people.call("POST", f"/accounts/{yunshan}/merge", "operator", json=body), 403,
           "forbidden")  # fmt: skip
    _error(people.call("POST", f"/accounts/{yunshan}/merge", "bloom", json=body), 404,
           "not_found")  # fmt: skip
    _error(people.call("POST", "/accounts/nobody/merge", "admin", json=body), 404, "not_found")
    _error(people.call("POST", f"/accounts/{yunshan}/merge", "admin",
                       json={**body, "into": "nobody"}), 404, "not_found")  # fmt: skip
    _error(people.call("POST", f"/accounts/{yunshan}/merge", "admin",
                       json={**body, "into": yunshan}), 409, "conflict")  # fmt: skip
    _error(people.call("POST", f"/accounts/{yunshan}/merge", "admin",
                       json={"into": jinggong}), 400, "invalid_request")  # fmt: skip

    got = _ok(people.call("POST", f"/accounts/{yunshan}/merge", "admin", json=body))
    # The target, derived again with its new member: roles, risk, members.
    assert got["account_id"] == jinggong
    assert got["members"] == 4
    assert [m["name"] for m in got["members_by_role"]["finance"]] == ["陈会计"]
    # Engaged: only 李工 acted himself; 王总 and 陈会计 are CRM records (docs/domain.md "Activity").
    assert got["roles_engaged"] == ["technical"]
    assert "payment_risk" in [f["flag"] for f in got["risk_flags"]]
    assert got["coverage"]["ratio"] == pytest.approx(1 / len(BUYING_ROLES))
    chen_now = _ok(people.call("GET", f"/contacts/{chen}", "viewer"))
    assert chen_now["account_id"] == jinggong
    assert chen_now["account"]["account_id"] == jinggong
    # The source is kept for its history, out of lists; GET says where it went.
    error = _error(people.call("GET", f"/accounts/{yunshan}", "viewer"), 404, "not_found")
    assert error["details"] == {"merged_into": jinggong}
    assert [a["account_id"] for a in _walk(people, "/accounts")] == [jinggong]
    (row,) = people.seg("SELECT name, merged_into FROM accounts WHERE account_id = %s", (yunshan,))
    assert row == {"name": YUNSHAN, "merged_into": jinggong}
    (entry,) = _audit(people, "account.merge")
    assert (entry["actor"], entry["target"]) == (people.ids["admin"], yunshan)
    assert entry["details"] == {**body, "members": [chen]}

    # Merged already, either way round.
    error = _error(people.call("POST", f"/accounts/{yunshan}/merge", "admin", json=body), 404,
                   "not_found")  # fmt: skip
    assert error["details"] == {"merged_into": jinggong}
    error = _error(people.call("POST", f"/accounts/{jinggong}/merge", "admin",
                               json={**body, "into": yunshan}), 409, "conflict")  # fmt: skip
    assert error["details"] == {"merged_into": jinggong}
    assert _ok(people.call("GET", f"/accounts/{jinggong}", "viewer"))["members"] == 4

    # New business events naming the merged company attach to the target.
    _apply(
        people,
        tp("6", "biz.contact.updated", T0 + timedelta(hours=2), crm_id="C-40",
           account_key=YUNSHAN,
           attributes={"name": "孙采购", "title": "采购经理", "company": YUNSHAN}),
        tp("7", "biz.account.updated", T0 + timedelta(hours=2), account_key=YUNSHAN,
           attributes={"region": "east", "company": YUNSHAN}),
    )  # fmt: skip
    sun = _ok(people.call("GET", f"/contacts/{people.contact('孙采购')}", "viewer"))
    assert sun["account_id"] == jinggong
    assert sun["role"] == "procurement"
    detail = _ok(people.call("GET", f"/accounts/{jinggong}", "viewer"))
    assert detail["members"] == 5
    assert [m["name"] for m in detail["members_by_role"]["procurement"]] == ["孙采购"]
    assert "procurement" not in detail["roles_engaged"]  # a CRM record is no engagement
    assert detail["attributes"]["region"] == "east"
    assert people.seg("SELECT 1 FROM contacts WHERE account_id = %s", (yunshan,)) == []


def test_merging_a_merge_target_repoints_earlier_merges(people):
    jinggong, yunshan = _account_of(people, "李工"), _account_of(people, "陈会计")
    _apply(
        people,
        tp("8", "biz.contact.updated", T0 + timedelta(hours=1), crm_id="C-50",
           account_key=XINXING, attributes={"name": "钱总", "title": "CEO", "company": XINXING}),
    )  # fmt: skip
    xinxing = _account_of(people, "钱总")
    _ok(people.call("POST", f"/accounts/{yunshan}/merge", "admin",
                    json={"into": jinggong, "reason": "one group"}))  # fmt: skip
    got = _ok(people.call("POST", f"/accounts/{jinggong}/merge", "admin",
                          json={"into": xinxing, "reason": "acquired"}))  # fmt: skip
    assert got["account_id"] == xinxing
    assert got["members"] == 5
    rows = people.seg(
        "SELECT account_id, merged_into FROM accounts WHERE tenant_id = 'acme' ORDER BY 1"
    )
    assert {r["account_id"]: r["merged_into"] for r in rows} == {
        jinggong: xinxing,
        yunshan: xinxing,
        xinxing: None,
    }
    error = _error(people.call("GET", f"/accounts/{yunshan}", "viewer"), 404, "not_found")
    assert error["details"] == {"merged_into": xinxing}
    _apply(people, tp("9", "biz.contact.updated", T0 + timedelta(hours=2), crm_id="C-51",
                      account_key=YUNSHAN, attributes={"name": "周工", "company": YUNSHAN}))  # fmt: skip
    assert _account_of(people, "周工") == xinxing


# --- OpenAPI -------------------------------------------------------------------------------------


def test_openapi_documents_the_override_routes(people):
    spec = _ok(people.client.get("/api/v1/openapi.json"))
    routes = {
        ("put", "/api/v1/contacts/{contact_id}/role"): "operator",
        ("post", "/api/v1/contacts/{contact_id}/stage"): "operator",
        ("post", "/api/v1/accounts/{account_id}/stage"): "operator",
        ("post", "/api/v1/accounts/{account_id}/merge"): "admin",
    }
    for (method, path), role in routes.items():
        operation = spec["paths"][path][method]
        assert operation["x-siyu-role"] == role
        assert operation["x-siyu-scope"] == "tenant"
        assert operation["summary"]
        assert "404" in operation["responses"]
        assert operation["security"] == [{"bearerAuth": []}]
    schemas = spec["components"]["schemas"]
    assert set(schemas["RoleOverride"]["required"]) == {"role", "reason"}
    assert schemas["RoleOverride"]["properties"]["role"]["enum"][: len(BUYING_ROLES)] == list(
        BUYING_ROLES
    )
    assert set(schemas["StageOverride"]["required"]) == {"stage", "reason"}
    assert set(schemas["AccountMerge"]["required"]) == {"into", "reason"}
    assert "api" in schemas["Contact"]["properties"]["role_source"]["enum"]
