"""`siyu fake-wechat`: the WeChat OA / WeCom stand-in mimics the platform (docs/platform.md)."""

from __future__ import annotations

import pytest

from sandbox.fake_wechat import FakeConfig, build_state, create_app
from sandbox.simulator.plan import requests_for
from shared.config import Settings
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants

TENANTS = load_tenants(DEMO_TENANTS_PATH)
ACME, BLOOM = TENANTS.get("acme"), TENANTS.get("bloom")
ACME_CORP, BLOOM_CORP = ACME.wecom.corp_id, BLOOM.wecom.corp_id
ACME_APP = ACME.wechat_oa[0].app_id
WE = "/wecom/cgi-bin"
OA = "/oa/cgi-bin"


class Clock:
    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, monkeypatch, *, contacts: int = 60, seed: int = 1, **config):
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env({"SIYU_TENANTS": str(DEMO_TENANTS_PATH)})
    state = build_state(
        settings, seed=seed, contacts=contacts, config=FakeConfig(**config), clock=clock
    )
    return state, create_app(state).test_client()


@pytest.fixture
def fake(clock, monkeypatch):
    return make(clock, monkeypatch)


def wecom_token(client, corp: str = ACME_CORP, secret: str = DEMO_SECRETS["ACME_WECOM_SECRET"]):
    body = client.get(f"{WE}/gettoken", query_string={"corpid": corp, "corpsecret": secret}).json
    assert body["errcode"] == 0, body
    return body["access_token"]


def oa_token(client):
    query = {
        "grant_type": "client_credential",
        "appid": ACME_APP,
        "secret": DEMO_SECRETS["ACME_OA_SECRET"],
    }
    body = client.get(f"{OA}/token", query_string=query).json
    assert "errcode" not in body, body
    assert body["expires_in"] == 7200, body
    return body["access_token"]


def contact(client, token: str, external_userid: str, cursor: str = "") -> dict:
    query = {"access_token": token, "external_userid": external_userid, "cursor": cursor}
    return client.get(f"{WE}/externalcontact/get", query_string=query).json


# --- tokens -------------------------------------------------------------------------------------


def test_wecom_token_is_stable_until_it_expires(fake, clock):
    _, client = fake
    token = wecom_token(client)
    clock.advance(3600)
    again = client.get(
        f"{WE}/gettoken",
        query_string={"corpid": ACME_CORP, "corpsecret": DEMO_SECRETS["ACME_WECOM_SECRET"]},
    ).json
    assert again["access_token"] == token
    assert again["expires_in"] == 3600
    assert client.get(f"{WE}/get_api_domain_ip?access_token={token}").json["errcode"] == 0
    clock.advance(3600)
    assert client.get(f"{WE}/get_api_domain_ip?access_token={token}").json["errcode"] == 42001
    fresh = wecom_token(client)
    assert fresh != token
    assert client.get(f"{WE}/get_api_domain_ip?access_token={fresh}").json["errcode"] == 0


def test_wecom_credentials_and_token_errors(fake):
    _, client = fake
    secret = DEMO_SECRETS["ACME_WECOM_SECRET"]

    def gettoken(**query):
        return client.get(f"{WE}/gettoken", query_string=query).json["errcode"]

    assert gettoken(corpid="wwnotacorp0000", corpsecret=secret) == 40013
    assert gettoken(corpid=ACME_CORP, corpsecret="wrong") == 40001
    assert gettoken(corpid=BLOOM_CORP, corpsecret=secret) == 40001  # another corp's secret
    assert gettoken(corpsecret=secret) == 41002
    assert gettoken(corpid=ACME_CORP) == 41004
    body = client.get(f"{WE}/externalcontact/get?external_userid=wmxxxxxxxxxxxx").json
    assert body["errcode"] == 41001
    assert "more info at https://open.work.weixin.qq.com/devtool/query?e=41001" in body["errmsg"]
    assert client.get(f"{WE}/get_api_domain_ip?access_token=nope").json["errcode"] == 40014
    # A WeCom token is no OA token.
    assert (
        client.get(f"{OA}/getcallbackip?access_token={wecom_token(client)}").json["errcode"]
        == 40001
    )


def test_revoked_token_is_invalid_and_a_new_one_is_issued(fake):
    _, client = fake
    token = wecom_token(client)
    assert client.post("/_fake/tokens/revoke", json={"access_token": token}).json == {"revoked": 1}
    assert client.get(f"{WE}/get_api_domain_ip?access_token={token}").json["errcode"] == 40014
    assert wecom_token(client) != token


