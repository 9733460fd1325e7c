"""Issue 14, finding 1: a tenant's schedules can neither be too frequent nor stall another tenant.

Rules were expanded from 2000-01-01 inside one transaction that locked every tenant's active
campaigns, so a FREQ=MINUTELY rule kept another tenant's pause waiting for 82 s.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.outreach import scheduler

HOURLY = {"schedule": {"rrule": "FREQ=HOURLY;BYMINUTE=0;BYSECOND=0"}}


def _body(item: str, trigger: dict) -> dict:
    return {"channel": "wecom_single", "audience": {"stages": ["interest"]},
            "content": {"item": item}, "trigger": trigger}  # fmt: skip


@pytest.mark.parametrize(
    ("schedule", "needle"),
    [
        ({"rrule": "FREQ=MINUTELY"}, "1 minute apart"),
        ({"rrule": "FREQ=SECONDLY"}, "apart"),
        ({"rrule": "FREQ=DAILY;BYHOUR=9;BYMINUTE=0,30"}, "30 minutes apart"),
        ({"cron": "*/5 * * * *"}, "5 minutes apart"),
    ],
)
def test_a_schedule_faster_than_the_tenant_minimum_is_a_400_naming_it(outreach, schedule, needle):
    item = outreach.content()
    response = outreach.call("POST", "/campaigns", "operator",
                             json={"name": "fast", **_body(item, {"schedule": schedule})})  # fmt: skip
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "schedule_too_frequent"
    assert needle in error["message"]
    assert "minimum interval is 60 minutes" in error["message"]
    assert outreach.sql("SELECT count(*) AS n FROM campaigns")[0]["n"] == 0


def test_rrule_parts_that_can_never_match_are_refused(outreach):
    item = outreach.content()
    for rule in ("FREQ=HOURLY;BYSETPOS=3", "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
                 "DTSTART:20200101T000000\nRRULE:FREQ=DAILY"):  # fmt: skip
        body = _body(item, {"schedule": {"rrule": rule}})
        response = outreach.call("POST", "/campaigns", "operator", json={"name": "x", **body})
        assert response.status_code == 400, (rule, response.json)
        assert response.json["error"]["code"] == "invalid_request"


def test_the_minimum_is_a_setting_of_each_tenant(outreach):
    item = outreach.content()
    quarter = {"schedule": {"rrule": "FREQ=MINUTELY;INTERVAL=15"}}
    refused = outreach.call(
        "POST", "/campaigns", "operator", json={"name": "q", **_body(item, quarter)}
    )
    assert refused.status_code == 400
    # Hourly is the default minimum: allowed.
    hourly = outreach.call(
        "POST", "/campaigns", "operator", json={"name": "h", **_body(item, HOURLY)}
    )
    assert hourly.status_code == 201, hourly.json
    settings = outreach.call("GET", "/settings/outreach", "admin").json
    assert settings["min_schedule_interval_minutes"] == 60
    lowered = outreach.call("PUT", "/settings/outreach", "admin",
                            json={**settings, "min_schedule_interval_minutes": 15})  # fmt: skip
    assert lowered.status_code == 200, lowered.json
    allowed = outreach.call(
        "POST", "/campaigns", "operator", json={"name": "q", **_body(item, quarter)}
    )
    assert allowed.status_code == 201, allowed.json
    # Another tenant keeps its own minimum; and no tenant may go below the platform's floor.
    assert outreach.call("GET", "/settings/outreach", "bloom").json[
        "min_schedule_interval_minutes"] == 60  # fmt: skip
    floor = outreach.call("PUT", "/settings/outreach", "admin",
                          json={**settings, "min_schedule_interval_minutes": 1})  # fmt: skip
    assert floor.status_code == 400


def test_one_tenants_schedule_evaluation_never_blocks_another_tenants_pause(outreach, monkeypatch):
    item = outreach.content()
    acme = outreach.campaign(name="acme hourly", **_body(item, HOURLY))
    # bloom's active scheduled campaign (its own content does not matter to the scheduler).
    outreach.sql(
        "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, content, "
        "trigger, launched_at) VALUES ('bloom', 'cmp_bloom', 'bloom hourly', 'oa_custom', "
        "'active', %s, %s, %s, %s)",
        (Jsonb({}), Jsonb({"item": "x"}), Jsonb(HOURLY), outreach.now),
    )
    # acme's evaluation is held mid-way (as the 44 s expansion of issue 14 was).
    evaluating, release = threading.Event(), threading.Event()
    real = scheduler.latest_due

    def slow_latest_due(schedule, tz, after, now):
        if not evaluating.is_set():
            evaluating.set()
            assert release.wait(30)
        return real(schedule, tz, after, now)

    monkeypatch.setattr(scheduler, "latest_due", slow_latest_due)
    created: list[int] = []
    worker = threading.Thread(target=lambda: created.append(outreach.schedule()))
    worker.start()
    try:
        assert evaluating.wait(30)
        # While it evaluates, no campaign row is locked: not bloom's, not even acme's own.
        with outreach.pool.connection() as conn:
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            for tenant, campaign_id in (("bloom", "cmp_bloom"), ("acme", acme)):
                try:
                    conn.execute(
                        "SELECT 1 FROM campaigns WHERE tenant_id = %s AND campaign_id = %s "
                        "FOR UPDATE",
                        (tenant, campaign_id),
                    )
                except psycopg.errors.LockNotAvailable:
                    pytest.fail(f"{tenant}'s campaign is locked by acme's schedule evaluation")
            conn.rollback()
        # So bloom's pause goes through at once, through the API.
        paused = outreach.call("POST", "/campaigns/cmp_bloom/pause", "bloom")
        assert paused.status_code == 200
        assert paused.json["status"] == "paused"
    finally:
        release.set()
        worker.join(30)
    # acme's run was created; bloom's campaign, paused meanwhile, got none.
    assert created == [1]
    runs = outreach.sql("SELECT tenant_id, campaign_id FROM campaign_runs")
    assert [(r["tenant_id"], r["campaign_id"]) for r in runs] == [("acme", acme)]


def stored_before_the_checks(outreach, rule: str, campaign_id: str) -> None:
    """Acme's active campaign with ``rule``, written as a campaign saved before the checks were;
    bloom's hourly one beside it."""
    for tenant, campaign, trigger in (("acme", campaign_id, rule),
                                      ("bloom", "cmp_bloom", "FREQ=HOURLY")):  # fmt: skip
        outreach.sql(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, "
            "content, trigger, launched_at) VALUES (%s, %s, 'c', 'oa_custom', 'active', %s, %s, "
            "%s, %s)",
            (tenant, campaign, Jsonb({}), Jsonb({"item": "x"}),
             Jsonb({"schedule": {"rrule": trigger}}), outreach.now - timedelta(hours=2)),
        )  # fmt: skip


