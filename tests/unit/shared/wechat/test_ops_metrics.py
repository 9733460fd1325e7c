"""The metrics the alerts of docs/monitoring.md read: platform API calls by errcode (throttling,
token failures, unavailable) and readiness as last answered by /readyz."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from sandbox.fake_wechat.state import Injection
from shared.health import create_ops_app
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from shared.wechat import RateLimited, RateLimiter, TokenCache, WeComClient, WeComError
from shared.wechat.oa import OfficialAccountClient, QuotaExhausted
from tests.fake_wecom import FakeWeCom

CORP = "ww1234567890abcdef"
SECRET = "acme-wecom-secret-for-tests"
TENANTS = load_tenants(DEMO_TENANTS_PATH)
APP = TENANTS.get("acme").wechat_oa[0].app_id


def calls(platform: str, api: str, errcode: str, tenant: str = "acme") -> float:
    labels = {"tenant": tenant, "platform": platform, "api": api, "errcode": errcode}
    return REGISTRY.get_sample_value("siyu_platform_api_calls_total", labels) or 0.0


@pytest.fixture
def fake(monkeypatch):
    secrets = {"ACME_WECOM_SECRET": SECRET, "ACME_OA_SECRET": "acme-oa-secret-for-tests"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    with FakeWeCom(TENANTS, secrets) as f:
        yield f


def wecom(fake, secret: str = SECRET) -> WeComClient:
    return WeComClient(CORP, secret, api_base=fake.base_url, tenant="acme",
                       token_cache=TokenCache(), limiter=RateLimiter(1000, burst=1000),
                       busy_backoff=(0.0, 0.0))  # fmt: skip


def test_every_wecom_call_is_counted_by_api_and_errcode(fake):
    before = {
        key: calls("wecom", *key)
        for key in [("gettoken", "0"), ("externalcontact/groupchat/list", "0"),
                    ("externalcontact/groupchat/list", "45009"),
                    ("externalcontact/groupchat/list", "42001")]
    }  # fmt: skip
    client = wecom(fake)
    client.list_group_chats()
    fake.fail("externalcontact/groupchat/list", 45009)
    with pytest.raises(RateLimited):
        client.list_group_chats()
    fake.fail("externalcontact/groupchat/list", 42001)  # expired: refetched once, then ok
    client.list_group_chats()
    after = {key: calls("wecom", *key) - value for key, value in before.items()}
    assert after == {
        ("gettoken", "0"): 2,
        ("externalcontact/groupchat/list", "0"): 2,
        ("externalcontact/groupchat/list", "45009"): 1,
        ("externalcontact/groupchat/list", "42001"): 1,
    }


def test_token_failures_and_unreachable_platforms_are_counted(fake):
    refused = calls("wecom", "gettoken", "40001")
    with pytest.raises(WeComError):
        wecom(fake, secret="not-the-secret").list_group_chats()
    assert calls("wecom", "gettoken", "40001") == refused + 1

    down = calls("wecom", "gettoken", "unavailable")
    gone = WeComClient(CORP, SECRET, api_base="http://127.0.0.1:9/cgi-bin/", tenant="acme",
                       token_cache=TokenCache(), timeout=0.5)  # fmt: skip
    with pytest.raises(WeComError):
        gone.list_group_chats()
    assert calls("wecom", "gettoken", "unavailable") == down + 1


def test_oa_calls_are_counted_under_their_own_platform(fake):
    oa = OfficialAccountClient(APP, "acme-oa-secret-for-tests", api_base=fake.oa_base_url,
                               tenant="acme", token_cache=TokenCache())  # fmt: skip
    token, quota = calls("oa", "stable_token", "0"), calls("oa", "message/template/send", "45009")
    fake.state.inject(Injection(45009, "reach max api daily quota limit", 1, "oa",
                                "message/template/send"))  # fmt: skip
    with pytest.raises(QuotaExhausted):
        oa.send_template({"touser": "oX", "template_id": "TPL-1", "data": {}})
    assert calls("oa", "stable_token", "0") == token + 1
    assert calls("oa", "message/template/send", "45009") == quota + 1


@pytest.mark.parametrize("passing", [True, False])
def test_readyz_sets_the_ready_gauge(passing):
    def check() -> None:
        if not passing:
            raise RuntimeError("down")

    app = create_ops_app("t", {"dep": check})
    response = app.test_client().get("/readyz")
    assert response.status_code == (200 if passing else 503)
    assert REGISTRY.get_sample_value("siyu_ready") == (1.0 if passing else 0.0)
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert f"siyu_ready {1.0 if passing else 0.0}" in scraped


def test_series_the_alerts_count_on_exist_at_zero_from_the_start():
    """A labelled counter's series is born at its first inc(): born at 1, increase() sees no
    increase. The series an alert fires on from a single event start at 0 instead."""
    from unittest import mock

    from services.outreach.metrics import count_from_zero
    from shared.kafka.consumer import ConsumerRunner

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    OfficialAccountClient(APP, "s", api_base="http://127.0.0.1:9/", tenant="t-zero")
    oa = {"tenant": "t-zero", "platform": "oa", "errcode": "45009"}
    assert sample("siyu_platform_api_calls_total", **oa, api="message/template/send") == 0.0
    count_from_zero(["t-zero"])
    delivery = {"tenant": "t-zero", "channel": "wecom_group"}
    assert sample("siyu_outreach_deliveries_total", **delivery, status="unknown") == 0.0
    ConsumerRunner(mock.Mock(), topics=["t-zero.topic"], group="g-zero", decode=str,
                   process=print, dlq=mock.Mock())  # fmt: skip
    dlq = {"group": "g-zero", "topic": "t-zero.topic", "outcome": "dead_lettered"}
    assert sample("siyu_consumer_messages_total", **dlq) == 0.0
