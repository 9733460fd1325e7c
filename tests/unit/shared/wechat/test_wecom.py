"""The shared WeCom client against the fake WeCom API: tokens, errcodes, limiter, hygiene."""

from __future__ import annotations

import logging
import threading
import time
import traceback

import pytest

from shared.config import Settings
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from shared.wechat import (
    RateLimited,
    RateLimiter,
    TokenCache,
    WeComClient,
    WeComError,
    WeComUnavailable,
)
from shared.wechat.wecom import DEFAULT_API_BASE, redact_url
from tests.fake_wecom import FakeWeCom

CORP = "ww1234567890abcdef"  # acme's corp in the demo tenants
SECRET = "acme-wecom-secret-for-tests"
LI = "wmLiGong0001"
TENANTS = load_tenants(DEMO_TENANTS_PATH)

FOLLOW = [
    {
        "userid": "zhangwei",
        "remark": "李工",
        "createtime": 1700000000,
        "add_way": 1,
        "state": "expo2026",
        "tags": [{"group_name": "角色", "tag_name": "技术", "type": 1, "tag_id": "et1"}],
    }
]


@pytest.fixture
def double(monkeypatch):
    """The fake WeCom API (sandbox.fake_wechat) with one contact of ours."""
    monkeypatch.setenv("ACME_WECOM_SECRET", SECRET)
    d = FakeWeCom(TENANTS, {"ACME_WECOM_SECRET": SECRET})
    d.add_contact(
        CORP, LI, FOLLOW, name="李工", type=2, unionid="uLi", position="IT经理", corp_name="精工"
    )
    with d:
        yield d


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def client(double, **kwargs) -> WeComClient:
    kwargs.setdefault("token_cache", TokenCache())
    kwargs.setdefault("limiter", RateLimiter(1000, burst=1000))
    kwargs.setdefault("busy_backoff", (0.0, 0.0))
    return WeComClient(CORP, SECRET, api_base=double.base_url, **kwargs)


def test_contact_detail_and_group_chat(double):
    double.add_chat(CORP, "wrG", {"chat_id": "wrG", "owner": "zhangwei", "member_list": []})
    c = client(double)
    detail = c.get_external_contact(LI)
    assert detail["external_contact"]["unionid"] == "uLi"
    assert detail["follow_user"] == FOLLOW
    assert c.get_group_chat("wrG")["owner"] == "zhangwei"
    assert double.calls[-1] == ("externalcontact/groupchat/get", {})
    # wechatpy's own API groups share the request path (token, errors, limiter).
    assert c.external_contact.get(LI)["external_contact"]["name"] == "李工"
    assert double.gettoken_calls() == 1


def test_token_is_cached_and_shared_across_threads_and_clients(double):
    cache = TokenCache()
    clients = [client(double, token_cache=cache) for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(clients))

    def work(c):
        try:
            barrier.wait()
            for _ in range(3):
                c.get_external_contact(LI)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert double.gettoken_calls() == 1
    assert double.count("externalcontact/get") == 24


def test_token_refreshed_when_under_five_minutes_remain(double):
    clock = Clock()
    c = client(double, token_cache=TokenCache(clock=clock))
    c.get_external_contact(LI)
    clock.now += 7200 - 310  # about 310 s left: still good
    c.get_external_contact(LI)
    assert double.gettoken_calls() == 1
    clock.now += 15  # under 300 s left: refresh before using it
    c.get_external_contact(LI)
    assert double.gettoken_calls() == 2


def test_short_expires_in_sets_the_ttl(double):
    double.state.config.token_ttl = 400
    clock = Clock()
    c = client(double, token_cache=TokenCache(clock=clock))
    c.get_external_contact(LI)
    clock.now += 101
    c.get_external_contact(LI)
    assert double.gettoken_calls() == 2


@pytest.mark.parametrize("errcode", ["revoked", 40001, 40014, 42001])
def test_bad_token_is_refetched_once_then_the_call_succeeds(double, errcode):
    c = client(double)
    c.get_external_contact(LI)
    if errcode == "revoked":
        double.state.revoke(corp_id=CORP)  # revoked early: the fake answers 40014
    else:
        double.fail("externalcontact/get", errcode)
    detail = c.get_external_contact(LI)
    assert detail["external_contact"]["name"] == "李工"
    assert double.gettoken_calls() == 2
    assert double.count("externalcontact/get") == 3


def test_a_second_token_failure_surfaces(double):
    c = client(double)
    double.fail("externalcontact/get", 42001, 40014, 40014)
    with pytest.raises(WeComError) as info:
        c.get_external_contact(LI)
    assert info.value.errcode == 40014
    assert not info.value.retryable
    assert double.gettoken_calls() == 2  # refetched once, not again
    assert double.count("externalcontact/get") == 2


def test_busy_is_retried_up_to_three_tries(double):
    waits: list[float] = []
    c = client(double, busy_backoff=(0.01, 0.02), sleep=waits.append)
    double.fail("externalcontact/get", -1, -1)
    assert c.get_external_contact(LI)["external_contact"]["name"] == "李工"
    assert double.count("externalcontact/get") == 3
    assert waits == [0.01, 0.02]

    double.fail("externalcontact/get", -1, -1, -1, -1)
    with pytest.raises(WeComUnavailable) as info:
        c.get_external_contact(LI)
    assert info.value.errcode == -1
    assert info.value.retryable
    assert double.count("externalcontact/get") == 6  # 3 more tries, not 4
    double.clear_faults()


