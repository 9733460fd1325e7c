"""Segments built in the background (issue 16, item 4): a segment created or whose rule changed is
``building`` until the API process's job runner evaluated every contact of the tenant, then
``ready`` with its members; events keep membership live meanwhile, and a contact the consumer
updates during the build keeps the consumer's result."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from services.segment.consumer import apply_batch
from services.segment.topics import Topics
from shared.db import create_pool
from shared.kafka.topics import PROFILES
from tests.integration.api.test_segment_people import TENANTS, _built, _error, _ok, _walk
from tests.integration.api.test_segment_people import people as _people_fixture  # noqa: F401
from tests.integration.segment.test_consumer import T0, tp
from tests.integration.segment.test_segment_rule_failures import explode
from tests.kafka_helpers import wait_until

FINANCE = {"attribute": "role", "equals": "finance"}
BUYING_SIDE = {"attribute": "role", "in": ["finance", "procurement"]}


@pytest.fixture
def people(_people_fixture):  # noqa: F811 - the imported fixture, under its own name
    """The seeded segments were saved before the events, which filled them: built already (the
    builds of these tests are then the only ones)."""
    _people_fixture.seg("UPDATE segments SET build_status = 'ready' RETURNING 1")
    return _people_fixture


def members(people, segment_id: str) -> set:
    return {m["name"] for m in _walk(people, f"/segments/{segment_id}/members")}


def test_a_new_segment_is_built_over_existing_contacts(people):
    contacts = len(people.seg("SELECT 1 FROM contacts WHERE tenant_id = 'acme'"))
    profiles = "SELECT count(*) AS n FROM outbox WHERE topic LIKE %s AND key = %s"
    key = ("%" + PROFILES, f"acme:{people.contact('陈会计')}")
    (queued,) = people.seg(profiles, key)
    body = {"segment_id": "finance", "name": "Finance", "rule": FINANCE}
    created = _ok(people.call("POST", "/segments", "admin", json=body), 201)
    assert (created["status"], created["members_count"]) == ("building", 0)
    assert created["progress"] is None

    got = _built(people, "finance")
    assert got["status"] == "ready"
    assert got["progress"] == {"done": contacts, "total": contacts}
    assert got["members_count"] == 1
    assert members(people, "finance") == {"陈会计"}
    # The profile outreach targets by segment is published again (the outbox), not the others'.
    assert people.seg(profiles, key)[0]["n"] == queued["n"] + 1
    listed = {s["segment_id"]: s["status"] for s in _walk(people, "/segments")}
    assert listed["finance"] == "ready"
    # Duplicate create: 409 as before; a job leaves the segment as it is.
    _error(people.call("POST", "/segments", "admin", json=body), 409, "conflict")
    _error(people.call("GET", "/segments/nope", "viewer"), 404, "not_found")


def test_a_changed_rule_is_built_again_and_a_rename_is_not(people):
    _ok(people.call("POST", "/segments", "admin", json={"segment_id": "buyers", "name": "B",
                                                        "rule": FINANCE}), 201)  # fmt: skip
    _built(people, "buyers")
    (before,) = people.seg(
        "SELECT build_version FROM segments WHERE tenant_id = 'acme' AND segment_id = 'buyers'"
    )

    renamed = _ok(people.call("PUT", "/segments/buyers", "admin", json={"name": "Buyers",
                                                                        "rule": FINANCE}))  # fmt: skip
    assert (renamed["status"], renamed["members_count"]) == ("ready", 1)

    replaced = _ok(
        people.call("PUT", "/segments/buyers", "admin", json={"name": "B", "rule": BUYING_SIDE})
    )
    assert replaced["status"] == "building"
    assert _built(people, "buyers")["members_count"] == 2
    assert members(people, "buyers") == {"陈会计", "周链"}
    (after,) = people.seg(
        "SELECT build_version FROM segments WHERE tenant_id = 'acme' AND segment_id = 'buyers'"
    )
    assert after["build_version"] == before["build_version"] + 1


def test_a_contact_the_consumer_updates_during_the_build_keeps_its_update(people):
    """The consumer holds 赵六 (no buying role) while the segment is built and makes them a
    finance manager: the build skips the row, then evaluates it under its lock, after the
    consumer committed: 赵六 is a member, not overwritten by what the build could have read
    before."""
    zhao = people.contact("赵六")
    pool = create_pool(
        people.settings.database_url, name="consumer", schema=people.segment_schema, max_size=1
    )
    try:
        with pool.connection() as conn:
            conn.execute("SELECT 1 FROM contacts WHERE contact_id = %s FOR UPDATE", (zhao,))
            body = {"segment_id": "finance", "name": "Finance", "rule": FINANCE}
            _ok(people.call("POST", "/segments", "admin", json=body), 201)

            def skipped():  # every other contact evaluated: the build waits for 赵六
                (row,) = people.seg(
                    "SELECT build_done, build_total FROM segments WHERE segment_id = 'finance'"
                )
                return row["build_total"] and row["build_done"] == row["build_total"] - 1

            wait_until(skipped, timeout=30, interval=0.02, message="the build to skip 赵六")
            apply_batch(
                conn,
                TENANTS,
                [tp(80, "biz.contact.updated", minutes=100, crm_id="C-9",
                    attributes={"title": "财务经理"})],
                Topics.with_prefix("t."),
            )  # fmt: skip
    finally:
        pool.close()
    got = _built(people, "finance")
    assert got["status"] == "ready"
    assert members(people, "finance") == {"陈会计", "赵六"}


def test_a_rule_that_fails_while_built_fails_the_segment(people, monkeypatch):
    explode(monkeypatch)
    body = {"segment_id": "time-bomb", "name": "T", "rule": {"tag": "explodes"}}
    _ok(people.call("POST", "/segments", "admin", json=body), 201)
    got = _built(people, "time-bomb")
    assert (got["status"], got["state"]) == ("failed", "disabled")
    assert got["disabled_reason"] == "OverflowError while evaluating (root)"
    assert got["members_count"] == 0
    # Saved again with a working rule: built again.
    fixed = _ok(people.call("PUT", "/segments/time-bomb", "admin", json={"name": "T",
                                                                         "rule": FINANCE}))  # fmt: skip
    assert (fixed["status"], fixed["state"]) == ("building", "enabled")
    assert _built(people, "time-bomb")["members_count"] == 1


def test_a_deleted_segment_ends_its_build_quietly_and_the_newest_rule_wins(people):
    zhao = people.contact("赵六")
    pool = create_pool(
        people.settings.database_url, name="hold", schema=people.segment_schema, max_size=1
    )
    try:
        with pool.connection() as conn:  # the build waits for 赵六 at its end
            conn.execute("SELECT 1 FROM contacts WHERE contact_id = %s FOR UPDATE", (zhao,))
            for sid in ("gone", "twice"):
                body = {"segment_id": sid, "name": sid, "rule": FINANCE}
                _ok(people.call("POST", "/segments", "admin", json=body), 201)
            assert people.call("DELETE", "/segments/gone", "admin").status_code == 204
            _ok(people.call("PUT", "/segments/twice", "admin",
                            json={"name": "t", "rule": BUYING_SIDE}))  # fmt: skip
    finally:
        pool.close()
    assert _built(people, "twice")["status"] == "ready"
    assert members(people, "twice") == {"陈会计", "周链"}
    assert people.seg("SELECT 1 FROM segment_members WHERE segment_id = 'gone'") == []
    jobs = people.seg("SELECT status, error FROM jobs WHERE kind = 'segment.backfill'")
    assert {j["status"] for j in jobs} <= {"done", "queued", "running"}


def test_segments_saved_at_once_are_all_built(people):
    def create(i: int) -> None:
        body = {"segment_id": f"many-{i}", "name": "m", "rule": FINANCE}
        client = people.app.test_client()  # one per thread
        response = client.post(
            "/api/v1/segments",
            json=body,
            headers={"Authorization": f"Bearer {people.tokens['admin']}"},
        )
        assert response.status_code == 201, response.json  # fmt: skip

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert _built(people, f"many-{i}")["members_count"] == 1


def test_a_new_segment_with_a_window_brings_its_contacts_due_instants_forward(people):
    """The time tick re-derives a contact at its due instant (docs/architecture.md "Time-driven
    evaluation"): a new "idle 14 days" segment must not wait for the instant an older rule set."""
    derived = T0 + timedelta(days=1)
    later = T0 + timedelta(days=100)
    people.seg(
        "UPDATE contacts SET score_at = %s, due_at = %s WHERE tenant_id = 'acme' RETURNING 1",
        (derived, later),
    )
    body = {"segment_id": "idle-14", "name": "Idle 14 days",
            "rule": {"days_since_last_event": {"gte": 14}}}  # fmt: skip
    _ok(people.call("POST", "/segments", "admin", json=body), 201)
    assert _built(people, "idle-14")["status"] == "ready"
    assert members(people, "idle-14") == set()  # nobody idle for 14 days a day after T0
    rows = people.seg(
        "SELECT c.due_at, max(e.occurred_at) AS last FROM contacts c JOIN events e "
        "USING (tenant_id, contact_id) WHERE c.tenant_id = 'acme' GROUP BY c.tenant_id, "
        "c.contact_id"
    )
    assert rows and all(
        derived < r["due_at"] <= r["last"] + timedelta(days=14, microseconds=1) for r in rows
    )
