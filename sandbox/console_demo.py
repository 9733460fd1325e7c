"""What `siyu dev --demo` puts in each demo tenant's library so that a newcomer's console is
never empty (docs/console.md "Demo data"): content items across the model's stages and the
buying roles (and one general welcome item), two segments, three campaigns (a weekly series to
customer groups, one fired by a stage, one hourly to single contacts with a 10 % holdout so its
effect report fills as the demo runs) and two channel codes with welcome content, corp tags and
(one) a daily cap.

Everything goes through the admin API over HTTP with an admin token (segments are an admin's),
so the demo data is validated, stored and audited exactly as staff's would be; the codes are
made in WeCom (the fake, in dev) by the API itself. Seeding again finds what is there (by
content title, segment id, campaign name and code id) and adds only what is missing. The fake
keeps WeCom's configs in memory: before the codes, the tenant's existing codes are put back in
a fake that restarted (``POST /_fake/channel-codes/restore``), so they still scan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests

TIMEOUT_S = 10


def _wecom(text: str, title: str, url: str) -> dict:
    link = {"title": title, "url": url}
    return {"wecom": {"text": text, "attachments": [{"msgtype": "link", "link": link}]}}


# (title, format, stages, roles, topics, text) per mode; links on the demo companies' sites.
B2B_CONTENT = [
    (
        "白皮书：数字化工厂的五个起点",
        "whitepaper",
        ["attention", "interest"],
        [],
        ["digital-factory"],
        "本周白皮书：数字化工厂从哪里开始",
    ),
    (
        "2026 离散制造 MES 行业报告",
        "industry_report",
        ["interest", "search"],
        ["business"],
        ["mes"],
        "行业报告：离散制造的 MES 选型趋势",
    ),
    (
        "MES 接口与部署规格说明",
        "product_spec",
        ["search", "comparison"],
        ["technical"],
        ["mes", "integration"],
        "技术规格：接口、部署与数据安全",
    ),
    (
        "苏州精工：设备联网 90 天交付案例",
        "case_study",
        ["comparison", "examination"],
        ["decision_maker", "business"],
        ["case"],
        "客户案例：90 天完成设备联网",
    ),
    (
        "三年总体拥有成本（TCO）测算表",
        "proposal",
        ["examination"],
        ["finance", "procurement"],
        ["tco"],
        "总体拥有成本测算：三年账一目了然",
    ),
    (
        "数据合规与等保 2.0 说明",
        "product_spec",
        ["examination"],
        ["compliance"],
        ["compliance"],
        "数据合规说明：等保 2.0 与数据出境",
    ),
    (
        "上线第一周：实施指南",
        "onboarding_guide",
        ["action"],
        [],
        ["onboarding"],
        "上线指南：第一周要做的五件事",
    ),
    (
        "客户线上沙龙：精益生产实践",
        "webinar_invite",
        ["share", "action"],
        [],
        ["community"],
        "诚邀参加客户沙龙：精益生产实践分享",
    ),
]
# The channel codes' general welcome: a contact new to outreach has no stage yet, so only an
# item without stages or roles fits it (services/outreach/welcome_choice.py).
B2B_WELCOME = ("欢迎资料包：数字化工厂方案一览", "article", [], [], ["welcome"],
               "感谢添加！这是我们的数字化工厂方案资料包")  # fmt: skip
B2C_WELCOME = ("欢迎加入花间茶饮会员", "article", [], [], ["welcome"],
               "欢迎加入花间茶饮！点此查看会员权益")  # fmt: skip
B2C_CONTENT = [
    (
        "新人礼：第一杯半价",
        "promotion",
        ["acquisition"],
        [],
        ["welcome"],
        "欢迎加入花间茶饮，第一杯半价",
    ),
    ("春茶品鉴课", "class_invite", ["activation"], [], ["tea-class"], "周六春茶品鉴课，欢迎报名"),
    (
        "会员积分怎么用",
        "article",
        ["activation", "retention"],
        [],
        ["membership"],
        "会员积分攻略：三步用好积分",
    ),
    (
        "当季新品：桂花乌龙",
        "article",
        ["retention", "revenue"],
        [],
        ["new-product"],
        "当季新品桂花乌龙上市",
    ),
    ("邀请好友各得一杯", "promotion", ["referral"], [], ["referral"], "邀请好友，各得一杯"),
]


@dataclass(frozen=True)
class DemoLibrary:
    content: list[dict]
    segments: list[dict]
    campaigns: list[dict]  # content given by title (``_item`` / ``_series``), resolved at seeding
    # Channel codes: welcome content by title (``_welcome``), corp tags by name (``_tags``).
    codes: list[dict] = field(default_factory=list)


def _items(rows: list[tuple], site: str) -> list[dict]:
    return [
        {
            "title": title,
            "format": fmt,
            "stages": stages,
            "roles": roles,
            "topics": topics,
            "payloads": _wecom(text, title, f"{site}/{i}"),
        }
        for i, (title, fmt, stages, roles, topics, text) in enumerate(rows, 1)
    ]


def library(mode: str) -> DemoLibrary:
    """The demo library of a tenant of ``mode`` (b2b: AISCEAS and roles; b2c: AARRR)."""
    if mode == "b2b":
        return DemoLibrary(
            content=_items([*B2B_CONTENT, B2B_WELCOME], "https://acme.example/library"),
            segments=[
                {
                    "segment_id": "tech-evaluators",
                    "name": "技术评估人",
                    "rule": {
                        "all": [
                            {"attribute": "role", "equals": "technical"},
                            {"stage_at_least": "search"},
                        ]
                    },
                },
                {
                    "segment_id": "deciders-comparing",
                    "name": "比较阶段的决策者",
                    "rule": {
                        "all": [
                            {"attribute": "role", "equals": "decision_maker"},
                            {"attribute": "stage", "in": ["comparison", "examination"]},
                        ]
                    },
                },
            ],
            campaigns=[
                {
                    "name": "每周二行业洞察（客户群）",
                    "channel": "wecom_group",
                    "audience": {"stages": ["attention", "interest", "search"]},
                    "_series": [B2B_CONTENT[0][0], B2B_CONTENT[1][0], B2B_CONTENT[2][0]],
                    "trigger": {"schedule": {"cron": "0 10 * * TUE"}},
                    "quiet_hours": {"start": "21:00", "end": "08:00"},
                },
                {
                    "name": "进入比较阶段：发送客户案例",
                    "channel": "wecom_single",
                    "audience": {"roles": ["decision_maker", "business"]},
                    "_item": B2B_CONTENT[3][0],
                    "trigger": {"event": {"stage_entered": "comparison", "delay_minutes": 60}},
                    "quiet_hours": {"start": "21:00", "end": "08:00"},
                },
                {
                    "name": "每小时白皮书（10% 对照组）",
                    "channel": "wecom_single",
                    "audience": {"stages": ["attention", "interest"]},
                    "_item": B2B_CONTENT[0][0],
                    # Hourly (the tenants' shortest schedule by default), so that its effect
                    # report fills within the demo's first hours: the demo traffic replays its
                    # history in the past, where stage triggers do not fire.
                    "trigger": {"schedule": {"cron": "0 * * * *"}},
                    "holdout_percent": 10,
                },
            ],
            codes=[
                {
                    "code_id": "expo-booth",
                    "kind": "contact",
                    "name": "展会展位码",
                    "channel": "expo",
                    "staff": ["zhangwei", "lina"],
                    "daily_cap": 50,
                    "_tags": ["展会"],
                    "_welcome": [B2B_WELCOME[0], B2B_CONTENT[0][0], B2B_CONTENT[3][0]],
                },
                {
                    "code_id": "sales-card-wangfang",
                    "kind": "contact",
                    "name": "王芳的名片码",
                    "channel": "sales_card",
                    "staff": ["wangfang"],
                    "_tags": ["销售拓展"],
                    "_welcome": [B2B_WELCOME[0], B2B_CONTENT[2][0]],
                },
            ],
        )
    return DemoLibrary(
        content=_items([*B2C_CONTENT, B2C_WELCOME], "https://bloom.example/tea"),
        segments=[
            {"segment_id": "regulars", "name": "常客", "rule": {"stage_at_least": "retention"}},
            {
                "segment_id": "new-members",
                "name": "新会员",
                "rule": {"attribute": "stage", "in": ["acquisition", "activation"]},
            },
        ],
        campaigns=[
            {
                "name": "每周五新品与茶课（客户群）",
                "channel": "wecom_group",
                "audience": {"stages": ["activation", "retention", "revenue"]},
                "_series": [B2C_CONTENT[1][0], B2C_CONTENT[2][0], B2C_CONTENT[3][0]],
                "trigger": {"schedule": {"cron": "0 15 * * FRI"}},
                "quiet_hours": {"start": "22:00", "end": "09:00"},
            },
            {
                "name": "激活后：会员积分攻略",
                "channel": "wecom_single",
                "audience": {"stages": ["activation"]},
                "_item": B2C_CONTENT[2][0],
                "trigger": {"event": {"stage_entered": "activation", "delay_minutes": 30}},
                "quiet_hours": {"start": "22:00", "end": "09:00"},
            },
            {
                "name": "每小时当季新品（10% 对照组）",
                "channel": "wecom_single",
                "audience": {"stages": ["activation", "revenue"]},
                "_item": B2C_CONTENT[3][0],
                "trigger": {"schedule": {"cron": "0 * * * *"}},
                "holdout_percent": 10,
            },
        ],
        codes=[
            {
                "code_id": "mall-popup",
                "kind": "contact",
                "name": "商场快闪店码",
                "channel": "store",
                "staff": ["liuyang", "chenjing"],
                "daily_cap": 100,
                "_tags": ["商场快闪", "新客"],
                "_welcome": [B2C_WELCOME[0], B2C_CONTENT[0][0], B2C_CONTENT[1][0]],
            },
            {
                "code_id": "friend-referral",
                "kind": "contact",
                "name": "老带新推荐码",
                "channel": "referral",
                "staff": ["zhaolei"],
                "_tags": ["新客"],
                "_welcome": [B2C_WELCOME[0], B2C_CONTENT[4][0]],
            },
        ],
    )


class SeedError(RuntimeError):
    """The API refused a demo item: the demo data no longer fits the API."""


class Api:
    """The admin API of one tenant, as its token sees it."""

    def __init__(self, base: str, token: str):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        response = requests.request(
            method, f"{self.base}{path}", json=body, timeout=TIMEOUT_S,
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        return response.status_code, response.json() if response.content else {}

    def must(self, method: str, path: str, body: dict | None = None) -> dict:
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise SeedError(f"{method} {path}: {status} {answer}")
        return answer

    def all(self, path: str) -> list[dict]:
        items, cursor = [], None
        while True:
            answer = self.must("GET", path + (f"?cursor={cursor}" if cursor else ""))
            items += answer["items"]
            cursor = answer.get("next_cursor")
            if not cursor:
                return items


@dataclass(frozen=True)
class FakeCorp:
    """The fake WeCom (dev) and the tenant's corp in it: its admin endpoints restore configs."""

    url: str  # the fake server's root, e.g. http://127.0.0.1:8099
    corp_id: str


