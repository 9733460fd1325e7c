"""Outreach's audience projection from profile snapshots: order-free and idempotent."""

from __future__ import annotations

from datetime import timedelta

from services.outreach.projection import apply_profiles


def snapshot(outreach, contact: str, minutes: int, **fields) -> dict:
    return {"tenant_id": "acme", "contact_id": contact, "mode": "b2b", "stage": "interest",
            "identities": {"external_userid": [f"wm{contact}"]}, "risk_flags": [],
            "segments": [], "score": 1.0,
            "updated_at": outreach.now + timedelta(minutes=minutes), **fields}  # fmt: skip


def apply(outreach, *profiles) -> int:
    with outreach.pool.connection() as conn, conn.transaction():
        return apply_profiles(conn, profiles, outreach.now)


def stages(outreach) -> dict[str, str]:
    return {r["contact_id"]: r["stage"] for r in outreach.sql("SELECT * FROM audience")}


def test_the_newest_snapshot_wins_in_any_order_and_tombstones_delete(outreach):
    # One batch holding two snapshots of c1 (newest last or first: the same result).
    apply(outreach, snapshot(outreach, "c1", 2, stage="comparison"),
          snapshot(outreach, "c1", 1, stage="search"), snapshot(outreach, "c2", 1))  # fmt: skip
    assert stages(outreach) == {"c1": "comparison", "c2": "interest"}
    # A redelivered older snapshot changes nothing.
    apply(outreach, snapshot(outreach, "c1", 1, stage="search"))
    assert stages(outreach)["c1"] == "comparison"
    row = outreach.sql("SELECT * FROM audience WHERE contact_id = 'c1'")[0]
    assert row["external_userids"] == ["wmc1"]
    assert row["segments"] == []
    # c2 was merged into c1: its row goes.
    apply(outreach, {**snapshot(outreach, "c2", 3), "merged_into": "c1"})
    assert stages(outreach) == {"c1": "comparison"}


def test_a_flag_fires_once_when_raised_not_when_repeated(outreach):
    item = outreach.content()
    outreach.campaign(channel="wecom_single", audience={}, content={"item": item},
                      trigger={"event": {"risk_flag": "churn_risk"}})  # fmt: skip
    quiet = snapshot(outreach, "c1", 1, account_id="acct", risk_flags=[])
    raised = snapshot(outreach, "c1", 2, account_id="acct", risk_flags=["churn_risk"])
    assert apply(outreach, quiet) == 0
    assert apply(outreach, raised) == 1
    assert apply(outreach, raised) == 0  # redelivered: the flag was already there
    assert apply(outreach, snapshot(outreach, "c1", 3, account_id="acct",
                                    risk_flags=["churn_risk", "new"])) == 0  # fmt: skip