def test_a_schedule_stored_before_the_checks_is_skipped_not_a_stall(outreach):
    """An RRULE dateutil would walk for minutes (saved before the parts were checked) is
    skipped for its campaign; the other tenant's campaign is scheduled in the same tick."""
    stored_before_the_checks(outreach, "FREQ=HOURLY;BYSETPOS=3", "cmp_old")
    assert outreach.schedule() == 1
    runs = outreach.sql("SELECT tenant_id, campaign_id FROM campaign_runs")
    assert [(r["tenant_id"], r["campaign_id"]) for r in runs] == [("bloom", "cmp_bloom")]
    (old,) = outreach.sql("SELECT status FROM campaigns WHERE campaign_id = 'cmp_old'")
    assert old["status"] == "active"  # waiting, not ended: its operator must fix it


def _paused_long_ago(outreach, campaign_id: str, days: int) -> None:
    """The campaign as if it ran until ``days`` ago and was paused then (its cursor stale)."""
    outreach.sql(
        "UPDATE campaigns SET status = 'paused', launched_at = now() - %s, "
        "scheduled_until = now() - %s WHERE campaign_id = %s",
        (timedelta(days=days + 1), timedelta(days=days), campaign_id),
    )


def _resume(outreach, campaign_id: str, who: str = "operator"):
    """Launch the paused campaign again; returns when (the API's clock)."""
    resumed = outreach.call("POST", f"/campaigns/{campaign_id}/launch", who)
    assert resumed.status_code == 200, resumed.json
    (row,) = outreach.sql("SELECT updated_at FROM campaigns WHERE campaign_id = %s", (campaign_id,))
    return row["updated_at"]