def corp_tags(tenant_id: str, mode: str, *, seed: int, contacts: int) -> dict[str, str]:
    """The fake corp's tag ids by name: it builds them from the same seed and size."""
    from sandbox.fake_wechat.seed import corp_tag_library

    return {t.name: t.tag_id for t in corp_tag_library(tenant_id, mode, seed=seed,
                                                          contacts=contacts)}  # fmt: skip


def seed(api: Api, mode: str, *, tags: Mapping[str, str] | None = None,
         fake: FakeCorp | None = None, say: Callable[[str], None] = lambda _: None,
         ) -> dict[str, int]:  # fmt: skip
    """Add what is missing of the demo library; launch the campaigns it creates. Returns how
    many of each were created. ``tags``: the corp's tag ids by name (None: codes without tags);
    ``fake``: where to restore the tenant's codes first; ``say``: what was left out and why (a
    channel code WeCom could not make leaves the rest seeded)."""
    demo = library(mode)
    made = {"content": 0, "segments": 0, "campaigns": 0, "channel_codes": 0}
    ids = {row["title"]: row["content_id"] for row in api.all("/content")}
    for item in demo.content:
        if item["title"] not in ids:
            ids[item["title"]] = api.must("POST", "/content", item)["content_id"]
            made["content"] += 1
    for segment in demo.segments:
        status, answer = api.call("POST", "/segments", segment)
        if status == 201:
            made["segments"] += 1
        elif status != 409:  # 409: there already
            raise SeedError(f"POST /segments: {status} {answer}")
    named = {row["name"] for row in api.all("/campaigns")}
    for campaign in demo.campaigns:
        if campaign["name"] in named:
            continue
        body = {k: v for k, v in campaign.items() if not k.startswith("_")}
        if "_item" in campaign:
            body["content"] = {"item": ids[campaign["_item"]]}
        else:
            body["content"] = {"series": [ids[title] for title in campaign["_series"]]}
        created = api.must("POST", "/campaigns", body)
        api.must("POST", f"/campaigns/{created['campaign_id']}/launch")
        made["campaigns"] += 1
    existing = api.must("GET", "/channel-codes")["items"]
    if fake is not None and existing:
        _restore(fake, existing, say)
    have = {row["code_id"] for row in existing}
    for code in demo.codes:
        if code["code_id"] not in have and _make_code(api, code, ids, tags or {}, say):
            made["channel_codes"] += 1
    return made


