"""The effect report's counting rules (docs/domain.md "Effect report"): intention to treat
(failed sends stay treated), erased people left out, run times from the runs, replies only where
a reply can come back, a holdout share fixed once the campaign ran, and erasure and tenant
purges that a replay of the effects' topics does not undo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.outreach import effects, erasure, results

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}


def _ran(outreach, n: int = 60, holdout: int = 25, channel: str = "oa_template"):
    """A campaign of ``channel`` with a holdout that ran once to n contacts; its delivery rows."""
    people = outreach.customers(n)
    outreach.profiles([{"contact_id": f"ct_{i:03d}", "ext": ext, "openid": openid, "mode": "b2c",
                        "segments": ["fx"]} for i, (ext, openid) in enumerate(people)])  # fmt: skip
    item = outreach.content(fmt="service_notice" if channel == "oa_template" else "text")
    campaign = outreach.campaign(channel=channel, audience={"segments": ["fx"]},
                                 content={"item": item}, trigger=WEEKLY,
                                 holdout_percent=holdout)  # fmt: skip
    outreach.schedule()
    outreach.send()
    return campaign, outreach.deliveries(campaign)


def _report(outreach, campaign: str) -> dict:
    response = outreach.call("GET", f"/campaigns/{campaign}/effect", "viewer")
    assert response.status_code == 200, response.json
    return response.json


def test_failed_and_unconfirmed_sends_stay_in_the_treated_arm(outreach):
    campaign, rows = _ran(outreach)
    treated = [d for d in rows if d["status"] != "excluded"]
    held = [d for d in rows if d["reason"] == "held_out"]
    failed, unknown, pending = treated[:5], treated[5:8], treated[8:10]
    for status, some in (("failed", failed), ("unknown", unknown), ("pending", pending)):
        outreach.sql("UPDATE deliveries SET status = %s WHERE delivery_id = ANY(%s)",
                     (status, [d["delivery_id"] for d in some]))  # fmt: skip
    report = _report(outreach, campaign)
    t = report["treated"]
    assert t["contacts"] == len(treated)  # intention to treat: every decision to send
    assert (t["delivered"], t["failed"]) == (len(treated) - 10, 5)
    assert report["holdout"]["contacts"] == len(held)
    (item,) = report["content"]
    assert (item["treated"]["contacts"], item["treated"]["failed"]) == (len(treated), 5)


def test_erased_people_leave_the_report_and_run_times_come_from_the_runs(outreach):
    campaign, rows = _ran(outreach)
    # A second run to the same people: an erased person has two rows.
    outreach.now += timedelta(days=7)
    outreach.schedule()
    outreach.send()
    treated = {d["recipient_id"] for d in rows if d["status"] != "excluded"}
    held = {d["recipient_id"] for d in rows if d["reason"] == "held_out"}
    gone = [sorted(treated)[0], sorted(held)[0]]
    with outreach.pool.connection() as conn, conn.transaction():
        erasure.forget(conn, [{"tenant_id": "acme", "contact_id": c, "merged": [],
                               "erased_at": outreach.now, "identity_hashes": []}
                              for c in gone])  # fmt: skip
    assert len(outreach.sql("SELECT 1 FROM deliveries WHERE recipient_id LIKE 'erased:%%'")) == 4
    report = _report(outreach, campaign)
    assert report["treated"]["contacts"] == len(treated) - 1
    assert report["holdout"]["contacts"] == len(held) - 1
    runs = outreach.sql("SELECT min(started_at) AS a, max(started_at) AS b FROM campaign_runs "
                        "WHERE campaign_id = %s", (campaign,))[0]  # fmt: skip
    assert datetime.fromisoformat(report["first_run_at"]) == runs["a"]
    assert datetime.fromisoformat(report["last_run_at"]) == runs["b"]
    assert runs["a"] < runs["b"]


def test_replies_are_none_where_no_reply_comes_back(outreach):
    oa, _ = _ran(outreach, holdout=10)
    assert _report(outreach, oa)["treated"]["replied"] == 0  # an OA: a reply would be counted
    wecom = outreach.campaign(channel="wecom_single", audience={"segments": ["fx"]},
                              content={"item": outreach.content()}, trigger=WEEKLY,
                              holdout_percent=10)  # fmt: skip
    outreach.schedule()
    outreach.send()
    results.poll_results(outreach.pool, outreach.clients)
    report = _report(outreach, wecom)
    assert report["treated"]["contacts"] > 0
    assert report["treated"]["replied"] is None and report["holdout"]["replied"] is None
    assert report["content"][0]["treated"]["replied"] is None


def test_the_holdout_share_is_fixed_once_the_campaign_has_run(outreach):
    campaign, _ = _ran(outreach)
    assert outreach.call("POST", f"/campaigns/{campaign}/pause", "operator").status_code == 200
    changed = outreach.call("PATCH", f"/campaigns/{campaign}", "operator",
                            json={"holdout_percent": 10})  # fmt: skip
    assert changed.status_code == 409, changed.json
    assert "holdout share cannot change once the campaign has run" in changed.json["error"][
        "message"]  # fmt: skip
    same = outreach.call("PATCH", f"/campaigns/{campaign}", "operator",
                         json={"holdout_percent": 25, "name": "renamed"})  # fmt: skip
    assert same.status_code == 200, same.json


def _click(contact: str, event_id: str, campaign: str = "cmp_x") -> dict:
    return {"tenant_id": "acme", "event_id": event_id, "kind": "click", "contact_id": contact,
            "openid": None, "campaign_id": campaign, "content_id": "it",
            "at": datetime.now(UTC)}  # fmt: skip


def _advance(contact: str) -> dict:
    return {"tenant_id": "acme", "subject": "contact", "subject_id": contact, "model": "aisceas",
            "from_stage": "interest", "to_stage": "comparison",
            "changed_at": datetime(2026, 12, 1, tzinfo=UTC)}  # fmt: skip


def test_an_erasure_or_a_purge_is_not_undone_by_a_replay_of_clicks_and_advances(outreach):
    outreach.profile("ct_keep", openid="oKeep", segments=["fx"])
    outreach.profile("ct_gone", openid="oGone", segments=["fx"])
    clicks = [_click("ct_keep", "e1"), _click("ct_gone", "e2"), _click("ct_never", "e3")]
    replies = [{**_click(None, "e4"), "kind": "reply", "openid": "oGone"}]
    changes = [_advance("ct_keep"), _advance("ct_gone"), _advance("ct_never")]

    def record() -> tuple[int, int]:
        with outreach.pool.connection() as conn, conn.transaction():
            return (effects.record_events(conn, clicks + replies),
                    effects.record_advances(conn, changes))  # fmt: skip

    assert record() == (3, 2)  # no one stores a contact the audience does not have
    with outreach.pool.connection() as conn, conn.transaction():
        erasure.forget(conn, [{"tenant_id": "acme", "contact_id": "ct_gone", "merged": [],
                               "erased_at": outreach.now, "identity_hashes": []}])  # fmt: skip

    def stored(table: str) -> set[str]:
        return {r["contact_id"] for r in outreach.sql(f"SELECT contact_id FROM {table}")}

    assert stored("effect_events") == stored("stage_advances") == {"ct_keep"}
    assert record() == (0, 0)  # the replay: the erased person does not come back
    assert stored("effect_events") == stored("stage_advances") == {"ct_keep"}
    # A deleted tenant: its purge emptied the tables, a replay does not refill them.
    outreach.sql("DELETE FROM effect_events; DELETE FROM stage_advances")
    outreach.sql("INSERT INTO deleted_tenants (tenant_id, deleted_by) VALUES ('acme', 'test')")
    assert record() == (0, 0)
    assert stored("effect_events") == stored("stage_advances") == set()
