"""A deterministic model of a tenant's audience, for `siyu simulate` (sandbox/simulator.py).

Pure: no I/O and no clock reads. Every random choice comes from the ``random.Random`` passed in,
so the same seed gives the same people, companies and actions, in the same order.

- B2B: companies, each with a buying committee of 2-6 people (titles in Chinese or English, one
  buying role each), moving through a journey: first contact (follows the OA or is added on WeCom
  by a salesperson) -> reads whitepapers -> webinars -> trial/POC -> quote -> customer (contract,
  invoices, orders and payments). Some companies stall at a stage; some pay late.
- B2C: consumers with a behaviour type (impulse buyer, researcher, discount chaser, loyal, lapsed,
  skeptic) who scan store QR codes, click menus, send messages, join WeCom customer groups and buy;
  some file complaints.

An ``Action`` describes one platform event in platform terms (the XML fields WeChat or WeCom would
send, or a business event); the simulator renders, signs and encrypts it. The journey mutates the
state of the people, companies and chats it is given (that is the model's memory), nothing else.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

CST = timezone(timedelta(hours=8))
# Where the model's clock starts unless told otherwise (a Monday morning in Shanghai): a fixed
# reference for tests and the fake API's seed. `siyu simulate` starts it before the real present.
EPOCH = int(datetime(2026, 8, 3, 9, 0, tzinfo=CST).timestamp())

ROLES = ("decision_maker", "technical", "finance", "compliance", "procurement", "business")
TITLES: dict[str, dict[str, tuple[str, ...]]] = {
    "decision_maker": {
        "zh": ("总经理", "董事长", "副总经理", "首席执行官", "总裁"),
        "en": ("CEO", "General Manager", "Managing Director", "President"),
    },
    "technical": {
        "zh": ("架构师", "IT经理", "研发总监", "技术总监", "首席技术官", "信息化主管"),
        "en": ("CTO", "IT Manager", "R&D Director", "Solution Architect", "Head of IT"),
    },
    "finance": {
        "zh": ("财务总监", "财务经理", "会计主管"),
        "en": ("CFO", "Finance Manager", "Financial Controller"),
    },
    "compliance": {
        "zh": ("法务经理", "合规专员", "风控经理", "法务总监"),
        "en": ("Legal Counsel", "Compliance Officer", "Compliance Manager"),
    },
    "procurement": {
        "zh": ("采购经理", "采购专员", "供应链总监", "采购总监"),
        "en": ("Procurement Manager", "Purchasing Manager", "Sourcing Specialist"),
    },
    "business": {
        "zh": ("生产经理", "运营总监", "销售经理", "车间主任", "质量经理", "工厂厂长"),
        "en": ("Operations Director", "Plant Manager", "Sales Manager", "Production Manager"),
    },
}
B2C_TYPES = ("impulse", "researcher", "discount_chaser", "loyal", "lapsed", "skeptic")
_B2C_WEIGHTS = (20, 15, 20, 15, 15, 15)

B2B_STAGES = ("unaware", "aware", "interest", "webinar", "trial", "quote", "customer")
STAGE = {name: i for i, name in enumerate(B2B_STAGES)}

PAYMENT_TERMS_S = 30 * 86400  # net 30: an unpaid invoice is overdue after that
REORDER_AFTER_S = 21 * 86400  # a customer orders again at most every three weeks
STAFF = ("zhangwei", "lina", "wangfang", "liuyang", "chenjing", "zhaolei", "sunli", "zhoumin")

_CITIES = (
    ("苏州", "Suzhou"),
    ("深圳", "Shenzhen"),
    ("上海", "Shanghai"),
    ("宁波", "Ningbo"),
    ("东莞", "Dongguan"),
    ("无锡", "Wuxi"),
    ("青岛", "Qingdao"),
    ("成都", "Chengdu"),
    ("天津", "Tianjin"),
    ("佛山", "Foshan"),
)
_BRANDS = (
    ("精工", "Jinggong"),
    ("华信", "Huaxin"),
    ("恒达", "Hengda"),
    ("博远", "Boyuan"),
    ("宏昌", "Hongchang"),
    ("瑞丰", "Ruifeng"),
    ("中科", "Zhongke"),
    ("鼎盛", "Dingsheng"),
    ("新锐", "Xinrui"),
    ("永泰", "Yongtai"),
    ("天合", "Tianhe"),
    ("启明", "Qiming"),
)
_INDUSTRIES = (
    ("机械", "Machinery", "machinery"),
    ("电子", "Electronics", "electronics"),
    ("汽车零部件", "Auto Parts", "automotive"),
    ("精密制造", "Precision Manufacturing", "manufacturing"),
    ("新材料", "New Materials", "materials"),
    ("医疗器械", "Medical Devices", "medical_devices"),
    ("物流", "Logistics", "logistics"),
    ("化工", "Chemical", "chemicals"),
)
_SIZES = ("1-49", "50-199", "200-999", "1000-4999", "5000+")
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志文"
_EN_NAMES = ("Kevin", "Grace", "Michael", "Linda", "David", "Emily", "Jason", "Vivian", "Eric")

_B2B_MENUS = ("MENU_SOLUTIONS", "MENU_CASES", "MENU_WHITEPAPERS", "MENU_WEBINARS", "MENU_CONTACT")
_B2B_SCENES = ("expo2026_booth", "whitepaper_industry40", "sales_card", "webinar_invite")
_B2B_CONTENT = (
    ("工业4.0数字化转型白皮书", "whitepaper"),
    ("2026中国制造业MES应用报告", "industry_report"),
    ("Predictive Maintenance Whitepaper", "whitepaper"),
    ("等保2.0与工业软件安全合规指南", "whitepaper"),
)
_B2B_CASES = (
    ("某汽车零部件龙头MES落地案例", "case_study"),
    ("ROI & TCO Case: Plant Go-Live", "case_study"),
)
_B2B_SPECS = (
    ("ACME MES 技术规格说明书 v5.2", "spec"),
    ("Deployment & Security Architecture", "spec"),
)
_WEBINARS = ("智能工厂排产优化实战", "OEE提升的五个抓手", "Secure OT/IT Integration Live Demo")
_OFFLINE_EVENTS = (
    ("华东制造业数字化沙龙", "上海"),
    ("客户年会 2026", "苏州"),
    ("Smart Factory Meetup", "深圳"),
)

_B2C_MENUS = ("MENU_NEW_ARRIVALS", "MENU_MEMBER", "MENU_STORES", "MENU_TEA_GUIDE", "MENU_COUPON")
_B2C_SCENES = ("store_sh01", "store_sh02", "store_bj01", "store_gz03", "mall_popup", "package_card")
_B2C_PRODUCTS = (
    ("茉莉雪芽 礼盒", 168.0),
    ("桂花乌龙 冷泡茶 x6", 59.9),
    ("白桃乌龙 袋泡茶", 39.9),
    ("大红袍 经典罐装 250g", 298.0),
    ("手作茶点 组合", 45.0),
    ("季节限定 樱花绿茶", 29.9),
)
_B2C_QUESTIONS = (
    "这款茶适合孕妇喝吗？",
    "冷泡要泡多久？",
    "门店几点关门",
    "有没有无糖的？",
    "会员积分怎么用",
    "Do you ship to Hong Kong?",
)
_B2C_COMPLAINTS = (
    "收到的礼盒破损了，要求退款",
    "门店排队太久，服务态度差",
    "口味和描述不一样 & 包装漏气",
    "优惠券用不了，客服不回复",
)
_LOCATIONS = ((31.2304, 121.4737), (39.9042, 116.4074), (23.1291, 113.2644), (30.5728, 104.0668))

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_OPENID_CHARS = _ID_CHARS + "_-"


def normalise_company(name: str) -> str:
    """The account key of a company name: NFKC, case-folded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"\s+", " ", text).strip()