def test_short_ttl_and_the_admin_clock(clock, monkeypatch):
    _, client = make(clock, monkeypatch, token_ttl=60)
    body = client.get(
        f"{WE}/gettoken",
        query_string={"corpid": ACME_CORP, "corpsecret": DEMO_SECRETS["ACME_WECOM_SECRET"]},
    ).json
    assert body["expires_in"] == 60
    client.post("/_fake/clock", json={"advance": 61})
    url = f"{WE}/get_api_domain_ip?access_token={body['access_token']}"
    assert client.get(url).json["errcode"] == 42001


def test_oa_token_rotation_keeps_the_old_token_for_the_grace_period(fake, clock):
    _, client = fake
    first = oa_token(client)
    clock.advance(60)
    second = oa_token(client)
    assert second != first
    ping = f"{OA}/getcallbackip?access_token="
    assert client.get(ping + first).json == {"ip_list": ["127.0.0.1"]}  # within ~5 min
    clock.advance(299)
    assert "errcode" not in client.get(ping + first).json
    clock.advance(2)
    body = client.get(ping + first).json
    assert body["errcode"] == 40001
    assert "rid: " in body["errmsg"]
    assert "errcode" not in client.get(ping + second).json


def test_oa_credentials(fake):
    _, client = fake

    def token(**query):
        return client.get(f"{OA}/token", query_string=query).json.get("errcode", 0)

    secret = DEMO_SECRETS["ACME_OA_SECRET"]
    assert token(grant_type="client_credential", appid="wx0000000000000000", secret=secret) == 40013
    assert token(grant_type="client_credential", appid=ACME_APP, secret="wrong") == 40125
    assert token(grant_type="password", appid=ACME_APP, secret=secret) == 40002
    assert token(grant_type="client_credential", appid=ACME_APP) == 41004


def test_oa_stable_token_does_not_rotate(fake, clock):
    _, client = fake
    body = {"grant_type": "client_credential", "appid": ACME_APP}
    body["secret"] = DEMO_SECRETS["ACME_OA_SECRET"]
    first = client.post(f"{OA}/stable_token", json=body).json
    clock.advance(100)
    second = client.post(f"{OA}/stable_token", json=body).json
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == 7100
    # `token` and `stable_token` are isolated: a refetch of one leaves the other alone.
    oa_token(client)
    oa_token(client)
    clock.advance(600)
    ping = f"{OA}/getcallbackip?access_token={first['access_token']}"
    assert "errcode" not in client.get(ping).json
    # force_refresh rotates (old one in grace), at most once per 30 s.
    forced = client.post(f"{OA}/stable_token", json={**body, "force_refresh": True}).json
    assert forced["access_token"] != first["access_token"]
    again = client.post(f"{OA}/stable_token", json={**body, "force_refresh": True}).json
    assert again["errcode"] == 45011
    assert "errcode" not in client.get(ping).json
    clock.advance(301)
    assert client.get(ping).json["errcode"] == 40001
    bad = client.post(f"{OA}/stable_token", data="not json", content_type="application/json").json
    assert bad["errcode"] == 47001


# --- limits and faults --------------------------------------------------------------------------


def test_rate_limit_45009_and_recovery_after_the_window(clock, monkeypatch):
    _, client = make(clock, monkeypatch, rate_limit=3, rate_window=60, rate_penalty=120)
    token = wecom_token(client)
    url = f"{WE}/get_api_domain_ip?access_token={token}"
    assert [client.get(url).json["errcode"] for _ in range(4)] == [0, 0, 0, 45009]
    clock.advance(61)  # the penalty outlasts the window: back off for minutes
    assert client.get(url).json["errcode"] == 45009
    clock.advance(60)
    assert client.get(url).json["errcode"] == 0
    # An operator can lift the block early.
    assert [client.get(url).json["errcode"] for _ in range(3)] == [0, 0, 45009]
    client.post("/_fake/reset-limits")
    assert client.get(url).json["errcode"] == 0


def test_gettoken_is_throttled(clock, monkeypatch):
    _, client = make(clock, monkeypatch, gettoken_limit=2, gettoken_window=60)
    query = {"corpid": ACME_CORP, "corpsecret": DEMO_SECRETS["ACME_WECOM_SECRET"]}
    codes = [client.get(f"{WE}/gettoken", query_string=query).json["errcode"] for _ in range(3)]
    assert codes == [0, 0, 45009]
    clock.advance(60)
    assert client.get(f"{WE}/gettoken", query_string=query).json["errcode"] == 0


def test_oa_token_daily_quota(clock, monkeypatch):
    _, client = make(clock, monkeypatch, oa_token_daily=2)
    oa_token(client)
    oa_token(client)
    query = {"grant_type": "client_credential", "appid": ACME_APP}
    query["secret"] = DEMO_SECRETS["ACME_OA_SECRET"]
    body = client.get(f"{OA}/token", query_string=query).json
    assert body["errcode"] == 45009
    assert "daily quota" in body["errmsg"]
    clock.advance(86400)
    assert "access_token" in client.get(f"{OA}/token", query_string=query).json


