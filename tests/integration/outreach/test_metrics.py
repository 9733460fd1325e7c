"""Outreach metrics the alerts of docs/monitoring.md read: deliveries by outcome (unknown and
failed included), the open and stuck delivery gauges, platform API calls by errcode."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from services.outreach import backlog
from services.outreach.runs import MAX_ATTEMPTS
from tests.integration.outreach.test_delivery import WEEKLY, wecom_send_interrupted_mid_call


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def deliveries(status: str, channel: str) -> float:
    return value("siyu_outreach_deliveries_total", tenant="acme", channel=channel, status=status)


def open_(status: str, channel: str) -> float:
    return value("siyu_outreach_deliveries_open", tenant="acme", channel=channel, status=status)


def test_a_run_interrupted_mid_call_shows_as_stuck_then_unknown(outreach, monkeypatch):
    _, client, real = wecom_send_interrupted_mid_call(outreach, monkeypatch)
    backlog.refresh(outreach.pool)
    assert open_("sending", "wecom_single") == 1
    stuck = {"tenant": "acme", "channel": "wecom_single"}
    assert value("siyu_outreach_deliveries_stuck", **stuck) == 0  # its lease still holds
    # The worker is gone and nobody takes the run over (say its campaign was paused).
    outreach.sql("UPDATE campaign_runs SET lease_until = now() - interval '1 minute'")
    backlog.refresh(outreach.pool)
    assert value("siyu_outreach_deliveries_stuck", **stuck) == 1

    unknown = deliveries("unknown", "wecom_single")
    monkeypatch.setattr(client, "add_msg_template", real)
    outreach.now += timedelta(minutes=6)
    outreach.send()  # another worker resumes: the interrupted delivery becomes unknown
    assert deliveries("unknown", "wecom_single") == unknown + 1
    backlog.refresh(outreach.pool)
    assert value("siyu_outreach_deliveries_stuck", **stuck) == 0
    assert open_("sending", "wecom_single") == 0
    assert open_("pending", "wecom_single") == 0


def test_sent_failed_and_throttled_deliveries_are_counted(outreach):
    (a, _), (b, _) = outreach.customers(2)
    outreach.profile("c_a", ext=a, segments=["s"])
    outreach.profile("c_b", ext=b, segments=["s"])
    outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                      content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    sent, failed = deliveries("sent", "wecom_single"), deliveries("failed", "wecom_single")
    labels = {"tenant": "acme", "platform": "wecom", "api": "externalcontact/add_msg_template"}
    throttled = value("siyu_platform_api_calls_total", **labels, errcode="45009")
    outreach.fake.fail("externalcontact/add_msg_template", 45009)
    outreach.send()  # throttled: back to pending, retried later
    assert value("siyu_platform_api_calls_total", **labels, errcode="45009") == throttled + 1
    assert deliveries("sent", "wecom_single") == sent
    outreach.fake.fail("externalcontact/add_msg_template", 41001)  # refused for good
    outreach.now += timedelta(minutes=5)
    outreach.send()
    assert deliveries("failed", "wecom_single") == failed + 2


def test_deliveries_out_of_attempts_are_counted_as_failed(outreach):
    ((ext, _),) = outreach.customers(1)
    outreach.profile("c_1", ext=ext, segments=["s"])
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    failed = deliveries("failed", "wecom_single")
    for _ in range(MAX_ATTEMPTS):  # throttled on every attempt
        outreach.fake.fail("externalcontact/add_msg_template", 45009)
        assert outreach.send() == 1
        outreach.now += timedelta(minutes=3)
    (delivery,) = outreach.deliveries(campaign)
    assert delivery["status"] == "failed"
    assert deliveries("failed", "wecom_single") == failed + 1


def test_send_results_reported_later_are_counted(outreach):
    from services.outreach.results import poll_results

    (a, _), (b, _) = outreach.customers(2)
    outreach.profile("c_a", ext=a, segments=["s"])
    outreach.profile("c_b", ext=b, segments=["s"])
    outreach.fake.state.deleted.add(b)  # b deleted us: WeCom reports it failed after sending
    outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                      content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    outreach.send()
    delivered, failed = (
        deliveries("delivered", "wecom_single"),
        deliveries("failed", "wecom_single"),
    )
    assert poll_results(outreach.pool, outreach.clients) == 2
    assert deliveries("delivered", "wecom_single") == delivered + 1
    assert deliveries("failed", "wecom_single") == failed + 1