def _rand(rng: random.Random, n: int, alphabet: str = _ID_CHARS) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _article_url(rng: random.Random) -> str:
    """An OA article link; its query has '&' on purpose (escaped in XML, kept in the URL)."""
    biz = "MzA" + _rand(rng, 9) + "=="
    return f"https://mp.weixin.qq.com/s?__biz={biz}&mid=2650{rng.randint(100000, 999999)}&idx=1"


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One platform event, before rendering.

    kind 'oa': ``fields`` are the inner XML elements after ToUserName (FromUserName is the openid,
    then MsgType, Event...); ``oa_slot`` picks which of the tenant's Official Accounts receives it.
    kind 'wecom': ``fields`` are the elements after MsgType (Event, ChangeType, UserID...); lists
    (MemChangeList) become one ``<Item>`` per value.
    kind 'biz': ``fields`` has idempotency_key, type, identity and attributes (occurred_at is
    rendered from ``at`` in the tenant's time zone).
    ``type`` is the envelope type ingest should produce (e.g. 'oa.subscribe', 'biz.order.paid').
    """

    kind: str
    type: str
    at: int
    fields: dict[str, Any]
    subject: str = ""
    oa_slot: int = 0


@dataclass
class Person:
    person_id: str
    name: str
    openid: str
    unionid: str | None
    external_userid: str
    crm_id: str
    owner_userid: str
    oa_slot: int
    title: str | None = None
    role: str | None = None
    b2c_type: str | None = None
    company_key: str | None = None
    # journey state
    followed: bool = False
    added: bool = False
    registered: bool = False
    gone: bool = False
    chats: list[str] = field(default_factory=list)
    steps: int = 0
    reads: int = 0
    orders: int = 0
    complaints: int = 0
    read_before_buying: int = 0
    lapse_after: int = 0


@dataclass
class Company:
    key: str
    name: str
    crm_id: str
    city: str
    industry: str
    size: str
    lifecycle: str
    owner_userid: str
    members: list[Person]
    stall_stage: int | None
    pays_late: bool
    stage: int = 0
    chat_id: str | None = None
    open_invoices: list[tuple[str, float, int]] = field(default_factory=list)
    quote_amount: float = 0.0
    last_order_at: int = 0


@dataclass
class Chat:
    chat_id: str
    owner: str
    created: bool = False
    members: list[str] = field(default_factory=list)
    mem_ver: str = ""


@dataclass
class Population:
    mode: str
    run_id: str
    people: list[Person]
    companies: list[Company]
    chats: list[Chat]
    tags: list[str]
    serial: int = 0
    msg_id: int = 0

    @classmethod
    def generate(cls, rng: random.Random, mode: str, contacts: int) -> Population:
        if mode not in ("b2b", "b2c"):
            raise ValueError(f"mode must be b2b or b2c, not {mode!r}")
        contacts = max(1, int(contacts))
        run_id = _rand(rng, 8, "0123456789abcdefghijklmnopqrstuvwxyz")
        used: set[str] = set()
        people: list[Person] = []
        companies: list[Company] = []
        chats: list[Chat] = []
        if mode == "b2b":
            while len(people) < contacts:
                company = _make_company(rng, len(companies), used)
                size = min(rng.randint(2, 6), max(2, contacts - len(people)))
                company.members = _committee(rng, company, size, len(people))
                companies.append(company)
                people.extend(company.members)
        else:
            for i in range(contacts):
                # Every type appears once before the weighted draw, so small runs cover them all.
                kind = B2C_TYPES[i] if i < len(B2C_TYPES) else _weighted(rng, B2C_TYPES)
                people.append(_consumer(rng, i, kind))
            for _ in range(max(1, contacts // 40)):
                chats.append(Chat(chat_id="wr" + _rand(rng, 28), owner=rng.choice(STAFF)))
        tags = ["et" + _rand(rng, 30) for _ in range(4)]
        msg_id = rng.randint(23_000_000_000_000_000, 24_000_000_000_000_000)
        return cls(mode, run_id, people, companies, chats, tags, msg_id=msg_id)

    def next_key(self) -> str:
        self.serial += 1
        return f"sim-{self.run_id}-{self.serial:08d}"

    def next_msg_id(self, rng: random.Random) -> int:
        self.msg_id += rng.randint(1, 5000)
        return self.msg_id


def _weighted(rng: random.Random, kinds: tuple[str, ...]) -> str:
    return rng.choices(kinds, weights=_B2C_WEIGHTS)[0]


def _make_company(rng: random.Random, index: int, used: set[str]) -> Company:
    while True:
        (city_zh, city_en), (brand_zh, brand_en) = rng.choice(_CITIES), rng.choice(_BRANDS)
        ind_zh, ind_en, industry = rng.choice(_INDUSTRIES)
        style = rng.random()
        if style < 0.6:
            name = f"{city_zh}{brand_zh}{ind_zh}有限公司"
        elif style < 0.75:
            name = f"{city_zh}{brand_zh}{ind_zh}股份有限公司"
        elif style < 0.95:
            name = f"{city_en} {brand_en} {ind_en} Co., Ltd."
        else:
            name = f"{brand_en} R&D <{city_en}> Technology Co., Ltd."
        if normalise_company(name) not in used:
            used.add(normalise_company(name))
            break
    return Company(
        key=normalise_company(name),
        name=name,
        crm_id=f"ACC-{100000 + index * 7 + rng.randint(0, 6)}",
        city=city_zh,
        industry=industry,
        size=rng.choice(_SIZES),
        lifecycle=rng.choice(("startup", "growth", "growth", "mature", "mature")),
        owner_userid=rng.choice(STAFF),
        members=[],
        stall_stage=rng.choice((None, None, None, None, None, 1, 2, 3, 4, 5)),
        pays_late=rng.random() < 0.25,
    )


def _person(rng: random.Random, index: int, owner: str) -> Person:
    if rng.random() < 0.85:
        name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))
    else:
        name = f"{rng.choice(_EN_NAMES)} {rng.choice(('Wang', 'Li', 'Zhang', 'Chen', 'Liu'))}"
    return Person(
        person_id=f"p{index:06d}",
        name=name,
        openid="o" + _rand(rng, 27, _OPENID_CHARS),
        unionid="o" + _rand(rng, 27, _OPENID_CHARS) if rng.random() < 0.9 else None,
        external_userid="wm" + _rand(rng, 30, _OPENID_CHARS),
        crm_id=f"CRM-{rng.randint(10_000_000, 99_999_999)}",
        owner_userid=owner,
        oa_slot=rng.randrange(100),
    )


def _committee(rng: random.Random, company: Company, size: int, first: int) -> list[Person]:
    champion = rng.choice(("technical", "business"))
    others = [r for r in ROLES if r not in (champion, "decision_maker")]
    rng.shuffle(others)
    roles = [champion, "decision_maker", *others][:size]
    members = []
    for i, role in enumerate(roles):
        person = _person(rng, first + i, company.owner_userid)
        lang = "zh" if rng.random() < 0.6 else "en"
        person.title = rng.choice(TITLES[role][lang])
        person.role = role
        person.company_key = company.key
        person.unionid = person.unionid or "o" + _rand(rng, 27, _OPENID_CHARS)
        members.append(person)
    return members


def _consumer(rng: random.Random, index: int, kind: str) -> Person:
    person = _person(rng, index, rng.choice(STAFF))
    person.b2c_type = kind
    person.crm_id = f"M{rng.randint(100_000_000, 999_999_999)}"
    person.read_before_buying = rng.randint(5, 12) if kind == "researcher" else rng.randint(0, 3)
    person.lapse_after = rng.randint(3, 8)
    return person


# --- the journey --------------------------------------------------------------------------------


class _Emit:
    """Collects actions with strictly increasing simulated times."""

    def __init__(self, rng: random.Random, sim_time: int):
        self.rng, self.t, self.actions = rng, sim_time, []

    def add(self, kind: str, type_: str, fields: dict, subject: str, oa_slot: int = 0) -> None:
        self.actions.append(Action(kind, type_, self.t, fields, subject, oa_slot))
        self.t += self.rng.randint(3, 240)


class Journey:
    """Decides what each person or company does next. Mutates only the model's own state."""

    def __init__(self, population: Population):
        self.population = population
        self._companies = {c.key: c for c in population.companies}

    # -- scheduling weights
    def activity(self, subject: Person | Company) -> float:
        """How likely the subject is to do something when picked (0..1)."""
        if isinstance(subject, Company):
            if subject.stall_stage is not None and subject.stage >= subject.stall_stage:
                return 0.12
            if subject.stage == STAGE["customer"]:
                return 0.4
            return 0.6 if subject.stage == 0 else 0.9
        if subject.gone:
            return 0.02
        return {
            "loyal": 1.0,
            "researcher": 0.8,
            "discount_chaser": 0.6,
            "impulse": 0.5,
            "skeptic": 0.5,
            "lapsed": 0.8 if subject.steps <= subject.lapse_after else 0.05,
        }.get(subject.b2c_type or "", 0.5)

    def next_actions(
        self, subject: Person | Company, sim_time: int, rng: random.Random
    ) -> list[Action]:
        emit = _Emit(rng, sim_time)
        if isinstance(subject, Company):
            self._company_step(subject, emit)
        else:
            self._consumer_step(subject, emit)
        return emit.actions

    def staff_actions(self, sim_time: int, rng: random.Random) -> list[Action]:
        """Corp-level changes by staff: tags created, renamed or reordered."""
        emit = _Emit(rng, sim_time)
        tag = rng.choice(self.population.tags)
        change = rng.choice(("create", "update", "update", "delete", "shuffle"))
        fields = {"Event": "change_external_tag", "Id": tag, "TagType": "tag", "ChangeType": change}
        if rng.random() < 0.2:
            fields["TagType"] = "tag_group"
        emit.add("wecom", "wecom.tag.changed", fields, "staff")
        return emit.actions

    # -- building blocks
    def _oa(self, emit: _Emit, p: Person, type_: str, msg_type: str, **fields: Any) -> None:
        body: dict[str, Any] = {"FromUserName": p.openid, "MsgType": msg_type}
        if msg_type != "event":
            body.update(fields)
            body["MsgId"] = self.population.next_msg_id(emit.rng)
        else:
            body.update(fields)
        emit.add("oa", type_, body, p.person_id, p.oa_slot)

    def _event(self, emit: _Emit, p: Person, event: str, **fields: Any) -> None:
        type_ = {"subscribe": "oa.subscribe", "unsubscribe": "oa.unsubscribe", "SCAN": "oa.scan"}
        self._oa(emit, p, type_.get(event, f"oa.{event.lower()}"), "event", Event=event, **fields)

    def _ticket(self, rng: random.Random) -> str:
        return "gQ" + _rand(rng, 62, _ID_CHARS) + "=="

    def _subscribe(self, emit: _Emit, p: Person, scene: str | None) -> None:
        if scene:
            self._event(
                emit, p, "subscribe", EventKey=f"qrscene_{scene}", Ticket=self._ticket(emit.rng)
            )
        else:
            self._event(emit, p, "subscribe", EventKey="")
        p.followed, p.gone = True, False

    def _contact(self, emit: _Emit, p: Person, change: str, **extra: Any) -> None:
        fields = {
            "Event": "change_external_contact",
            "ChangeType": change,
            "UserID": p.owner_userid,
            "ExternalUserID": p.external_userid,
            **extra,
        }
        kind = {
            "add_external_contact": "wecom.contact.added",
            "edit_external_contact": "wecom.contact.edited",
            "del_external_contact": "wecom.contact.deleted",
            "del_follow_user": "wecom.contact.follow_user_deleted",
        }[change]
        emit.add("wecom", kind, fields, p.person_id)

    def _add_on_wecom(self, emit: _Emit, p: Person, state: str) -> None:
        welcome = _rand(emit.rng, 43, _ID_CHARS)
        self._contact(emit, p, "add_external_contact", State=state, WelcomeCode=welcome)
        p.added = True

    def _chat(self, emit: _Emit, chat: Chat, people: list[Person], join: bool) -> None:
        if not chat.created:
            chat.created = True
            chat.mem_ver = _rand(emit.rng, 32, "0123456789abcdef")
            fields = {
                "Event": "change_external_chat",
                "ChatId": chat.chat_id,
                "ChangeType": "create",
            }
            emit.add("wecom", "wecom.chat.created", fields, chat.chat_id)
        ids = [p.external_userid for p in people]
        last, chat.mem_ver = chat.mem_ver, _rand(emit.rng, 32, "0123456789abcdef")
        fields = {
            "Event": "change_external_chat",
            "ChatId": chat.chat_id,
            "ChangeType": "update",
            "UpdateDetail": "add_member" if join else "del_member",
        }
        if join:
            fields["JoinScene"] = emit.rng.choice((0, 3))
        else:
            fields["QuitScene"] = emit.rng.choice((0, 0, 1))
        fields.update(MemChangeCnt=len(ids), MemChangeList=ids, LastMemVer=last)
        fields["CurMemVer"] = chat.mem_ver
        for p in people:
            if join:
                chat.members.append(p.external_userid)
                p.chats.append(chat.chat_id)
            else:
                chat.members.remove(p.external_userid)
                p.chats.remove(chat.chat_id)
        type_ = "wecom.chat.member_joined" if join else "wecom.chat.member_left"
        emit.add("wecom", type_, fields, chat.chat_id)

    def _biz(
        self,
        emit: _Emit,
        type_: str,
        subject: str,
        attributes: dict[str, Any],
        person: Person | None = None,
        company: Company | None = None,
    ) -> None:
        identity: dict[str, str] = {}
        if person is not None:
            identity["crm_id"] = person.crm_id
            if person.unionid:
                identity["unionid"] = person.unionid
        if company is not None:
            identity["account_key"] = company.key
        fields = {
            "idempotency_key": self.population.next_key(),
            "type": type_,
            "identity": identity,
            "attributes": attributes,
        }
        emit.add("biz", type_, fields, subject)

    # -- B2B
    def _reach(self, emit: _Emit, c: Company, p: Person) -> None:
        """First contact of one committee member: follows the OA or is added on WeCom."""
        rng = emit.rng
        if rng.random() < 0.55:
            scene = rng.choice(_B2B_SCENES) if rng.random() < 0.7 else None
            self._subscribe(emit, p, scene)
        else:
            self._add_on_wecom(emit, p, rng.choice(("expo2026", "sales_visit", "referral")))
        if not p.registered:
            p.registered = True
            self._biz(
                emit,
                "biz.contact.updated",
                p.person_id,
                {"name": p.name, "title": p.title, "company": c.name},
                p,
                c,
            )

    def _member(self, emit: _Emit, c: Company, roles: tuple[str, ...] = ()) -> Person:
        pool = [m for m in c.members if m.role in roles] if roles else []
        p = emit.rng.choice(pool or c.members)
        if not (p.followed or p.added):
            self._reach(emit, c, p)
        return p

    def _touch(self, emit: _Emit, c: Company, p: Person) -> None:
        """A light touch on whichever channel the person is on."""
        rng = emit.rng
        if p.followed and (not p.added or rng.random() < 0.7):
            r = rng.random()
            if r < 0.35:
                self._event(emit, p, "CLICK", EventKey=rng.choice(_B2B_MENUS))
            elif r < 0.7:
                self._event(emit, p, "VIEW", EventKey=_article_url(rng))
            elif r < 0.9:
                question = rng.choice(
                    (
                        f"您好，我是{c.name}的{p.title}，想了解贵司方案的报价和实施周期。",
                        f"{c.name} 想要一份私有化部署的安全白皮书 <PDF>，谢谢",
                        "Can you share the API docs & SLA terms?",
                        "有没有同行业的客户案例？",
                    )
                )
                self._oa(emit, p, "oa.message", "text", Content=question)
            else:
                self._oa(
                    emit,
                    p,
                    "oa.message",
                    "link",
                    Title=f"{c.name}：产线数字化需求说明",
                    Description="内部需求 & 评估要点",
                    Url=f"https://docs.example.cn/share?id={_rand(rng, 10)}&from=wechat",
                )
        elif p.added and not p.followed and rng.random() < 0.3:  # shown the OA: they follow it
            self._subscribe(emit, p, f"sales_card_{p.owner_userid}")
        elif p.added and rng.random() < 0.25:  # the salesperson notes the title or a remark
            self._contact(emit, p, "edit_external_contact")
        else:
            title, fmt = rng.choice(_B2B_CONTENT)
            self._biz(
                emit,
                "biz.content.downloaded",
                p.person_id,
                {"title": title, "format": fmt},
                p,
                c,
            )

    def _company_step(self, c: Company, emit: _Emit) -> None:
        rng = emit.rng
        stalled = c.stall_stage is not None and c.stage >= c.stall_stage
        if c.stage == 0:
            c.stage = 1
            self._reach(emit, c, c.members[0])
            self._biz(
                emit,
                "biz.account.updated",
                c.key,
                {
                    "company": c.name,
                    "industry": c.industry,
                    "size": c.size,
                    "lifecycle": c.lifecycle,
                    "city": c.city,
                },
                company=c,
            )
            self._biz(
                emit,
                "biz.lead.created",
                c.members[0].person_id,
                {"source": rng.choice(("expo", "website", "referral")), "owner": c.owner_userid},
                c.members[0],
                c,
            )
            return
        if stalled:
            self._stalled(c, emit)
            return
        if c.stage < STAGE["customer"] and rng.random() < 0.25:
            c.stage += 1
            self._enter_stage(c, emit)
        else:
            self._engage(c, emit)

    def _stalled(self, c: Company, emit: _Emit) -> None:
        rng = emit.rng
        p = rng.choice(c.members)
        r = rng.random()
        if r < 0.6:
            if p.followed or p.added:
                self._touch(emit, c, p)
            elif rng.random() < 0.3:  # comes back, e.g. scans a booth QR code at a trade fair
                self._reach(emit, c, p)
        elif r < 0.75 and p.followed:
            self._event(emit, p, "unsubscribe", EventKey="")
            p.followed = False
        elif r < 0.85 and p.added:
            self._contact(emit, p, rng.choice(("del_follow_user", "del_external_contact")))
            p.added = False
        elif r < 0.9 and c.chat_id:  # the project group is closed
            chat = self._chat_by_id(c.chat_id)
            fields = {
                "Event": "change_external_chat",
                "ChatId": chat.chat_id,
                "ChangeType": "dismiss",
            }
            emit.add("wecom", "wecom.chat.dismissed", fields, chat.chat_id)
            for m in c.members:
                if chat.chat_id in m.chats:
                    m.chats.remove(chat.chat_id)
            self.population.chats.remove(chat)
            c.chat_id = None

    def _enter_stage(self, c: Company, emit: _Emit) -> None:
        rng, stage = emit.rng, B2B_STAGES[c.stage]
        if stage == "interest":
            p = self._member(emit, c, ("technical", "business"))
            title, fmt = rng.choice(_B2B_CONTENT)
            self._biz(
                emit, "biz.content.downloaded", p.person_id, {"title": title, "format": fmt}, p, c
            )
        elif stage == "webinar":
            title = rng.choice(_WEBINARS)
            webinar_id = f"WBN-{rng.randint(1000, 9999)}"
            for p in rng.sample(c.members, k=min(len(c.members), rng.randint(1, 3))):
                if not (p.followed or p.added):
                    self._reach(emit, c, p)
                attrs = {"webinar_id": webinar_id, "title": title}
                self._biz(emit, "biz.webinar.registered", p.person_id, attrs, p, c)
                if rng.random() < 0.7:
                    self._biz(emit, "biz.webinar.attended", p.person_id, dict(attrs), p, c)
        elif stage == "trial":
            p = self._member(emit, c, ("technical",))
            self._biz(emit, "biz.demo.requested", p.person_id, {"product": "ACME MES"}, p, c)
            attrs = {"trial_id": f"POC-{rng.randint(10000, 99999)}", "product": "ACME MES"}
            self._biz(emit, "biz.trial.started", p.person_id, {**attrs, "days": 30}, p, c)
            c.chat_id = "wr" + _rand(rng, 28)
            chat = Chat(c.chat_id, c.owner_userid)
            self.population.chats.append(chat)
            joined = [m for m in c.members if m.added]
            if not joined:
                self._add_on_wecom(emit, p, "poc_group")
                joined = [p]
            self._chat(emit, chat, joined, join=True)
        elif stage == "quote":
            p = self._member(emit, c, ("procurement", "finance", "decision_maker"))
            self._biz(emit, "biz.trial.ended", p.person_id, {"outcome": "success"}, p, c)
            c.quote_amount = float(rng.randrange(80_000, 2_000_000, 5_000))
            attrs = {
                "quote_id": f"Q-{rng.randint(100000, 999999)}",
                "amount": c.quote_amount,
                "currency": "CNY",
            }
            self._biz(emit, "biz.quote.sent", p.person_id, attrs, p, c)
        elif stage == "customer":
            p = self._member(emit, c, ("decision_maker",))
            amount = c.quote_amount or float(rng.randrange(80_000, 2_000_000, 5_000))
            contract = f"HT-{rng.randint(100000, 999999)}"
            self._biz(
                emit,
                "biz.contract.signed",
                p.person_id,
                {"contract_id": contract, "amount": amount, "currency": "CNY"},
                p,
                c,
            )
            self._order(c, emit, amount)

    def _order(self, c: Company, emit: _Emit, amount: float) -> None:
        rng = emit.rng
        p = self._member(emit, c, ("procurement", "finance"))
        invoice = f"INV-{rng.randint(1000000, 9999999)}"
        order = f"SO-{rng.randint(1000000, 9999999)}"
        money = {"amount": amount, "currency": "CNY"}
        self._biz(emit, "biz.invoice.issued", c.key, {"invoice_id": invoice, **money}, company=c)
        c.last_order_at = emit.t
        if c.pays_late:
            c.open_invoices.append((invoice, amount, emit.t))
        else:
            attrs = {"order_id": order, "invoice_id": invoice, **money}
            self._biz(emit, "biz.order.paid", p.person_id, attrs, p, c)
            self._biz(
                emit, "biz.payment.received", c.key, {"invoice_id": invoice, **money}, company=c
            )

    def _engage(self, c: Company, emit: _Emit) -> None:
        rng, stage = emit.rng, B2B_STAGES[c.stage]
        if stage == "customer":
            r = rng.random()
            invoice_due = c.open_invoices and emit.t - c.open_invoices[0][2] > PAYMENT_TERMS_S
            if invoice_due and r < 0.35:
                invoice, amount, issued = c.open_invoices[0]
                days = (emit.t - issued - PAYMENT_TERMS_S) // 86400
                if days >= 1 and rng.random() < 0.6:
                    attrs = {"invoice_id": invoice, "amount": amount, "currency": "CNY"}
                    self._biz(
                        emit,
                        "biz.invoice.overdue",
                        c.key,
                        {**attrs, "days_overdue": int(days)},
                        company=c,
                    )
                else:
                    c.open_invoices.pop(0)
                    p = self._member(emit, c, ("finance",))
                    attrs = {"invoice_id": invoice, "amount": amount, "currency": "CNY"}
                    self._biz(emit, "biz.payment.received", c.key, attrs, company=c)
                    order = {"order_id": f"SO-{rng.randint(1000000, 9999999)}", **attrs}
                    self._biz(emit, "biz.order.paid", p.person_id, order, p, c)
                return
            reorder = emit.t - c.last_order_at > REORDER_AFTER_S
            if r < 0.45 and reorder:  # a repeat order, an upsell or a renewal
                self._order(c, emit, float(rng.randrange(20_000, 600_000, 1_000)))
                return
            if 0.45 <= r < 0.5:
                p = self._member(emit, c)
                name, city = rng.choice(_OFFLINE_EVENTS)
                attrs = {"event": name, "city": city}
                self._biz(emit, "biz.event.attended", p.person_id, attrs, p, c)
                return
        if c.chat_id and rng.random() < 0.25:
            chat = next(ch for ch in self.population.chats if ch.chat_id == c.chat_id)
            outside = [m for m in c.members if m.added and m.external_userid not in chat.members]
            if outside:
                self._chat(emit, chat, outside[: rng.randint(1, 2)], join=True)
                return
        roles = {
            "aware": ("technical", "business"),
            "interest": ("technical", "business", "decision_maker"),
            "webinar": ("technical", "business", "compliance"),
            "trial": ("technical", "compliance", "business"),
            "quote": ("procurement", "finance", "decision_maker", "compliance"),
        }.get(stage, ())
        p = self._member(emit, c, roles)
        if stage in ("trial", "quote") and rng.random() < 0.3:
            title, fmt = rng.choice(_B2B_SPECS if p.role != "finance" else _B2B_CASES)
            self._biz(
                emit, "biz.content.downloaded", p.person_id, {"title": title, "format": fmt}, p, c
            )
        else:
            self._touch(emit, c, p)

    # -- B2C
    def _consumer_step(self, p: Person, emit: _Emit) -> None:
        rng = emit.rng
        if p.gone:
            if rng.random() < 0.3:
                self._subscribe(emit, p, rng.choice(_B2C_SCENES))
            return
        if not p.followed:
            self._subscribe(emit, p, rng.choice(_B2C_SCENES) if rng.random() < 0.75 else None)
            if rng.random() < 0.5:
                p.registered = True
                self._biz(emit, "biz.registered", p.person_id, {"channel": "wechat_oa"}, p)
            return
        p.steps += 1
        kind = p.b2c_type
        if kind == "lapsed" and p.steps > p.lapse_after:
            if rng.random() < 0.4:
                self._event(emit, p, "unsubscribe", EventKey="")
                p.followed, p.gone = False, True
                if p.chats:
                    chat = self._chat_by_id(p.chats[0])
                    self._chat(emit, chat, [p], join=False)
            return
        if not p.added and rng.random() < 0.15:
            self._add_on_wecom(emit, p, rng.choice(_B2C_SCENES))
            return
        if p.added and not p.chats and self.population.chats and rng.random() < 0.3:
            self._chat(emit, rng.choice(self.population.chats), [p], join=True)
            return
        buy = {
            "impulse": 0.35,
            "researcher": 0.35 if p.reads >= p.read_before_buying else 0.0,
            "discount_chaser": 0.2,
            "loyal": 0.25,
            "lapsed": 0.2,
            "skeptic": 0.05,
        }.get(kind or "", 0.2)
        r = rng.random()
        if kind == "skeptic" and r < 0.12:
            self._complain(p, emit)
        elif r < buy:
            self._buy(p, emit)
        else:
            self._browse(p, emit)

    def _chat_by_id(self, chat_id: str) -> Chat:
        return next(ch for ch in self.population.chats if ch.chat_id == chat_id)

    def _browse(self, p: Person, emit: _Emit) -> None:
        rng = emit.rng
        p.reads += 1
        r = rng.random()
        if p.b2c_type == "discount_chaser" and r < 0.5:
            if rng.random() < 0.6:
                self._event(emit, p, "CLICK", EventKey="MENU_COUPON")
            else:
                self._oa(emit, p, "oa.message", "text", Content="有优惠券吗？满减活动什么时候开始")
        elif r < 0.3:
            self._event(emit, p, "CLICK", EventKey=rng.choice(_B2C_MENUS))
        elif r < 0.6:
            self._event(emit, p, "VIEW", EventKey=_article_url(rng))
        elif r < 0.75:
            self._oa(emit, p, "oa.message", "text", Content=rng.choice(_B2C_QUESTIONS))
        elif r < 0.82:
            lat, lng = rng.choice(_LOCATIONS)
            self._event(
                emit,
                p,
                "LOCATION",
                Latitude=f"{lat + rng.uniform(-0.05, 0.05):.6f}",
                Longitude=f"{lng + rng.uniform(-0.05, 0.05):.6f}",
                Precision=f"{rng.uniform(10, 120):.6f}",
            )
        elif r < 0.9:
            self._event(emit, p, "SCAN", EventKey=rng.choice(_B2C_SCENES), Ticket=self._ticket(rng))
        elif r < 0.95:
            media = _rand(rng, 64, _OPENID_CHARS)
            self._oa(
                emit,
                p,
                "oa.message",
                "image",
                PicUrl=f"http://mmbiz.qpic.cn/mmbiz_jpg/{_rand(rng, 40)}/0",
                MediaId=media,
            )
        else:
            self._oa(
                emit,
                p,
                "oa.message",
                "link",
                Title="小红书 | 这家茶饮的桂花乌龙 & 茶点绝了",
                Description="种草分享",
                Url=f"https://www.xiaohongshu.com/explore/{_rand(rng, 24)}?xsec=1&src=wx",
            )

    def _buy(self, p: Person, emit: _Emit) -> None:
        rng = emit.rng
        product, price = rng.choice(_B2C_PRODUCTS)
        qty = rng.randint(1, 4) if p.b2c_type == "loyal" else rng.randint(1, 2)
        amount = round(price * qty, 2)
        attrs: dict[str, Any] = {
            "order_id": f"TB{rng.randint(10**11, 10**12 - 1)}",
            "amount": amount,
            "currency": "CNY",
            "items": [{"sku": product, "qty": qty}],
            "channel": rng.choice(("mini_program", "store", "mini_program")),
        }
        if p.b2c_type == "discount_chaser" or rng.random() < 0.1:
            discount = round(min(amount * 0.3, rng.choice((5.0, 10.0, 20.0))), 2)
            attrs["coupon"] = f"CPN-{rng.randint(1000, 9999)}"
            attrs["discount"] = discount
            attrs["amount"] = round(amount - discount, 2)
        p.orders += 1
        self._biz(emit, "biz.order.paid", p.person_id, attrs, p)
        if rng.random() < 0.03:  # a dissatisfied customer
            self._complain(p, emit, order=attrs)

    def _complain(self, p: Person, emit: _Emit, order: dict | None = None) -> None:
        rng = emit.rng
        p.complaints += 1
        text = rng.choice(_B2C_COMPLAINTS)
        attrs: dict[str, Any] = {
            "channel": rng.choice(("oa_message", "hotline", "review")),
            "text": text,
            "severity": rng.choice(("low", "medium", "high")),
        }
        if order:
            attrs["order_id"] = order["order_id"]
        self._oa(emit, p, "oa.message", "text", Content=text)
        self._biz(emit, "biz.complaint.filed", p.person_id, attrs, p)
        if order and rng.random() < 0.5:
            refund = {"order_id": order["order_id"], "amount": order["amount"], "currency": "CNY"}
            self._biz(emit, "biz.order.refunded", p.person_id, refund, p)
        if p.added and p.complaints >= 2 and rng.random() < 0.3:
            self._contact(emit, p, "del_follow_user")
            p.added = False


# --- the whole run ------------------------------------------------------------------------------


def _daytime(t: int) -> int:
    """Nights are quiet: a time between 23:00 and 08:00 (UTC+8) moves to 08:00 plus a little."""
    hour = ((t // 3600) + 8) % 24
    if hour >= 23 or hour < 8:
        days = 1 if hour >= 23 else 0
        local_midnight = ((t + 8 * 3600) // 86400 + days) * 86400 - 8 * 3600
        return local_midnight + 8 * 3600 + (t % 1800)
    return t


def action_stream(
    population: Population,
    rng: random.Random,
    *,
    start: int = EPOCH,
    mean_step_s: int = 600,
) -> Iterator[Action]:
    """Every action of the run, in simulated-time order (strictly increasing ``at``). Endless."""
    journey = Journey(population)
    subjects: list[Person] | list[Company] = (
        population.companies if population.mode == "b2b" else population.people
    )
    clock = start
    mean_step_s = max(2, int(mean_step_s))
    quiet = 0
    while True:
        # The clock moves only when someone acts, so the pace of simulated time does not depend
        # on how many quiet subjects were passed over.
        step_at = _daytime(clock + rng.randint(1, 2 * mean_step_s))
        if rng.random() < 0.004:
            actions = journey.staff_actions(step_at, rng)
        else:
            subject = rng.choice(subjects)
            if rng.random() >= journey.activity(subject) and quiet < 50:
                quiet += 1
                continue
            actions = journey.next_actions(subject, step_at, rng)
        quiet = 0
        if actions:
            yield from actions
            clock = actions[-1].at + 1
        else:
            clock = step_at
