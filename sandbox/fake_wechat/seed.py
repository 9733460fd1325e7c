"""The fake's world: each tenant's WeCom customers, tags and customer groups, built from the same
deterministic people ``siyu simulate`` sends webhooks about (sandbox/population/).

Pure: no I/O and no clock. The population is generated exactly like the simulator does for a seed
(``requests_for`` in sandbox/simulator/plan.py), so the external_userids, unionids and chat ids
in the simulator's callbacks are the ones ``externalcontact/get`` and ``groupchat/get`` know.
Details the population does not model (gender, avatar, extra followers, staff tags, group members)
come from a random generator seeded per person or chat, so they do not change when ``contacts``
changes, and never disturb the population's own draws.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from sandbox.population.model import EPOCH, STAFF, Company, Person, Population
from sandbox.population.texts import B2B_SCENES, B2C_SCENES
from shared.vocabulary import BUYING_ROLES

# Buying-role hints that staff put on B2B contacts (tag group "角色"); services/segment/roles.py
# reads "角色:<tag_name>" as a role with confidence 1.0.
ROLE_TAGS = {
    "decision_maker": "决策人",
    "technical": "技术",
    "procurement": "采购",
    "finance": "财务",
    "compliance": "法务",
    "business": "业务",
}
ROLE_TAG_SHARE = 0.4  # of B2B contacts carry a role tag from their owner...
ROLE_TAG_DISAGREES = 0.2  # ...and this share of those names another role than the title suggests

_B2B_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("角色", tuple(ROLE_TAGS.values())),
    ("客户来源", ("展会", "官网留资", "转介绍", "线上研讨会", "销售拓展")),
    ("意向等级", ("A-高意向", "B-中意向", "C-低意向")),
    ("行业", ("机械", "电子", "汽车零部件", "精密制造", "新材料", "医疗器械", "物流", "化工")),
)
_B2C_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("会员等级", ("普通会员", "银卡会员", "金卡会员", "黑卡会员")),
    ("口味偏好", ("乌龙茶", "绿茶", "花茶", "红茶", "礼盒")),
    ("来源门店", ("上海一店", "上海二店", "北京一店", "广州三店", "商场快闪")),
    ("客户状态", ("新客", "复购", "沉睡", "投诉跟进")),
)
_INDUSTRY_ZH = {
    "machinery": "机械",
    "electronics": "电子",
    "automotive": "汽车零部件",
    "manufacturing": "精密制造",
    "materials": "新材料",
    "medical_devices": "医疗器械",
    "logistics": "物流",
    "chemicals": "化工",
}
# add_way values of the official docs: 1 QR code, 2 mobile search, 3 shared card, 4 group chat,
# 201 shared by a colleague, 202 assigned by the admin.
_ADD_WAYS = (1, 1, 1, 2, 3, 4, 201, 202)
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PERSONAL_TAGS = ("重点跟进", "老客户", "需要回访")


def population_for(seed: int, mode: str, contacts: int) -> Population:
    """The population ``siyu simulate --seed SEED --contacts N`` works with (same derivation)."""
    master = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    return Population.generate(random.Random(master.getrandbits(64)), mode, contacts)  # noqa: S311


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))  # noqa: S311 - reproducible fake data


def _rand(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ID_CHARS) for _ in range(n))


@dataclass(frozen=True)
class Tag:
    group_id: str
    group_name: str
    tag_id: str
    name: str
    order: int
    create_time: int


@dataclass
class Contact:
    external_contact: dict[str, Any]
    follow_user: list[dict[str, Any]]
    person: Person


@dataclass
class GroupChat:
    chat_id: str
    detail: dict[str, Any]  # group_chat without member names
    names: dict[str, str]  # member userid -> name (need_name)


@dataclass
class CorpWorld:
    """One tenant's WeCom corp as the fake knows it."""

    tenant_id: str
    mode: str
    corp_id: str
    contacts: dict[str, Contact] = field(default_factory=dict)  # by external_userid
    by_unionid: dict[str, str] = field(default_factory=dict)  # unionid -> external_userid
    chats: dict[str, GroupChat] = field(default_factory=dict)
    tags: list[Tag] = field(default_factory=list)
    staff: tuple[str, ...] = STAFF

    def customers_of(self, userid: str) -> list[str]:
        return [
            ext
            for ext, contact in self.contacts.items()
            if any(f["userid"] == userid for f in contact.follow_user)
        ]