def test_a_5_minute_campaign_resumed_after_months_fires_again(outreach):
    """Review of issue 14: 400 days of 5-minute slots are more than one evaluation may look
    at, so a campaign paused for 70+ days raised on every tick after its resume."""
    settings = outreach.call("GET", "/settings/outreach", "admin").json
    lowered = outreach.call("PUT", "/settings/outreach", "admin",
                            json={**settings, "min_schedule_interval_minutes": 5})  # fmt: skip
    assert lowered.status_code == 200, lowered.json
    campaign = outreach.campaign(
        name="every 5", **_body(outreach.content(), {"schedule": {"cron": "*/5 * * * *"}})
    )
    _paused_long_ago(outreach, campaign, days=100)
    resumed_at = _resume(outreach, campaign)
    assert scheduler.materialise(outreach.pool, resumed_at) == 0  # nothing due yet
    later = resumed_at + timedelta(minutes=6)
    assert scheduler.materialise(outreach.pool, later) == 1
    (run,) = outreach.sql("SELECT due_at FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert resumed_at < run["due_at"] <= later
    assert run["due_at"].minute % 5 == 0
    assert run["due_at"].second == 0


def test_slots_missed_while_paused_are_not_sent_on_resume(outreach):
    """Launch (or resume) starts the schedule from now: a paused campaign's slots are skipped,
    not the latest of them sent at once (that is for a worker back from an outage)."""
    campaign = outreach.campaign(name="hourly", **_body(outreach.content(), HOURLY))
    _paused_long_ago(outreach, campaign, days=3)
    resumed_at = _resume(outreach, campaign)
    assert scheduler.materialise(outreach.pool, resumed_at) == 0
    assert (
        outreach.sql("SELECT run_id FROM campaign_runs WHERE campaign_id = %s", (campaign,)) == []
    )
    # The next slot goes out as usual.
    assert scheduler.materialise(outreach.pool, resumed_at + timedelta(hours=1)) == 1


def test_a_schedule_faster_than_the_minimum_stored_before_the_check_is_paused_not_fired(outreach):
    """A campaign saved before the minimum interval (FREQ=MINUTELY) fired every minute, as only
    saving and launching checked it: the scheduler pauses it (audited, with the reason); the
    other tenant's campaign is scheduled in the same tick."""
    stored_before_the_checks(outreach, "FREQ=MINUTELY", "cmp_fast")
    assert outreach.schedule() == 1
    runs = outreach.sql("SELECT tenant_id, campaign_id FROM campaign_runs")
    assert [(r["tenant_id"], r["campaign_id"]) for r in runs] == [("bloom", "cmp_bloom")]
    fast = outreach.call("GET", "/campaigns/cmp_fast", "operator").json
    assert fast["status"] == "paused"
    (entry,) = outreach.sql("SELECT * FROM audit_log WHERE target = 'cmp_fast'")
    assert (entry["actor"], entry["action"]) == ("system", "campaign.pause")
    assert entry["details"]["reason"] == "schedule_too_frequent"
    assert "1 minute apart" in entry["details"]["message"]
    # Later ticks leave it alone, and it cannot be launched again unchanged.
    outreach.now += timedelta(minutes=5)
    assert outreach.schedule() == 0
    assert outreach.call("POST", "/campaigns/cmp_fast/launch", "operator").status_code == 400
    assert outreach.call("GET", "/campaigns/cmp_fast", "operator").json["status"] == "paused"
