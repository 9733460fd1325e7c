"""Channel codes when things go wrong (services/outreach/channel_codes.py, docs/domain.md
"Channel codes"): a create that dies half-way, a commit that fails or lands despite raising,
concurrent creates and edits, a cap step that meets a locked row, a broken code or a config
WeCom no longer knows, and a delete of a config that is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.outreach import channel_codes
from shared.api.errors import ApiError
from tests.integration.outreach.conftest import CORP
from tests.integration.outreach.test_channel_codes import contact_code, ways


class FailingCommit:
    """A connection whose ``nth`` commit raises: ``landed`` says whether it committed first."""

    def __init__(self, conn, nth: int, *, landed: bool) -> None:
        self._conn, self._nth, self._landed, self.commits = conn, nth, landed, 0

    def commit(self):
        self.commits += 1
        if self.commits == self._nth:
            if self._landed:
                self._conn.commit()
            raise psycopg.OperationalError("the connection was lost during commit")
        return self._conn.commit()

    def __getattr__(self, name):
        return getattr(self._conn, name)


def create(outreach, conn, body):
    body = {"staff": [], "chat_ids": [], "tags": [], "welcome_content": [], **body}
    return channel_codes.create(conn, outreach.clients.wecom("acme"), "acme", body, "tester")


def test_a_commit_that_landed_despite_raising_keeps_the_config(outreach):
    with outreach.pool.connection() as conn:
        row = create(outreach, FailingCommit(conn, 3, landed=True), contact_code())
    assert row["status"] == "active"
    assert row["config_id"] in ways(outreach)


def test_a_commit_that_failed_deletes_the_config_and_the_pending_row(outreach):
    with outreach.pool.connection() as conn, pytest.raises(psycopg.OperationalError):
        create(outreach, FailingCommit(conn, 3, landed=False), contact_code())
    assert ways(outreach) == {}
    assert outreach.sql("SELECT * FROM channel_codes") == []


def test_a_concurrent_create_of_the_same_id_is_a_conflict(outreach, monkeypatch):
    real = channel_codes._check

    def racing(conn, tenant, client, code):  # the other request inserts between check and insert
        real(conn, tenant, client, code)
        with outreach.pool.connection() as other:
            other.execute("INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, "
                          "state, status) VALUES ('acme', %s, 'contact', 'x', 'expo', "
                          "'expo.other', 'pending')", (code["code_id"],))  # fmt: skip

    monkeypatch.setattr(channel_codes, "_check", racing)
    answer = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    assert (answer.status_code, answer.json["error"]["code"]) == (409, "conflict"), answer.json
    assert ways(outreach) == {}


def test_a_create_killed_half_way_is_settled_by_the_leader(outreach):
    client = outreach.clients.wecom("acme")
    made = client.add_contact_way({"type": 2, "scene": 2, "state": "expo.killed0001",
                                   "user": ["zhangwei", "lina"]})  # fmt: skip
    outreach.sql(
        "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, config_id, "
        "status, created_at) VALUES ('acme', 'killed', 'contact', 'n', 'expo', 'expo.killed0001', "
        "%s, 'pending', now() - interval '1 hour'), ('acme', 'lost', 'contact', 'n', 'expo', "
        "'expo.lost000001', NULL, 'pending', now() - interval '1 hour'), ('acme', 'young', "
        "'contact', 'n', 'expo', 'expo.young00001', NULL, 'pending', now())",
        (made["config_id"],),
    )
    assert channel_codes.settle_pending(outreach.pool, outreach.clients, datetime.now(UTC)) == 2
    assert made["config_id"] not in ways(outreach)
    left = outreach.sql("SELECT code_id FROM channel_codes")
    assert [r["code_id"] for r in left] == ["young"]  # a create may still be running
    # Pending codes are nobody's: not listed, not counted.
    assert outreach.call("GET", "/channel-codes", "viewer").json["items"] == []


def test_a_failed_commit_of_an_edit_puts_the_previous_config_back(outreach):
    code = outreach.call("POST", "/channel-codes", "operator", json=contact_code()).json
    client = outreach.clients.wecom("acme")
    with outreach.pool.connection() as conn, pytest.raises(psycopg.OperationalError):
        channel_codes.update(FailingCommit(conn, 1, landed=False), client, "acme", "expo-2026",
                             {"staff": ["lina", "wangfang"], "name": "Other"}, "tester",
                             datetime.now(UTC))  # fmt: skip
    way = ways(outreach)[code["config_id"]]
    assert (way["user"], way["remark"]) == (["zhangwei", "lina"], "Expo booth")
    assert outreach.sql("SELECT name FROM channel_codes")[0]["name"] == "Expo booth"


def test_an_edit_of_a_changed_code_is_a_conflict(outreach):
    code = outreach.call("POST", "/channel-codes", "operator", json=contact_code()).json
    seen = datetime.fromisoformat(code["updated_at"])
    first = outreach.call("PATCH", "/channel-codes/expo-2026", "operator", json={"name": "One"})
    assert first.status_code == 200
    with outreach.pool.connection() as conn, pytest.raises(ApiError) as refused:
        channel_codes.update(conn, outreach.clients.wecom("acme"), "acme", "expo-2026",
                             {"name": "Two"}, "tester", datetime.now(UTC),
                             updated_at=seen)  # fmt: skip
    assert refused.value.status == 409
    assert ways(outreach)[code["config_id"]]["remark"] == "One"


def test_an_edit_stores_null_users_when_the_config_holds_all_staff(outreach):
    outreach.call("POST", "/channel-codes", "operator", json=contact_code(daily_cap=5))
    edited = outreach.call("PATCH", "/channel-codes/expo-2026", "operator",
                           json={"staff": ["lina", "wangfang"]})  # fmt: skip
    assert edited.json["config_users"] is None, edited.json


def capped(outreach, code_id: str, staff: str = "zhangwei"):
    code = outreach.call("POST", "/channel-codes", "operator",
                         json=contact_code(code_id, daily_cap=1)).json  # fmt: skip
    with outreach.pool.connection() as conn:
        channel_codes.record_add(conn, "acme", code["state"], staff, datetime.now(UTC))
    return code


def test_the_cap_step_skips_a_locked_code_and_goes_on(outreach):
    capped(outreach, "a")
    capped(outreach, "b")
    now = datetime.now(UTC)
    with outreach.pool.connection() as holder:
        holder.execute("SELECT 1 FROM channel_codes WHERE code_id = 'a' FOR UPDATE")
        assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 1  # b only
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 1  # now a
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 0


def test_a_failing_code_does_not_stop_the_others(outreach, monkeypatch):
    capped(outreach, "a")
    capped(outreach, "b")
    real = channel_codes._apply_cap

    def broken(conn, client, tenant, row, now):
        if row["code_id"] == "a":
            raise KeyError("something unexpected")
        return real(conn, client, tenant, row, now)

    monkeypatch.setattr(channel_codes, "_apply_cap", broken)
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, datetime.now(UTC)) == 1
    # A deleted tenant's codes are not looked at (no unknown_tenant for the whole pass).
    outreach.sql("UPDATE channel_codes SET tenant_id = 'gone' WHERE code_id = 'a'")
    monkeypatch.setattr(channel_codes, "_apply_cap", real)
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, datetime.now(UTC)) == 0


def test_a_config_wecom_no_longer_knows_marks_the_code_once(outreach):
    code = capped(outreach, "a")
    with outreach.fake.state.lock:
        outreach.fake.state.channel_codes[CORP].pop(code["config_id"])
    now = datetime.now(UTC)
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 0
    row = outreach.sql("SELECT config_missing_at FROM channel_codes")[0]
    assert row["config_missing_at"] is not None
    with outreach.pool.connection() as conn:
        assert conn.execute(channel_codes.DRIFTED, {"now": now}).fetchall() == []
    # Deleting it needs no WeCom call.
    assert outreach.call("DELETE", "/channel-codes/a", "operator").status_code == 200


def test_a_delete_takes_a_refusal_for_gone_only_when_wecom_does_not_know_the_config(outreach):
    code = outreach.call("POST", "/channel-codes", "operator", json=contact_code()).json
    outreach.fake.fail("externalcontact/del_contact_way", 40058)
    refused = outreach.call("DELETE", "/channel-codes/expo-2026", "operator")
    assert refused.status_code == 400, refused.json  # the config is there: a real refusal
    assert code["config_id"] in ways(outreach)
    outreach.fake.clear_faults()
    with outreach.fake.state.lock:
        outreach.fake.state.channel_codes[CORP].pop(code["config_id"])
    gone = outreach.call("DELETE", "/channel-codes/expo-2026", "operator")
    assert gone.status_code == 200, gone.json


def test_the_step_runs_every_30_s_and_when_a_quarter_hour_begins():
    step = channel_codes.Step()
    start = datetime(2026, 3, 1, 15, 59, 40, tzinfo=UTC)
    assert step.due(start)
    step.last = start
    assert not step.due(start + timedelta(seconds=10))
    assert step.due(start + timedelta(seconds=20))  # 16:00: a day begins in UTC+8
    step.last = start + timedelta(seconds=20)
    assert not step.due(start + timedelta(seconds=49))
    assert step.due(start + timedelta(seconds=50))


def test_the_fake_refuses_a_long_remark_and_configs_past_the_corp_limit(outreach, monkeypatch):
    from sandbox.fake_wechat import channel_codes as fake_codes
    from shared.wechat.wecom import WeComError

    client = outreach.clients.wecom("acme")
    body = {"type": 1, "scene": 2, "state": "expo.remark0001", "user": ["lina"]}
    with pytest.raises(WeComError) as long_remark:
        client.add_contact_way({**body, "remark": "x" * 31})
    assert long_remark.value.errcode == 40058
    made = client.add_contact_way({**body, "remark": "x" * 30})
    with pytest.raises(WeComError):
        client.update_contact_way({"config_id": made["config_id"], "remark": "y" * 31})
    assert ways(outreach)[made["config_id"]]["remark"] == "x" * 30
    monkeypatch.setattr(fake_codes, "MAX_CONFIGS", 1)
    with pytest.raises(WeComError) as full:
        client.add_contact_way(body)
    assert full.value.errcode == 40058
    assert len(ways(outreach)) == 1