def build_corp(tenant_id: str, mode: str, corp_id: str, *, seed: int, contacts: int) -> CorpWorld:
    population = population_for(seed, mode, contacts)
    world = CorpWorld(tenant_id=tenant_id, mode=mode, corp_id=corp_id)
    world.tags = _tag_library(population, seed, tenant_id)
    groups: dict[str, list[Tag]] = {}
    for tag in world.tags:
        groups.setdefault(tag.group_name, []).append(tag)
    companies = {c.key: c for c in population.companies}
    for person in population.people:
        if not person.external_userid:
            continue
        company = companies.get(person.company_key or "")
        contact = _contact(person, company, groups, seed, tenant_id)
        world.contacts[person.external_userid] = contact
        if person.unionid:
            world.by_unionid[person.unionid] = person.external_userid
    for chat in population.chats:
        world.chats[chat.chat_id] = _group_chat(
            chat.chat_id, chat.owner, population, seed, tenant_id
        )
    return world


def corp_tag_library(tenant_id: str, mode: str, *, seed: int, contacts: int) -> list[Tag]:
    """The tags ``build_corp`` gives a corp (the demo's channel codes name some of them)."""
    return _tag_library(population_for(seed, mode, contacts), seed, tenant_id)


def _tag_library(population: Population, seed: int, tenant_id: str) -> list[Tag]:
    """The corp's customer tags; the population's tag ids (the ids of the simulator's
    change_external_tag callbacks) are the first ones, so those callbacks name real tags."""
    rng = _rng("fake-wechat", seed, tenant_id, "tags")
    spec = _B2B_GROUPS if population.mode == "b2b" else _B2C_GROUPS
    known = list(population.tags)
    tags = []
    created = EPOCH - 400 * 86400
    for g, (group_name, names) in enumerate(spec):
        group_id = "et" + _rand(rng, 30)
        for order, name in enumerate(names):
            tag_id = known.pop(0) if known else "et" + _rand(rng, 30)
            at = created + g * 86400 + order * 60
            tags.append(Tag(group_id, group_name, tag_id, name, len(names) - order, at))
    return tags


def _avatar(external_userid: str) -> str:
    digest = hashlib.sha1(external_userid.encode()).hexdigest()  # noqa: S324 - not security
    return f"https://wx.qlogo.cn/mmhead/{digest}/0"


def _tag(tag: Tag) -> dict[str, Any]:
    return {"group_name": tag.group_name, "tag_name": tag.name, "type": 1, "tag_id": tag.tag_id}


def _contact(
    person: Person,
    company: Company | None,
    groups: dict[str, list[Tag]],
    seed: int,
    tenant_id: str,
) -> Contact:
    rng = _rng("fake-wechat", seed, tenant_id, person.external_userid)
    b2b = company is not None
    detail: dict[str, Any] = {
        "external_userid": person.external_userid,
        "name": person.name,
        "type": 2 if b2b else 1,
        "avatar": _avatar(person.external_userid),
        "gender": rng.choice((0, 1, 1, 2, 2)),
    }
    if person.unionid:
        detail["unionid"] = person.unionid
    if b2b:
        detail["position"] = person.title or ""
        detail["corp_name"] = company.name
        detail["corp_full_name"] = company.name

    followers = [person.owner_userid]
    others = [s for s in STAFF if s != person.owner_userid]
    rng.shuffle(others)
    followers += others[: rng.choice((0, 0, 0, 1, 1, 2) if b2b else (0, 0, 0, 0, 1))]
    added = EPOCH - rng.randint(1, 300) * 86400 - rng.randint(0, 86399)
    follow_user = []
    for i, userid in enumerate(followers):
        tags = _follow_tags(rng, person, company, groups, primary=i == 0)
        add_way = rng.choice(_ADD_WAYS)
        entry: dict[str, Any] = {
            "userid": userid,
            "remark": (f"{person.name}-{company.name[:8].strip()}" if b2b else person.name)
            if rng.random() < 0.5
            else "",
            "description": (person.title or "") if b2b and rng.random() < 0.5 else "",
            "createtime": added + i * rng.randint(3600, 30 * 86400),
            "tags": tags,
            "state": rng.choice(B2B_SCENES if b2b else B2C_SCENES) if rng.random() < 0.6 else "",
            "add_way": add_way,
            "oper_userid": userid if add_way in (2, 201, 202) else person.external_userid,
        }
        if b2b and rng.random() < 0.3:
            entry["remark_corp_name"] = company.name
        follow_user.append(entry)
    return Contact(detail, follow_user, person)