def test_injected_system_busy_for_the_next_calls(fake):
    state, client = fake
    token = wecom_token(client)
    response = client.post(
        "/_fake/inject", json={"errcode": -1, "count": 2, "path": "externalcontact/get"}
    )
    assert response.status_code == 201
    ext = next(iter(state.worlds[ACME_CORP].contacts))
    assert client.get(f"{WE}/get_api_domain_ip?access_token={token}").json["errcode"] == 0
    busy = contact(client, token, ext)
    assert busy["errcode"] == -1
    assert busy["errmsg"].startswith("system busy")
    assert contact(client, token, ext)["errcode"] == -1
    assert contact(client, token, ext)["errcode"] == 0
    assert client.get("/_fake/inject").json == {"injections": []}
    client.post("/_fake/inject", json={"errcode": 45009, "api": "oa"})
    assert client.get(f"{WE}/get_api_domain_ip?access_token={token}").json["errcode"] == 0
    assert client.get(f"{OA}/getcallbackip").json["errcode"] == 45009
    calls = client.get("/_fake/calls").json["calls"]
    assert [c["errcode"] for c in calls[-3:]] == [0, 0, 45009]
    assert {"seq", "method", "path", "api", "errcode", "at"} <= set(calls[-1])
    assert calls[-1]["path"] == "getcallbackip"
    assert calls[-1]["method"] == "GET"
    assert "access_token" not in str(calls)  # the log never holds tokens


# --- customer contact ---------------------------------------------------------------------------


def test_b2b_contact_detail(fake):
    state, client = fake
    token = wecom_token(client)
    world = state.worlds[ACME_CORP]
    ext, record = next(
        (e, c) for e, c in world.contacts.items() if c.person.unionid and c.person.title
    )
    body = contact(client, token, ext)
    assert body["errcode"] == 0
    assert body["errmsg"] == "ok"
    detail = body["external_contact"]
    assert detail["type"] == 2
    assert detail["external_userid"] == ext
    assert detail["name"] == record.person.name
    assert detail["unionid"] == record.person.unionid
    assert detail["position"] == record.person.title
    assert detail["corp_name"]
    assert detail["avatar"].startswith("https://")
    assert detail["gender"] in (0, 1, 2)
    follow = body["follow_user"][0]
    assert follow["userid"] == record.person.owner_userid
    assert {"remark", "description", "createtime", "tags", "state", "add_way"} <= set(follow)
    # Some B2B contacts carry a buying-role tag ("角色"), sometimes not the title's role.
    role_tags = [
        (c.person.role, t["tag_name"])
        for c in world.contacts.values()
        for t in c.follow_user[0]["tags"]
        if t["group_name"] == "角色"
    ]
    assert 0 < len(role_tags) < len(world.contacts)
    assert {name for _, name in role_tags} <= {"决策人", "技术", "采购", "财务", "法务", "业务"}
    tag = next(t for c in world.contacts.values() for t in c.follow_user[0]["tags"])
    assert tag["type"] in (1, 2)
    assert set(tag) == {"group_name", "tag_name", "type", "tag_id"}


def test_b2c_contact_is_type_1_without_company(fake):
    state, client = fake
    token = wecom_token(client, BLOOM_CORP, DEMO_SECRETS["BLOOM_WECOM_SECRET"])
    ext = next(iter(state.worlds[BLOOM_CORP].contacts))
    detail = contact(client, token, ext)["external_contact"]
    assert detail["type"] == 1
    assert "position" not in detail
    assert "corp_name" not in detail
    # Each corp sees only its own customers.
    acme = next(iter(state.worlds[ACME_CORP].contacts))
    assert contact(client, token, acme)["errcode"] == 84061