def test_45009_raises_rate_limited_without_retrying(double):
    c = client(double, rate_limit_retry_after=180)
    double.fail("externalcontact/get", 45009)
    with pytest.raises(RateLimited) as info:
        c.get_external_contact(LI)
    assert info.value.errcode == 45009
    assert info.value.retry_after == 180
    assert double.count("externalcontact/get") == 1


def test_other_errcodes_are_never_retried(double):
    c = client(double)
    with pytest.raises(WeComError) as info:
        c.get_external_contact("wmStranger01")
    assert type(info.value) is WeComError
    assert info.value.errcode == 84061
    assert double.count("externalcontact/get") == 1


def test_bad_secret_is_an_error_not_a_loop(double):
    c = WeComClient(CORP, "wrong-secret", api_base=double.base_url, token_cache=TokenCache())
    with pytest.raises(WeComError) as info:
        c.get_external_contact(LI)
    assert info.value.errcode == 40001
    assert double.gettoken_calls() == 1


def test_follow_users_of_every_page_are_collected(double):
    double.state.config.follow_user_page = 2
    many = [dict(FOLLOW[0], userid=f"staff{i}") for i in range(5)]
    double.add_contact(CORP, "wmBusyContact", many, name="忙", type=1)
    detail = client(double).get_external_contact("wmBusyContact")
    assert [f["userid"] for f in detail["follow_user"]] == [f"staff{i}" for i in range(5)]
    cursors = [p.get("cursor") for p in double.contact_paths()]
    assert len(cursors) == 3
    assert cursors[0] is None
    assert all(cursors[1:])


def test_every_call_has_a_timeout(double):
    double.delays["externalcontact/get"] = 1.0
    c = client(double, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(WeComUnavailable) as info:
        c.get_external_contact(LI)
    assert time.monotonic() - started < 0.9
    assert "timeout" in str(info.value)


def test_rate_limiter_spaces_calls():
    limiter = RateLimiter(20)  # one request per 50 ms, no burst
    started = time.monotonic()
    for _ in range(6):
        limiter.acquire()
    assert time.monotonic() - started >= 0.24


def test_rate_limiter_is_a_token_bucket():
    clock = Clock(0.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    limiter = RateLimiter(5, burst=2, clock=clock, sleep=sleep)
    assert [limiter.acquire() for _ in range(4)] == pytest.approx([0, 0, 0.2, 0.2])
    clock.now += 10  # idle: the bucket refills up to its burst, no more
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.2])


def test_the_client_uses_its_corps_limiter(double):
    c = client(double, limiter=RateLimiter(10))
    started = time.monotonic()
    for _ in range(3):
        c.get_external_contact(LI)
    # gettoken + 3 calls: 3 gaps of 100 ms
    assert time.monotonic() - started >= 0.28


def test_secrets_and_tokens_never_reach_logs_reprs_or_errors(double, caplog):
    caplog.set_level(logging.DEBUG)
    c = client(double)
    double.fail("externalcontact/get", 40014)
    c.get_external_contact(LI)
    tokens = double.tokens()
    assert tokens
    assert double.gettoken_calls() == 2
    unreachable = WeComClient(
        CORP, SECRET, api_base="http://127.0.0.1:9/cgi-bin/", token_cache=TokenCache(), timeout=1
    )
    with pytest.raises(WeComUnavailable) as info:
        unreachable.get_external_contact(LI)
    rendered = "".join(traceback.format_exception(info.value))
    # Our process's lines (werkzeug's are the remote double's own access log).
    ours = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if r.name != "werkzeug")
    assert "access_token=***" in ours  # urllib3's request lines were redacted
    texts = [ours, repr(c), str(c), repr(c.tokens), str(info.value), rendered]
    for text in texts:
        assert SECRET not in text
        assert SECRET[:10] not in text
        for token in tokens:
            assert token not in text
    assert c.access_token_key.endswith("_access_token")
    assert SECRET[:10] not in c.access_token_key


def test_redact_url():
    assert redact_url("GET /gettoken?corpid=ww1&corpsecret=abc&x=1") == (
        "GET /gettoken?corpid=ww1&corpsecret=***&x=1"
    )
    assert redact_url("/x?access_token=T0K&y=2") == "/x?access_token=***&y=2"


def test_settings_read_the_api_base_and_rate():
    settings = Settings.from_env({})
    assert settings.wecom_api_base == DEFAULT_API_BASE
    assert settings.wecom_rate == 5
    settings = Settings.from_env(
        {"SIYU_WECOM_API_BASE": "http://127.0.0.1:8099/wecom/cgi-bin/", "SIYU_WECOM_RATE": "2.5"}
    )
    assert settings.wecom_api_base == "http://127.0.0.1:8099/wecom/cgi-bin/"
    assert settings.wecom_rate == 2.5


def test_a_group_sends_tasks_and_results_of_every_page(double):
    """get_groupmsg_task / get_groupmsg_send_result follow ``next_cursor`` (the fake pages)."""
    for i in range(3):
        double.add_contact(CORP, f"wmPage{i}", FOLLOW, name=f"客{i}", type=1)
    c = client(double)
    msgid = c.add_msg_template({"chat_type": "single", "sender": "zhangwei",
                                "external_userid": [f"wmPage{i}" for i in range(3)],
                                "text": {"content": "hi"}})["msgid"]  # fmt: skip
    results = c.get_groupmsg_send_result(msgid, "zhangwei", limit=2)
    assert sorted(r["external_userid"] for r in results) == [f"wmPage{i}" for i in range(3)]
    assert double.count("externalcontact/get_groupmsg_send_result") == 2  # two pages
    assert [t["userid"] for t in c.get_groupmsg_task(msgid, limit=1)] == ["zhangwei"]