def _follow_tags(
    rng: random.Random,
    person: Person,
    company: Company | None,
    groups: dict[str, list[Tag]],
    *,
    primary: bool,
) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    if company is not None:
        if primary and person.role and rng.random() < ROLE_TAG_SHARE:
            role = person.role
            if rng.random() < ROLE_TAG_DISAGREES:  # staff know better than the business card
                role = rng.choice([r for r in BUYING_ROLES if r != person.role])
            name = ROLE_TAGS[role]
            tags.append(_tag(next(t for t in groups["角色"] if t.name == name)))
        industry = _INDUSTRY_ZH.get(company.industry)
        if primary and industry:
            tags.append(_tag(next(t for t in groups["行业"] if t.name == industry)))
        for group in ("客户来源", "意向等级"):
            if rng.random() < 0.5:
                tags.append(_tag(rng.choice(groups[group])))
    else:
        for group in groups:
            if rng.random() < (0.7 if primary else 0.3):
                tags.append(_tag(rng.choice(groups[group])))
    if rng.random() < 0.1:  # a member's personal tag: type 2, no tag_id
        tags.append(
            {"group_name": "", "tag_name": rng.choice(_PERSONAL_TAGS), "type": 2, "tag_id": ""}
        )
    return tags


def _group_chat(
    chat_id: str, owner: str, population: Population, seed: int, tenant_id: str
) -> GroupChat:
    rng = _rng("fake-wechat", seed, tenant_id, chat_id)
    created = EPOCH - rng.randint(30, 400) * 86400
    index = [c.chat_id for c in population.chats].index(chat_id) + 1
    label = "会员福利群" if population.mode == "b2c" else "项目交流群"
    staff = [owner, *rng.sample([s for s in STAFF if s != owner], k=rng.randint(0, 2))]
    members: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, userid in enumerate(staff):
        member: dict[str, Any] = {
            "userid": userid,
            "type": 1,
            "join_time": created + i * 60,
            "join_scene": 1,
            "group_nickname": "",
        }
        if i:
            member["invitor"] = {"userid": owner}
        members.append(member)
        names[userid] = userid
    people = population.people
    k = min(len(people), rng.randint(5, 40))
    for person in rng.sample(people, k=k):
        member = {
            "userid": person.external_userid,
            "type": 2,
            "join_time": created + rng.randint(3600, 300 * 86400),
            "join_scene": rng.choice((1, 2, 3, 3)),
            "invitor": {"userid": rng.choice(staff)},
            "group_nickname": "",
        }
        if person.unionid:
            member["unionid"] = person.unionid
        members.append(member)
        names[person.external_userid] = person.name
    members.sort(key=lambda m: m["join_time"])
    detail = {
        "chat_id": chat_id,
        "name": f"{label}{index}",
        "owner": owner,
        "create_time": created,
        "notice": "欢迎加入！群内会不定期分享新品与福利。" if population.mode == "b2c" else "",
        "member_list": members,
        "admin_list": [{"userid": s} for s in staff[1:]],
        "member_version": hashlib.md5(  # noqa: S324 - a version tag, not security
            ",".join(m["userid"] for m in members).encode()
        ).hexdigest(),
    }
    return GroupChat(chat_id, detail, names)
