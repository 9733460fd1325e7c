"""What `siyu dev --demo` puts in each demo tenant's library so that a newcomer's console is
never empty (docs/console.md "Demo data"): content items across the model's stages and the
buying roles, two segments and two campaigns, one a weekly series to customer groups and one
fired by a stage.

Everything goes through the admin API over HTTP with an admin token (segments are an admin's),
so the demo data is validated, stored and audited exactly as staff's would be. Seeding again
finds what is there (by content title, segment id and campaign name) and adds only what is
missing.
"""

from __future__ import annotations

from dataclasses import dataclass

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
            content=_items(B2B_CONTENT, "https://acme.example/library"),
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
            ],
        )
    return DemoLibrary(
        content=_items(B2C_CONTENT, "https://bloom.example/tea"),
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


def seed(api: Api, mode: str) -> dict[str, int]:
    """Add what is missing of the demo library; launch the campaigns it creates. Returns how
    many of each were created."""
    demo = library(mode)
    made = {"content": 0, "segments": 0, "campaigns": 0}
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
    return made
