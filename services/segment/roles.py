"""B2B buying roles from job titles (职位) and staff tags (docs/domain.md, "Buying roles").

Pure functions: ``infer_role(title, tags)`` and ``role_coverage(engaged)``.

How a title is read
-------------------
1. Normalise: NFKC (full-width letters, digits and punctuation become ASCII), traditional
   Chinese to simplified (OpenCC's ``hk2s``, see ``to_simplified``), case-fold; "R&D" and
   "research and development" become the token ``rnd``, "FP&A" the token ``fpa``. The patterns
   are written in simplified Chinese only: "財務總監" (Taiwan, Hong Kong) is read as "财务总监".
2. Split compound titles on conjunctions and separators (``& / | , ; + 、 and 兼 及 暨``):
   "CEO & Founder", "董事长兼总经理" and "董事長暨總經理" are read as two titles each.
3. In each part, drop remaining punctuation and the spaces next to Chinese characters, then find
   every pattern of ``TITLE_PATTERNS``. A match lying inside a longer match is dropped (the most
   specific wins: "副总裁" hides "总裁", "销售工程师" hides "工程师", "managing director" hides
   "director").
4. A part's role: a *function* match (采购, CTO, finance, sales...) beats a *rank* match (总经理,
   VP, 总监, director...); rank alone means ``decision_maker``. So "技术副总裁" is technical and
   "VP of Sales" is business: a functional executive is reached with his function's content,
   while a bare "VP"/"副总裁" is a generic executive, a decision maker with low confidence (0.6).
   Among several function matches, the one ending last wins (the head noun comes last in Chinese
   and in most English titles): "IT采购" is procurement, "技术销售" is business, "销售技术支持" is
   technical. An assistant/secretary/intern word lowers the confidence (x0.6); with rank only it
   makes the part ``business`` ("总经理助理" supports the boss, it is not the boss). A word inside
   a matched pattern does not count: "董事会秘书" and "公司秘书" are officers, not assistants.
5. Across parts: the highest confidence wins; ties go to the role listed first in ``BUYING_ROLES``
   ("Founder & CTO" and "CTO & Founder" are both decision_maker: a founder decides).

Staff tags override titles with confidence 1.0: "角色:技术", "role:finance", "角色：财务" (the
prefixes of ``TAG_PREFIXES``), and a few unambiguous bare tags such as "决策人". If tags name
several roles, the first in ``BUYING_ROLES`` order wins. Titles that match nothing (including a bare
"经理"/"Manager") give ``None``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import opencc

from shared.vocabulary import BUYING_ROLES

FUNCTION = "function"
RANK = "rank"


@dataclass(frozen=True)
class TitlePattern:
    pattern: str  # a regex over the normalised title; Latin words get word boundaries
    role: str
    confidence: float
    kind: str = FUNCTION  # FUNCTION or RANK


def _f(role: str, confidence: float, *patterns: str) -> list[TitlePattern]:
    return [TitlePattern(p, role, confidence, FUNCTION) for p in patterns]


def _r(confidence: float, *patterns: str) -> list[TitlePattern]:
    return [TitlePattern(p, "decision_maker", confidence, RANK) for p in patterns]


# The maintained mapping. Patterns are written over normalised text (lower case, no spaces next to
# Chinese characters, ASCII punctuation already removed). Extend it; keep tests in step.
TITLE_PATTERNS: tuple[TitlePattern, ...] = tuple(
    # --- decision makers: top executives and owners (rank) ---
    _r(0.95, "ceo", "首席执行官", "总经理", "董事长", "总裁", "老板", "创始人", "founder")
    + _r(0.95, "general manager", "gm", "managing director", "president", "owner", "chairman")
    + _r(0.95, "主席", "法人代表", "法定代表人", "企业主")
    + _r(0.9, "boss", "董事", "合伙人", "partner", "board member", "business owner")
    + _r(0.95, "chief executive officer")
    + _r(0.85, "coo", "首席运营官", "chief operating officer", "执行董事", "executive director")
    # Taiwan and Hong Kong forms (执行长 is the CEO, 行政总裁 is Hong Kong's CEO), and 老总
    + _r(0.95, "执行长", "行政总裁")
    + _r(0.9, "老总")
    + _r(0.85, "营运长", "country manager")
    # --- generic executives (rank, lower confidence) ---
    + _r(0.6, "副总经理", "副总裁", "副总", "vp", "svp", "evp", "avp", "vice president")
    + _r(0.5, "总监", "director", "head of", "head", "负责人", "部长", "chief", "处长", "协理")
    # --- technical ---
    + _f("technical", 0.95, "cto", "cio", "首席技术官", "首席信息官", "架构师", "技术总监")
    + _f("technical", 0.95, "chief information officer", "chief technology officer")
    + _f("technical", 0.95, "ciso", "首席信息安全官", "chief information security officer")
    + _f("technical", 0.95, "技术长", "资讯长")  # Taiwan's CTO and CIO
    + _f(
        "technical",
        0.9,
        "技术",
        "研发",
        "rnd",
        "信息技术",
        "运维",
        "devops",
        "architect",
        "总工",
        "总工程师",
        "资讯科技",  # Hong Kong and Taiwan: information technology
    )
    + _f("technical", 0.9, "technology", "technical", "tech", "系统管理员", "sysadmin")
    + _f("technical", 0.85, "it", "信息化", "信息中心", "信息部", "开发", "developer", "software")
    + _f("technical", 0.85, "engineering", "软件", "信息安全", "网络安全", "cybersecurity")
    + _f("technical", 0.85, "技术支持", "售前", "presales", "pre sales")
    + _f("technical", 0.85, "数字化", "网管", "系统集成", "资讯", "软体", "程式")  # Taiwan: 资讯...
    + _f("technical", 0.8, "信息", "测试", "erp", "维修", "maintenance")
    + _f("technical", 0.8, "工程师", "engineer", "工艺", "程序员", "programmer", "数据", "data")
    + _f("technical", 0.7, "设备", "security", "实验室", "lab")
    # --- finance ---
    + _f("finance", 0.95, "cfo", "首席财务官", "财务总监", "finance director", "treasurer")
    + _f("finance", 0.95, "财务长")  # Taiwan's CFO
    + _f("finance", 0.9, "财务", "会计", "finance", "financial", "accountant", "accounting")
    + _f("finance", 0.9, "fpa")
    + _f("finance", 0.85, "出纳", "税务", "controller", "comptroller", "cashier", "资金")
    + _f("finance", 0.85, "应付", "应收", "accounts payable", "accounts receivable", "treasury")
    + _f("finance", 0.8, "tax", "预算", "budget", "billing")
    + _f("finance", 0.7, "成本", "cost")
    # --- compliance / legal ---
    + _f("compliance", 0.95, "法务", "合规", "legal", "compliance", "general counsel", "clo")
    + _f("compliance", 0.9, "律师", "lawyer", "counsel", "attorney", "内控", "privacy", "dpo")
    + _f("compliance", 0.9, "法律", "paralegal", "知识产权", "intellectual property")
    + _f("compliance", 0.85, "风控", "风险管理", "risk management", "data protection")
    + _f("compliance", 0.85, "公司秘书", "company secretary", "董事会秘书", "董秘")
    # environment, health and safety (EHS; Taiwan: 工安, 环安卫)
    + _f("compliance", 0.85, "ehs", "hse", "环境健康安全", "安环", "环安", "工安")
    + _f("compliance", 0.8, "风险", "risk", "审计", "audit", "auditor", "认证", "certification")
    + _f("compliance", 0.8, "稽核", "内审")  # audit as Taiwan says it, internal audit
    + _f("compliance", 0.75, "安全", "环保")
    # --- procurement ---
    + _f("procurement", 0.95, "采购经理", "采购总监", "procurement", "purchasing", "采购部")
    + _f("procurement", 0.9, "采购", "sourcing", "寻源", "供应商管理", "vendor management")
    # sourcing engineers buy: "engineer" must not win as the head noun
    + _f("procurement", 0.9, "采购工程师", "寻源工程师", "procurement engineer")
    + _f("procurement", 0.9, "purchasing engineer", "sourcing engineer")
    + _f("procurement", 0.85, "buyer", "purchase", "采买", "招标", "招投标", "tendering")
    + _f("procurement", 0.85, "purchaser", "招采", "资材")  # Taiwan: 资材 (materials) buys
    + _f("procurement", 0.8, "supplier", "供应商")
    + _f("procurement", 0.75, "供应链", "supply chain")
    # --- business users ---
    + _f("business", 0.9, "厂长", "车间主任", "plant manager", "生产经理", "运营总监", "店长")
    + _f("business", 0.85, "销售", "sales", "marketing", "营销", "生产", "production")
    + _f("business", 0.85, "manufacturing", "制造", "车间", "workshop", "business development")
    + _f("business", 0.85, "销售工程师", "sales engineer", "客户经理", "account manager")
    + _f("business", 0.85, "工厂", "plant", "factory", "厂务", "行销")  # Taiwan: 厂务, 行销
    + _f("business", 0.8, "营运", "商务", "生管", "区域经理")  # Taiwan: 营运, 生管
    + _f("business", 0.8, "市场", "运营", "operations", "产品经理", "product manager")
    + _f("business", 0.8, "业务", "客服", "customer service", "customer success", "物流")
    + _f("business", 0.8, "logistics", "仓储", "仓库", "warehouse", "门店", "store manager")
    + _f("business", 0.75, "bd", "品牌", "brand", "渠道", "channel", "电商", "ecommerce")
    + _f("business", 0.7, "产品", "product", "质量", "品质", "质检", "quality", "qa", "qc")
    + _f("business", 0.7, "项目经理", "project manager", "计划", "planning", "班组长", "foreman")
    + _f("business", 0.7, "品保", "专案")  # Taiwan: quality assurance, project
    + _f("business", 0.6, "人事", "人力资源", "hr", "human resources", "行政", "admin")
    + _f("business", 0.6, "总务", "hrbp")
)

# Words that make a title a helper of the role it names.
_ASSISTANT = re.compile(
    r"助理|特助|秘书|实习|(?<![a-z0-9])(?:assistant|secretary|intern|trainee|pa|ea)(?![a-z0-9])"
)
_ASSISTANT_FACTOR = 0.6

TAG_PREFIXES = ("role", "角色", "职能", "buying role", "buyingrole", "决策链角色")

_TAG_VALUES: dict[str, str] = {
    **dict.fromkeys(
        ("decisionmaker", "decision", "dm", "boss", "management", "executive", "决策", "决策人"),
        "decision_maker",
    ),
    **dict.fromkeys(("决策者", "老板", "管理层", "高管", "拍板人"), "decision_maker"),
    **dict.fromkeys(
        ("technical", "tech", "it", "engineering", "技术", "研发", "it技术"), "technical"
    ),
    **dict.fromkeys(("finance", "financial", "财务"), "finance"),
    **dict.fromkeys(
        ("compliance", "legal", "risk", "合规", "法务", "风控", "法务合规"), "compliance"
    ),
    **dict.fromkeys(("procurement", "purchasing", "采购"), "procurement"),
    **dict.fromkeys(("business", "businessuser", "user", "业务", "业务用户", "使用者"), "business"),
}
# Tags without a prefix that still name a role unambiguously.
_BARE_TAGS: dict[str, str] = {
    **dict.fromkeys(
        ("决策人", "决策者", "关键决策人", "拍板人", "decisionmaker"), "decision_maker"
    ),
    "技术对接人": "technical",
    "技术决策人": "technical",
    "财务对接人": "finance",
    "法务对接人": "compliance",
    "采购对接人": "procurement",
    "业务对接人": "business",
}


@dataclass(frozen=True)
class RoleGuess:
    role: str
    confidence: float  # 0..1
    source: Literal["tag", "title", "api"]  # "api": a staff override (derive.contact_role)
    matched: str  # the tag, or the normalised fragment of the title that decided


@dataclass(frozen=True)
class Coverage:
    engaged: tuple[str, ...]  # in BUYING_ROLES order
    missing: tuple[str, ...]  # in BUYING_ROLES order
    ratio: float  # len(engaged) / len(BUYING_ROLES)


# --- normalisation ------------------------------------------------------------------------------

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RND = re.compile(r"r\s*&\s*d|research\s+(?:and|&)\s+development")
_FPA = re.compile(r"(?<![a-z0-9])fp\s*&\s*a(?![a-z0-9])")  # financial planning and analysis
_SPLIT = re.compile(r"[&/|,;+、\\]|(?<![a-z0-9])and(?![a-z0-9])|兼|及|暨")
_PUNCT = re.compile(r"[^\w\s]|_")
_SPACE_NEAR_CJK = re.compile(rf"\s+(?=[{_CJK}])|(?<=[{_CJK}])\s+")
_SPACES = re.compile(r"\s+")


# hk2s: character conversion only, with Hong Kong's variant characters (衞, 衹); Taiwan's are in
# the traditional-to-simplified tables that every config shares. Not tw2sp: its Taiwan-to-mainland
# phrase step reads 執行 as "run a program" (首席執行官 -> 首席运行官, 執行董事 -> 运行董事) and
# 稽核 as 审核. Not tw2s: it turns 著 into 着, also in mainland text (著作权). Taiwan words stay
# Taiwan words in simplified characters (资讯, 软体, 专案, 执行长): TITLE_PATTERNS lists them.
# Simplified text passes unchanged.
_OPENCC_CONFIG = "hk2s.json"


@functools.cache
def _converter() -> opencc.OpenCC:
    """Built once per process, on first use (loading the dictionaries takes a few ms)."""
    return opencc.OpenCC(_OPENCC_CONFIG)


def to_simplified(text: str) -> str:
    """Traditional Chinese in the text as simplified; everything else as it was."""
    return _converter().convert(text) if text else text


def _normalise(text: str) -> str:
    """NFKC first (compatibility ideographs, full width), then one conversion, then case-fold."""
    return to_simplified(unicodedata.normalize("NFKC", text)).casefold()


def normalise_title(title: str) -> tuple[str, ...]:
    """The normalised parts of a (possibly compound) title; empty parts are dropped."""
    text = _FPA.sub(" fpa ", _RND.sub(" rnd ", _normalise(title)))
    parts = []
    for raw in _SPLIT.split(text):
        part = _PUNCT.sub(" ", raw)
        part = _SPACE_NEAR_CJK.sub("", part)
        part = _SPACES.sub(" ", part).strip()
        if part:
            parts.append(part)
    return tuple(parts)


def _compile(pattern: str) -> re.Pattern[str]:
    body = pattern.replace(" ", r"\s?")
    if re.match(r"[a-z0-9]", pattern):
        body = r"(?<![a-z0-9])" + body
    if re.search(r"[a-z0-9]$", pattern):
        body += r"(?![a-z0-9])"
    return re.compile(body)


_COMPILED = tuple((_compile(p.pattern), p) for p in TITLE_PATTERNS)
_ROLE_ORDER = {role: i for i, role in enumerate(BUYING_ROLES)}


def _read_part(part: str) -> RoleGuess | None:
    found: list[tuple[int, int, TitlePattern]] = []
    for regex, entry in _COMPILED:
        found.extend((m.start(), m.end(), entry) for m in regex.finditer(part))
    # The most specific match wins: drop every match lying inside a longer one.
    found = [
        (s, e, p)
        for s, e, p in found
        if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in found)
    ]
    if not found:
        return None
    functions = [f for f in found if f[2].kind == FUNCTION]
    assistant = any(
        not any(s <= m.start() and m.end() <= e for s, e, _ in found)
        for m in _ASSISTANT.finditer(part)
    )
    if functions:
        start, end, entry = max(functions, key=lambda f: (f[1], f[1] - f[0], f[2].confidence))
        role = entry.role
    else:
        start, end, entry = max(found, key=lambda f: (f[2].confidence, f[1]))
        role = "business" if assistant else entry.role
    confidence = entry.confidence * (_ASSISTANT_FACTOR if assistant else 1.0)
    return RoleGuess(role, round(confidence, 4), "title", part[start:end])


def _role_from_tag(tag: str) -> str | None:
    text = _SPACES.sub("", _normalise(tag)).replace("_", "").replace("-", "")
    if text in _BARE_TAGS:
        return _BARE_TAGS[text]
    for separator in (":", "="):
        prefix, sep, value = text.partition(separator)
        if sep and prefix in {p.replace(" ", "") for p in TAG_PREFIXES}:
            return _TAG_VALUES.get(value)
    return None


def infer_role(title: str | None, tags: Iterable[str] = ()) -> RoleGuess | None:
    """The buying role of a contact, from staff tags (confidence 1.0) or the job title."""
    tagged = [(role, tag) for tag in tags if (role := _role_from_tag(tag)) is not None]
    if tagged:
        role, tag = min(tagged, key=lambda rt: (_ROLE_ORDER[rt[0]], rt[1]))
        return RoleGuess(role, 1.0, "tag", tag)
    if not title:
        return None
    guesses = [g for part in normalise_title(title) if (g := _read_part(part)) is not None]
    if not guesses:
        return None
    return min(guesses, key=lambda g: (-g.confidence, _ROLE_ORDER[g.role]))


def role_coverage(engaged: Iterable[str]) -> Coverage:
    """Which of ``BUYING_ROLES`` are engaged and which are missing; unknown names fail."""
    given = set(engaged)
    unknown = sorted(given - set(BUYING_ROLES))
    if unknown:
        raise ValueError(
            f"unknown buying role(s): {', '.join(unknown)}; expected one of {BUYING_ROLES}"
        )
    engaged_roles = tuple(r for r in BUYING_ROLES if r in given)
    missing = tuple(r for r in BUYING_ROLES if r not in given)
    return Coverage(engaged_roles, missing, len(engaged_roles) / len(BUYING_ROLES))