def test_follow_user_paging_with_cursor(clock, monkeypatch):
    state, client = make(clock, monkeypatch, follow_user_page=1)
    token = wecom_token(client)
    ext, record = next(
        (e, c) for e, c in state.worlds[ACME_CORP].contacts.items() if len(c.follow_user) >= 2
    )
    seen, cursor = [], ""
    for _ in range(10):
        body = contact(client, token, ext, cursor)
        assert body["errcode"] == 0
        assert len(body["follow_user"]) == 1
        seen += [f["userid"] for f in body["follow_user"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [f["userid"] for f in record.follow_user]
    assert contact(client, token, ext, "garbage!")["errcode"] == 40058


def test_unknown_contact_is_84061(fake):
    _, client = fake
    token = wecom_token(client)
    assert contact(client, token, "wmNOBODYxxxxxxxxxxxxxxxxxxxxxxxx")["errcode"] == 84061
    assert contact(client, token, "not-an-id")["errcode"] == 40096


def test_groupchat_get(fake):
    state, client = fake
    token = wecom_token(client, BLOOM_CORP, DEMO_SECRETS["BLOOM_WECOM_SECRET"])
    world = state.worlds[BLOOM_CORP]
    chat_id = next(iter(world.chats))
    url = f"{WE}/externalcontact/groupchat/get?access_token={token}"
    body = client.post(url, json={"chat_id": chat_id, "need_name": 1}).json
    assert body["errcode"] == 0
    chat = body["group_chat"]
    assert chat["chat_id"] == chat_id
    assert chat["owner"]
    members = chat["member_list"]
    assert any(m["userid"] == chat["owner"] and m["type"] == 1 for m in members)
    customers = [m for m in members if m["type"] == 2]
    assert customers
    assert all(m["userid"] in world.contacts and m["name"] for m in customers)
    plain = client.post(url, json={"chat_id": chat_id}).json["group_chat"]["member_list"]
    assert all("name" not in m for m in plain)
    assert client.post(url, json={"chat_id": "wrNOPE"}).json["errcode"] == 40050
    # The B2B corp has no customer groups until the simulator's journeys create them.
    acme = wecom_token(client)
    acme_url = f"{WE}/externalcontact/groupchat/get?access_token={acme}"
    assert client.post(acme_url, json={"chat_id": chat_id}).json["errcode"] == 40050
    assert client.get(url).json["errcode"] == 43002


def test_unionid_to_external_userid(fake):
    state, client = fake
    token = wecom_token(client)
    record = next(c for c in state.worlds[ACME_CORP].contacts.values() if c.person.unionid)
    url = f"{WE}/externalcontact/unionid_to_external_userid?access_token={token}"
    body = {"unionid": record.person.unionid, "openid": record.person.openid}
    answer = client.post(url, json=body).json
    assert answer == {
        "errcode": 0,
        "errmsg": "ok",
        "external_userid": record.person.external_userid,
    }
    assert client.post(url, json={**body, "openid": "oOther"}).json["errcode"] == 84061
    assert client.post(url, json={"unionid": body["unionid"]}).json["errcode"] == 40058


def test_corp_tags_and_unknown_api(fake):
    _, client = fake
    token = wecom_token(client)
    groups = client.post(
        f"{WE}/externalcontact/get_corp_tag_list?access_token={token}", json={}
    ).json["tag_group"]
    assert "角色" in {g["group_name"] for g in groups}
    response = client.get(f"{WE}/no/such/api?access_token={token}")
    assert response.status_code == 404
    assert response.json["errcode"] == 48001


# --- seeding, ops -------------------------------------------------------------------------------


def test_seeding_is_deterministic_and_matches_the_simulator(clock, monkeypatch):
    a, _ = make(clock, monkeypatch, seed=7)
    b, _ = make(clock, monkeypatch, seed=7)
    c, _ = make(clock, monkeypatch, seed=8)
    for corp in (ACME_CORP, BLOOM_CORP):
        wa, wb = a.worlds[corp], b.worlds[corp]
        assert [x.external_contact for x in wa.contacts.values()] == [
            x.external_contact for x in wb.contacts.values()
        ]
        assert [x.follow_user for x in wa.contacts.values()] == [
            x.follow_user for x in wb.contacts.values()
        ]
        assert [ch.detail for ch in wa.chats.values()] == [ch.detail for ch in wb.chats.values()]
        assert set(wa.contacts) != set(c.worlds[corp].contacts)
    # The same people `siyu simulate --seed 7 --contacts 60` sends callbacks about.
    population, _ = requests_for(
        ACME, contacts=60, seed=7, base_url="http://127.0.0.1:1", events_token=None
    )
    assert list(a.worlds[ACME_CORP].contacts) == [p.external_userid for p in population.people]
    assert set(population.tags) <= {t.tag_id for t in a.worlds[ACME_CORP].tags}


def test_ops_endpoints_and_state(fake):
    _, client = fake
    wecom_token(client)
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert b"siyu_fake_wechat_calls_total" in client.get("/metrics").data
    summary = client.get("/_fake/state").json
    assert {c["tenant"] for c in summary["corps"]} == {"acme", "bloom"}
    assert summary["tokens"][0]["token"].endswith("...")  # never the whole token
    assert client.patch("/_fake/config", json={"rate_limit": 5}).json["rate_limit"] == 5
    assert client.patch("/_fake/config", json={"nope": 1}).status_code == 400
