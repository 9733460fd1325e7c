"""The modelled audience of one tenant: people, B2B companies with their buying committees, WeCom
customer groups, and ``Population.generate``, which draws them from a seeded rng.

These dataclasses are also the model's memory: the journey (sandbox/population/journey.py)
updates their state (followed, added, stage, open invoices...) as it emits actions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sandbox.population.texts import (
    BRANDS,
    CITIES,
    EN_NAMES,
    GIVEN_NAMES,
    INDUSTRIES,
    OPENID_CHARS,
    SIZES,
    SURNAMES,
    TITLES,
    random_id,
)
from shared.companies import account_key
from shared.vocabulary import BUYING_ROLES

CST = timezone(timedelta(hours=8))
# Where the model's clock starts unless told otherwise (a Monday morning in Shanghai): a fixed
# reference for tests and the fake API's seed. `siyu simulate` starts it before the real present.
EPOCH = int(datetime(2026, 8, 3, 9, 0, tzinfo=CST).timestamp())

B2C_TYPES = ("impulse", "researcher", "discount_chaser", "loyal", "lapsed", "skeptic")
_B2C_WEIGHTS = (20, 15, 20, 15, 15, 15)

B2B_STAGES = ("unaware", "aware", "interest", "webinar", "trial", "quote", "customer")
STAGE = {name: i for i, name in enumerate(B2B_STAGES)}

STAFF = ("zhangwei", "lina", "wangfang", "liuyang", "chenjing", "zhaolei", "sunli", "zhoumin")


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
        run_id = random_id(rng, 8, "0123456789abcdefghijklmnopqrstuvwxyz")
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
                chats.append(Chat(chat_id="wr" + random_id(rng, 28), owner=rng.choice(STAFF)))
        tags = ["et" + random_id(rng, 30) for _ in range(4)]
        msg_id = rng.randint(23_000_000_000_000_000, 24_000_000_000_000_000)
        return cls(mode, run_id, people, companies, chats, tags, msg_id=msg_id)

    def next_key(self) -> str:
        self.serial += 1
        return f"sim-{self.run_id}-{self.serial:08d}"

    def next_msg_id(self, rng: random.Random) -> int:
        self.msg_id += rng.randint(1, 5000)
        return self.msg_id

    def chat(self, chat_id: str) -> Chat:
        return next(ch for ch in self.chats if ch.chat_id == chat_id)


def _weighted(rng: random.Random, kinds: tuple[str, ...]) -> str:
    return rng.choices(kinds, weights=_B2C_WEIGHTS)[0]


def _make_company(rng: random.Random, index: int, used: set[str]) -> Company:
    while True:
        (city_zh, city_en), (brand_zh, brand_en) = rng.choice(CITIES), rng.choice(BRANDS)
        ind_zh, ind_en, industry = rng.choice(INDUSTRIES)
        style = rng.random()
        if style < 0.6:
            name = f"{city_zh}{brand_zh}{ind_zh}有限公司"
        elif style < 0.75:
            name = f"{city_zh}{brand_zh}{ind_zh}股份有限公司"
        elif style < 0.95:
            name = f"{city_en} {brand_en} {ind_en} Co., Ltd."
        else:
            name = f"{brand_en} R&D <{city_en}> Technology Co., Ltd."
        key = account_key(name)  # as segment keys the account (docs/domain.md)
        if key not in used:
            used.add(key)
            break
    return Company(
        key=key,
        name=name,
        crm_id=f"ACC-{100000 + index * 7 + rng.randint(0, 6)}",
        city=city_zh,
        industry=industry,
        size=rng.choice(SIZES),
        lifecycle=rng.choice(("startup", "growth", "growth", "mature", "mature")),
        owner_userid=rng.choice(STAFF),
        members=[],
        stall_stage=rng.choice((None, None, None, None, None, 1, 2, 3, 4, 5)),
        pays_late=rng.random() < 0.25,
    )


def _person(rng: random.Random, index: int, owner: str) -> Person:
    if rng.random() < 0.85:
        name = rng.choice(SURNAMES) + "".join(
            rng.choice(GIVEN_NAMES) for _ in range(rng.randint(1, 2))
        )
    else:
        name = f"{rng.choice(EN_NAMES)} {rng.choice(('Wang', 'Li', 'Zhang', 'Chen', 'Liu'))}"
    return Person(
        person_id=f"p{index:06d}",
        name=name,
        openid="o" + random_id(rng, 27, OPENID_CHARS),
        unionid="o" + random_id(rng, 27, OPENID_CHARS) if rng.random() < 0.9 else None,
        external_userid="wm" + random_id(rng, 30, OPENID_CHARS),
        crm_id=f"CRM-{rng.randint(10_000_000, 99_999_999)}",
        owner_userid=owner,
        oa_slot=rng.randrange(100),
    )


def _committee(rng: random.Random, company: Company, size: int, first: int) -> list[Person]:
    champion = rng.choice(("technical", "business"))
    others = [r for r in BUYING_ROLES if r not in (champion, "decision_maker")]
    rng.shuffle(others)
    roles = [champion, "decision_maker", *others][:size]
    members = []
    for i, role in enumerate(roles):
        person = _person(rng, first + i, company.owner_userid)
        lang = "zh" if rng.random() < 0.6 else "en"
        person.title = rng.choice(TITLES[role][lang])
        person.role = role
        person.company_key = company.key
        person.unionid = person.unionid or "o" + random_id(rng, 27, OPENID_CHARS)
        members.append(person)
    return members


def _consumer(rng: random.Random, index: int, kind: str) -> Person:
    person = _person(rng, index, rng.choice(STAFF))
    person.b2c_type = kind
    person.crm_id = f"M{rng.randint(100_000_000, 999_999_999)}"
    person.read_before_buying = rng.randint(5, 12) if kind == "researcher" else rng.randint(0, 3)
    person.lapse_after = rng.randint(3, 8)
    return person
