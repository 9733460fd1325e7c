"""The effect report end to end (docs/domain.md "Effect report"): a campaign with a 10 % holdout
reports uplift. Through the real entry points on the session's PostgreSQL and broker: content and
campaign through the admin API, the worker's executor planning and sending through the fake
platform, stage changes on the stage-change topic as segment publishes them (read by outreach's
projection consumer), clicks through ingest's ``/r/<token>`` and replies through ingest's signed
OA webhook (read by the effects consumer), and the report through ``GET .../effect``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.outreach import effects, worker
from shared import messages
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.topics import STAGE_CHANGES
from tests.integration.ingest.conftest import build
from tests.integration.outreach.conftest import Outreach, outreach_world
from tests.kafka_helpers import RunnerThread, wait_until

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}
PEOPLE = 500
DEADLINE_S = 60.0


@pytest.fixture
def world(stack, kafka, schema, monkeypatch):
    built = outreach_world(stack, schema, monkeypatch, contacts=PEOPLE)
    ingest = build(stack, kafka, f"{schema}_ing")
    yield built, ingest
    ingest.deps.publisher.close()
    ingest.deps.publisher.pool.close()
    built.close()


def _stage_change(contact: str, before: str, after: str, at: datetime) -> bytes:
    """A stage change as segment publishes it (services/segment/derive.py)."""
    return messages.encode_built(messages.STAGE_CHANGE, {
        "tenant_id": "acme", "subject": "contact", "subject_id": contact, "model": "aisceas",
        "from_stage": before, "to_stage": after, "cause": "rule", "event_id": None,
        "changed_at": at.isoformat(), "actor": None, "moved_by": "event"})  # fmt: skip


def _reply(openid: str) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_acme]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]>"
            f"</MsgType><Content><![CDATA[收到]]></Content><MsgId>{secrets.randbelow(10**12)}"
            "</MsgId></xml>")  # fmt: skip


def test_a_campaign_with_a_10_percent_holdout_reports_uplift(world):
    o, ingest = world
    o: Outreach
    people = [openid for _, openid in o.customers(PEOPLE) if openid]
    o.profiles([{"contact_id": f"ct_{i:04d}", "openid": openid, "mode": "b2c",
                 "segments": ["effect"]} for i, openid in enumerate(people)])  # fmt: skip
    item = o.content("服务通知：年度保养", fmt="service_notice")
    campaign = o.campaign(channel="oa_template", audience={"segments": ["effect"]},
                          content={"item": item}, trigger=WEEKLY, holdout_percent=10)  # fmt: skip
    assert o.schedule() == 1
    o.send()

    rows = o.deliveries(campaign)
    treated = [d for d in rows if d["status"] == "sent"]
    held = [d for d in rows if d["reason"] == "held_out"]
    assert len(treated) + len(held) == len(people)
    assert 0.06 < len(held) / len(people) < 0.14  # 10 %, give or take the draw
    assert all(d["status"] == "excluded" for d in held)
    # Held-out contacts are never sent to.
    sent_to = {m.targets[0] for m in o.messages("template")}
    assert sent_to == {d["address"] for d in treated}
    assert not sent_to & {d["address"] for d in held}

    settings = replace(o.settings, kafka=ingest.kafka)
    threads = [RunnerThread(worker.build_runner(settings, o.pool)).__enter__(),
               RunnerThread(effects.build_runner(settings, o.pool)).__enter__()]  # fmt: skip
    try:
        planned = treated[0]["created_at"]
        # A third of the treated advance within a few days, a twentieth of the holdout; one
        # treated contact advances after 20 days (outside the default window); moves back and
        # redelivered messages change nothing.
        movers = treated[::3] + held[::20]
        changes = [_stage_change(d["recipient_id"], "interest", "comparison",
                                 planned + timedelta(days=2)) for d in movers]  # fmt: skip
        late = treated[1]["recipient_id"]
        changes += [_stage_change(late, "interest", "action", planned + timedelta(days=20)),
                    _stage_change(treated[2]["recipient_id"], "interest", "attention",
                                  planned + timedelta(days=1))]  # fmt: skip
        producer = create_producer(ingest.kafka, client_id="effect-e2e")
        topic = ingest.kafka.topic(STAGE_CHANGES)
        records = [Record(topic, "acme:x", value) for value in changes]
        publish(producer, records + records[:10])  # ten redelivered
        producer.close()

        # Clicks through ingest's tracked-link endpoint, and two replies through the OA webhook.
        clickers = [m for m in o.messages("template")][:40]
        for m in clickers:
            token = m.body["url"].split("/r/", 1)[1]
            assert ingest.client.get(f"/r/{token}").status_code == 302
        for d in treated[:2]:
            assert ingest.oa_post(_reply(d["address"])).status_code == 200

        wait_until(lambda: o.sql("SELECT count(*) AS n FROM stage_advances")[0]["n"]
                   == len(movers) + 1, DEADLINE_S, message="the advances")  # fmt: skip
        wait_until(lambda: o.sql("SELECT count(*) AS n FROM effect_events")[0]["n"] == 42,
                   DEADLINE_S, message="the clicks and replies")  # fmt: skip
    finally:
        for thread in threads:
            thread.stop()

    response = o.call("GET", f"/campaigns/{campaign}/effect", "viewer")
    assert response.status_code == 200, response.json
    report = response.json
    assert report["days"] == 14
    assert report["holdout_percent"] == 10
    t, h = report["treated"], report["holdout"]
    assert (t["contacts"], t["delivered"], h["contacts"]) == (len(treated), len(treated), len(held))
    assert (t["clicked"], t["replied"], h["clicked"]) == (40, 2, 0)
    assert t["confirmed"] == 0  # an OA template is not a WeCom task
    assert (t["advanced"], h["advanced"]) == (len(treated[::3]), len(held[::20]))
    uplift = report["uplift"]
    assert uplift["verdict"] == "uplift"
    assert 0 < uplift["low"] < uplift["difference"] < uplift["high"]
    assert uplift["difference"] == pytest.approx(t["rate"] - h["rate"])
    assert report["first_run_at"].endswith("+08:00")  # the tenant's zone
    (per_item,) = report["content"]
    assert (per_item["content_id"], per_item["title"]) == (item, "服务通知：年度保养")
    assert per_item["treated"]["advanced"] == t["advanced"]
    # A 30-day window takes in the late advance.
    month = o.call("GET", f"/campaigns/{campaign}/effect", "viewer", query_string={"days": 30})
    assert month.json["treated"]["advanced"] == t["advanced"] + 1
