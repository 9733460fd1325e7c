"""Company names to account keys: one B2B account per company, however its name is typed. In
shared so that whoever sends or derives an account key (segment, the sandbox's population) uses
this one definition.

``normalise_company(name)``:

1. NFKC (full-width letters, digits, brackets and spaces become ASCII) and case-fold (Latin
   letters lower-cased; Chinese is kept as is). Dotted abbreviations are joined ("L.L.C." -> llc).
2. A bracketed country marker is removed: "(中国)", "(China)", "(PRC)". Other bracketed text
   keeps its words and loses its brackets: "苏州精工机械(有限公司)" reads as
   "苏州精工机械有限公司".
3. Punctuation becomes spaces; spaces next to Chinese characters disappear.
4. Legal-form suffixes are stripped from the end, repeatedly: Chinese 股份有限公司, 有限责任公司,
   有限公司, 股份公司, 公司 (not 分公司: a branch is named by its office), and the Latin words of
   ``LEGAL_WORDS`` (co, ltd, limited, company, inc, corp, llc, gmbh, plc...) as whole words, so
   "Costco" keeps its "co".
5. Remaining spaces are removed: the key is a compact string ("shenzhenhuaxinelectronics").

Decisions:

- "集团" (group) is **kept**: "美的集团股份有限公司" -> "美的集团". A group holding and its
  operating subsidiaries are different legal entities that buy separately; merging two accounts
  later is easy, splitting one is not.
- City and region prefixes are kept ("苏州精工机械" != "无锡精工机械"): they name different
  companies.
- Branches are kept distinct ("...有限公司上海分公司" keeps "上海分公司").

``account_key(name)`` is exactly ``normalise_company(name)``: the stable B2B account key stored in
``Identity.account_key`` (≤ 200 characters, as the envelope allows). Keep it a pure function of the
name so every service derives the same key; a tenant's manual merges belong in the CRM mapping,
not here. An empty key (a name that is only a legal form or punctuation) raises ValueError.
"""

from __future__ import annotations

import re
import unicodedata

MAX_KEY_CHARS = 200

LEGAL_WORDS = frozenset(
    {
        "co",
        "company",
        "companies",
        "corp",
        "corporation",
        "inc",
        "incorporated",
        "ltd",
        "limited",
        "llc",
        "llp",
        "lp",
        "plc",
        "gmbh",
        "ag",
        "kg",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "pte",
        "pty",
        "kk",
    }
)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DOTTED = re.compile(r"(?<![a-z0-9])((?:[a-z]\.){2,})")
_COUNTRY = re.compile(r"[(\[{【〔]\s*(?:中国|中國|china|prc|p r c)\s*[)\]}】〕]")
_PUNCT = re.compile(r"[^\w\s]|_")
_SPACE_NEAR_CJK = re.compile(rf"\s+(?=[{_CJK}])|(?<=[{_CJK}])\s+")
_SPACES = re.compile(r"\s+")
_CN_SUFFIX = re.compile(r"(?:股份有限公司|有限责任公司|有限公司|股份公司|(?<!分)公司)$")
_LATIN_TAIL = re.compile(r"(?:^|(?<=\s)|(?<=[" + _CJK + r"]))([a-z]+)$")


def _strip_legal_forms(text: str) -> str:
    while True:
        text = text.strip()
        cn = _CN_SUFFIX.search(text)
        if cn and cn.start() > 0:
            text = text[: cn.start()]
            continue
        latin = _LATIN_TAIL.search(text)
        if latin and latin.group(1) in LEGAL_WORDS and latin.start(1) > 0:
            text = text[: latin.start(1)]
            continue
        return text


def normalise_company(name: str) -> str:
    """The comparison form of a company name (see the module docstring for the rules)."""
    if not isinstance(name, str):
        raise TypeError(f"company name must be a string, got {type(name).__name__}")
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _DOTTED.sub(lambda m: m.group(1).replace(".", ""), text)
    text = _COUNTRY.sub(" ", text)
    text = _PUNCT.sub(" ", text)
    text = _SPACE_NEAR_CJK.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    text = _strip_legal_forms(text)
    key = text.replace(" ", "")
    if not key or key in LEGAL_WORDS or _CN_SUFFIX.fullmatch(key):
        raise ValueError(f"company name {name!r} has no name left once legal forms are removed")
    return key


def account_key(name: str) -> str:
    """The B2B account key of a company: its normalised name, at most 200 characters."""
    key = normalise_company(name)
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"company name {name[:40]!r}... is too long for an account key")
    return key
