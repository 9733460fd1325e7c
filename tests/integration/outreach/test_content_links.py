"""Content URLs and tracked links: only http(s) URLs enter the content library, and an item stored
bad anyway fails its deliveries with a reason while the worker's tick and the run go on."""

from __future__ import annotations

from dataclasses import replace

import pytest
from psycopg.types.json import Jsonb

from services.outreach.worker import Loop
from shared.links import LinkSigner
from tests.integration.outreach.conftest import TENANTS

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}
BAD = [
    ({"wecom": {"attachments": [{"msgtype": "link", "link": {
        "title": "t", "url": "javascript:alert(document.cookie)"}}]}},
     "payloads.wecom.attachments.0.link.url"),
    ({"wecom": {"attachments": [{"msgtype": "link", "link": {
        "title": "t", "url": "https://acme.example/", "picurl": "data:image/png;base64,AA"}}]}},
     "payloads.wecom.attachments.0.link.picurl"),
    ({"oa_template": {"template_id": "T", "url": "javascript:alert(1)", "data": {}}},
     "payloads.oa_template.url"),
    ({"oa_custom": {"msgtype": "news", "news": {"title": "t", "url": "javascript:x"}}},
     "payloads.oa_custom.news.url"),
    ({"oa_custom": {"msgtype": "news", "news": {"title": "t", "url": "https:///no-host"}}},
     "payloads.oa_custom.news.url"),
]  # fmt: skip


def _fields(details: dict, prefix: str = "") -> set[str]:
    """Dotted paths of a validation error's details (nested or already flat)."""
    found = set()
    for key, value in details.items():
        path = f"{prefix}{key}"
        found |= _fields(value, path + ".") if isinstance(value, dict) else {path}
    return found


@pytest.mark.parametrize(("payloads", "field"), BAD)
def test_content_with_a_non_http_url_is_refused_naming_the_field(outreach, payloads, field):
    body = {"title": "t", "format": "article", "payloads": payloads}
    created = outreach.call("POST", "/content", "operator", json=body)
    assert created.status_code == 400, created.json
    assert f"json.{field}" in _fields(created.json["error"]["details"]), created.json
    item = outreach.content()
    patched = outreach.call("PATCH", f"/content/{item}", "operator", json={"payloads": payloads})
    assert patched.status_code == 400
    assert f"json.{field}" in _fields(patched.json["error"]["details"])
    assert outreach.sql("SELECT count(*) AS n FROM content")[0]["n"] == 1  # the good one only


def test_a_bad_url_already_stored_fails_its_deliveries_and_the_run_finishes(outreach):
    settings = replace(outreach.settings, link_secret="test-link-secret-0123456789")
    people = [openid for _, openid in outreach.customers(40) if openid][:2]
    for i, openid in enumerate(people):
        outreach.profile(f"c_{i}", openid=openid, segments=["f"], mode="b2c")
    bad = outreach.content("坏链接", fmt="service_notice")
    good = outreach.content("好链接", fmt="service_notice")
    # Stored before validation existed (or by hand): the API would refuse it today.
    outreach.sql(
        "UPDATE content SET payloads = %s WHERE content_id = %s",
        (Jsonb({"oa_template": {"template_id": "T", "url": "javascript:alert(1)",
                                "data": {"first": {"value": "x"}}}}), bad),
    )  # fmt: skip
    bad_campaign = outreach.campaign(channel="oa_template", audience={"segments": ["f"]},
                                     content={"item": bad}, trigger=WEEKLY)  # fmt: skip
    good_campaign = outreach.campaign(channel="oa_template", audience={"segments": ["f"]},
                                      content={"item": good}, trigger=WEEKLY)  # fmt: skip
    assert outreach.schedule() == 2
    outreach.call("PUT", "/settings/outreach", "admin", json={"caps": {"contact_per_day": 5}})

    # The worker's own tick (it used to raise here and leave the run 'running' for ever).
    loop = Loop(settings, outreach.pool, TENANTS, outreach.clients, outreach.api.schema)
    loop.executor.clock = lambda: outreach.now
    try:
        loop.tick()
    finally:
        loop.leadership.release()

    runs = {r["campaign_id"]: r for r in outreach.sql("SELECT * FROM campaign_runs")}
    assert runs[bad_campaign]["status"] == "done"
    assert runs[bad_campaign]["stats"]["by_status"] == {"failed": 2}
    for d in outreach.deliveries(bad_campaign):
        assert d["status"] == "failed"
        assert "http(s)" in d["reason"]
        assert "javascript" in d["reason"]
    # The other campaign in the same tick went out, with tracked links.
    assert runs[good_campaign]["status"] == "done"
    assert {d["status"] for d in outreach.deliveries(good_campaign)} == {"sent"}
    sent = outreach.messages("template")
    assert len(sent) == 2
    assert all(m.body["url"].startswith(f"{outreach.settings.public_url}/r/2.acme.1.")
               for m in sent)  # fmt: skip


def test_a_sent_link_opens_only_for_its_tenant_and_hides_the_openid(outreach):
    ((_, openid),) = [(e, o) for e, o in outreach.customers(40) if o][:1]
    outreach.profile("c_1", openid=openid, segments=["f"], mode="b2c")
    item = outreach.content(fmt="service_notice")
    outreach.campaign(channel="oa_template", audience={"segments": ["f"]},
                      content={"item": item}, trigger=WEEKLY)  # fmt: skip
    outreach.schedule()
    outreach.send()
    (message,) = outreach.messages("template")
    token = message.body["url"].split("/r/", 1)[1]
    assert openid not in token
    assert "c_1" not in token
    opened = LinkSigner("test-link-secret-0123456789", TENANTS).load(token)
    assert opened["t"] == "acme"
    assert opened["v"] == openid
    assert opened["c"] == "c_1"
    assert opened["u"] == "https://acme.example/wp"