def _restore(fake: FakeCorp, codes: list[dict], say: Callable[[str], None]) -> None:
    try:
        answer = requests.post(f"{fake.url}/_fake/channel-codes/restore", timeout=TIMEOUT_S,
                               json={"corpid": fake.corp_id, "codes": codes})  # fmt: skip
    except requests.RequestException as exc:
        say(f"channel codes not restored in the fake WeCom ({type(exc).__name__})")
        return
    if answer.ok and answer.json().get("restored"):
        say(f"{answer.json()['restored']} channel code(s) restored in the fake WeCom")


def _make_code(api: Api, code: dict, ids: Mapping[str, str], tags: Mapping[str, str],
               say: Callable[[str], None]) -> bool:  # fmt: skip
    """Create one demo code; False (and said why) when WeCom or the API would not."""
    body = {k: v for k, v in code.items() if not k.startswith("_")}
    body["welcome_content"] = [ids[title] for title in code["_welcome"]]
    body["tags"] = [tags[name] for name in code["_tags"] if name in tags]
    status, answer = api.call("POST", "/channel-codes", body)
    error = answer.get("error") or {}
    if status == 400 and body["tags"] and any(k.startswith("tags") for k in error.get("details")
                                              or {}):  # fmt: skip
        # The corp's tags are not the ones the fake's seed gives (another seed, a real corp).
        say(f"channel code {code['code_id']}: the corp has not its tags; made without them")
        status, answer = api.call("POST", "/channel-codes", {**body, "tags": []})
        error = answer.get("error") or {}
    if status == 201:
        return True
    if status in (409, 503):  # the code id was used (and deleted), no WeCom app, WeCom down
        say(f"channel code {code['code_id']} not made: {error.get('message') or status}")
        return False
    raise SeedError(f"POST /channel-codes ({code['code_id']}): {status} {answer}")
