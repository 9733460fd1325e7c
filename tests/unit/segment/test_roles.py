from __future__ import annotations

import unicodedata

import pytest

from services.segment import roles
from services.segment.roles import (
    TITLE_PATTERNS,
    Coverage,
    RoleGuess,
    infer_role,
    normalise_title,
    role_coverage,
    to_simplified,
)
from shared.vocabulary import BUYING_ROLES

# (title, expected role, minimum confidence)
TITLES = [
    # procurement
    ("采购经理", "procurement", 0.9),
    ("采购总监", "procurement", 0.9),
    ("高级采购专员", "procurement", 0.85),
    ("Procurement Manager", "procurement", 0.9),
    ("Senior Purchasing Officer", "procurement", 0.9),
    ("Sr. Buyer", "procurement", 0.8),
    ("供应链经理", "procurement", 0.7),
    ("Head of Strategic Sourcing", "procurement", 0.85),
    ("IT采购", "procurement", 0.85),  # head noun last: IT procurement is procurement
    ("采购 经理", "procurement", 0.9),  # stray space
    # technical
    ("CTO", "technical", 0.9),
    ("ＣＴＯ", "technical", 0.9),  # full-width
    ("技术总监", "technical", 0.9),
    ("系统架构师", "technical", 0.9),
    ("IT经理", "technical", 0.8),
    ("研发中心主任", "technical", 0.85),
    ("Ｒ＆Ｄ Director", "technical", 0.85),
    ("Head of R&D", "technical", 0.85),
    ("Senior Software Engineer", "technical", 0.75),
    ("Solution Architect", "technical", 0.9),
    ("CIO", "technical", 0.9),
    ("信息化负责人", "technical", 0.8),
    ("技术副总裁", "technical", 0.85),  # function beats the generic VP
    ("Director of Engineering", "technical", 0.8),
    ("总工程师", "technical", 0.85),
    ("工艺工程师", "technical", 0.75),
    # finance
    ("CFO", "finance", 0.9),
    ("首席财务官", "finance", 0.9),
    ("财务总监", "finance", 0.9),
    ("财务经理", "finance", 0.85),
    ("会计", "finance", 0.85),
    ("Finance Manager", "finance", 0.85),
    ("Financial Controller", "finance", 0.85),
    ("Group Controller", "finance", 0.8),
    # compliance
    ("法务经理", "compliance", 0.9),
    ("合规专员", "compliance", 0.9),
    ("Legal Counsel", "compliance", 0.9),
    ("Compliance Officer", "compliance", 0.9),
    ("风控总监", "compliance", 0.8),
    ("Chief Risk Officer", "compliance", 0.75),
    ("内部审计", "compliance", 0.75),
    # decision makers
    ("总经理", "decision_maker", 0.9),
    ("CEO", "decision_maker", 0.9),
    ("董事长", "decision_maker", 0.9),
    ("总裁", "decision_maker", 0.9),
    ("执行总裁", "decision_maker", 0.9),
    ("老板", "decision_maker", 0.9),
    ("创始人", "decision_maker", 0.9),
    ("联合创始人", "decision_maker", 0.9),
    ("Co-Founder", "decision_maker", 0.9),
    ("Founder", "decision_maker", 0.9),
    ("GM", "decision_maker", 0.9),
    ("General Manager", "decision_maker", 0.9),
    ("Managing Director", "decision_maker", 0.9),
    ("CEO & Founder", "decision_maker", 0.9),
    ("Founder & CTO", "decision_maker", 0.9),  # a founder decides, in either order
    ("CTO / Co-founder", "decision_maker", 0.9),
    ("董事长兼总经理", "decision_maker", 0.9),
    ("总经理兼技术总监", "decision_maker", 0.9),
    ("VP", "decision_maker", 0.55),  # generic executive: low confidence
    ("副总裁", "decision_maker", 0.55),
    ("副总经理", "decision_maker", 0.55),
    ("Vice President", "decision_maker", 0.55),
    # business users
    ("生产经理", "business", 0.85),
    ("运营总监", "business", 0.8),
    ("销售经理", "business", 0.8),
    ("产品经理", "business", 0.75),
    ("市场部经理", "business", 0.75),
    ("Operations Manager", "business", 0.75),
    ("Sales Director", "business", 0.8),
    ("VP of Sales", "business", 0.8),  # a functional executive is reached by his function
    ("销售副总裁", "business", 0.8),
    ("Marketing Specialist", "business", 0.8),
    ("Plant Manager", "business", 0.85),
    ("厂长", "business", 0.85),
    ("车间主任", "business", 0.85),
    ("销售工程师", "business", 0.8),  # a salesperson in Chinese usage, not an engineer
    ("技术销售", "business", 0.8),
    ("总经理助理", "business", 0.5),  # assists the boss, is not the boss
]


@pytest.mark.parametrize(("title", "role", "min_confidence"), TITLES)
def test_titles_map_to_roles(title: str, role: str, min_confidence: float) -> None:
    guess = infer_role(title)
    assert guess is not None, title
    assert guess.role == role, (title, guess)
    assert guess.source == "title"
    assert min_confidence <= guess.confidence <= 1.0, (title, guess)
    assert guess.matched  # the fragment that decided


def test_table_is_large_and_covers_every_role() -> None:
    assert len(TITLES) >= 40
    assert {role for _, role, _ in TITLES} == set(BUYING_ROLES)
    assert {p.role for p in TITLE_PATTERNS} == set(BUYING_ROLES)
    assert all(0 < p.confidence <= 1 for p in TITLE_PATTERNS)


@pytest.mark.parametrize(
    "title",
    [
        None,
        "",
        "   ",
        "经理",
        "Manager",
        "Test",
        "张三",
        "员工",
        "Mr.",
        "VIP客户",
        "学生",
        "經理",
        "專員",
    ],
)
def test_unknown_titles_give_none(title: str | None) -> None:
    assert infer_role(title) is None


@pytest.mark.parametrize(
    ("title", "matched"),
    [
        ("副总裁", "副总裁"),  # not the contained 总裁
        ("销售工程师", "销售工程师"),  # not the contained 工程师
        ("Managing Director", "managing director"),  # not the contained director
        ("IT采购", "采购"),
        ("采购经理", "采购经理"),
    ],
)
def test_the_most_specific_match_decides(title: str, matched: str) -> None:
    guess = infer_role(title)
    assert guess is not None
    assert guess.matched == matched


def test_assistant_lowers_confidence_but_keeps_a_function() -> None:
    plain = infer_role("采购专员")
    helper = infer_role("采购助理")
    assert plain is not None
    assert helper is not None
    assert helper.role == plain.role == "procurement"
    assert helper.confidence < plain.confidence


def test_normalise_title() -> None:
    assert normalise_title("CEO & Founder") == ("ceo", "founder")
    assert normalise_title("董事长兼总经理") == ("董事长", "总经理")
    assert normalise_title("董事長暨總經理") == ("董事长", "总经理")  # traditional, Taiwan's "and"
    assert normalise_title("FP&A Manager") == ("fpa manager",)
    assert normalise_title("ＩＴ 经理") == ("it经理",)
    assert normalise_title("Head of R&D") == ("head of rnd",)
    assert normalise_title("Sr. Buyer (APAC)") == ("sr buyer apac",)


@pytest.mark.parametrize(
    ("title", "tags", "role", "matched"),
    [
        ("CEO", ["角色:技术"], "technical", "角色:技术"),
        ("CEO", ["角色：财务"], "finance", "角色：财务"),  # full-width colon
        (None, ["role:finance"], "finance", "role:finance"),
        ("采购经理", ["Role: Compliance"], "compliance", "Role: Compliance"),
        ("", ["决策人"], "decision_maker", "决策人"),
        ("工程师", ["role:decision_maker"], "decision_maker", "role:decision_maker"),
        ("销售", ["VIP", "角色:采购"], "procurement", "角色:采购"),
        ("CTO", ["职能:法务"], "compliance", "职能:法务"),
        ("x", ["技术对接人"], "technical", "技术对接人"),
        ("CEO", ["角色:財務"], "finance", "角色:財務"),  # traditional tags too
        # several role tags: the first role in BUYING_ROLES order wins
        (None, ["角色:业务", "角色:财务"], "finance", "角色:财务"),
        (None, ["role:business", "决策者"], "decision_maker", "决策者"),
    ],
)
def test_tags_override_titles(title: str | None, tags: list[str], role: str, matched: str) -> None:
    assert infer_role(title, tags) == RoleGuess(role, 1.0, "tag", matched)


@pytest.mark.parametrize("tags", [[], ["VIP"], ["角色:未知"], ["role:"], ["技术"], ["老客户"]])
def test_tags_that_name_no_role_fall_back_to_the_title(tags: list[str]) -> None:
    guess = infer_role("财务经理", tags)
    assert guess is not None
    assert (guess.role, guess.source) == ("finance", "title")
    assert infer_role(None, tags) is None


def test_deterministic() -> None:
    for title, _, _ in TITLES:
        assert infer_role(title) == infer_role(title)


@pytest.mark.parametrize(
    ("engaged", "expected"),
    [
        ([], Coverage((), BUYING_ROLES, 0.0)),
        (
            ["technical", "decision_maker"],
            Coverage(
                ("decision_maker", "technical"),
                ("finance", "compliance", "procurement", "business"),
                2 / 6,
            ),
        ),
        (["finance", "finance", "business"], Coverage(("finance", "business"), None, 2 / 6)),
        (list(BUYING_ROLES), Coverage(BUYING_ROLES, (), 1.0)),
        (frozenset({"procurement"}), Coverage(("procurement",), None, 1 / 6)),
    ],
)
def test_role_coverage(engaged: list[str], expected: Coverage) -> None:
    coverage = role_coverage(engaged)
    assert coverage.engaged == expected.engaged
    if expected.missing is not None:
        assert coverage.missing == expected.missing
    assert set(coverage.engaged) | set(coverage.missing) == set(BUYING_ROLES)
    assert not set(coverage.engaged) & set(coverage.missing)
    assert coverage.ratio == pytest.approx(expected.ratio)


def test_role_coverage_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError, match="boss"):
        role_coverage(["technical", "boss"])


# --- the role table reviewed against real job titles -------------------------------------------
# (title, role, confidence): the confidence is the pattern's tier, exact. Ids gloss the title.
P = pytest.param

SIMPLIFIED_TITLES = [
    # legal
    P("法务经理", "compliance", 0.95, id="legal-manager"),
    P("法务总监", "compliance", 0.95, id="legal-director"),
    P("合规官", "compliance", 0.95, id="compliance-officer"),
    P("首席合规官", "compliance", 0.95, id="chief-compliance-officer"),
    P("法律顾问", "compliance", 0.9, id="legal-counsel"),
    P("知识产权经理", "compliance", 0.9, id="ip-manager"),
    P("董事会秘书", "compliance", 0.85, id="board-secretary-an-officer"),
    P("董秘", "compliance", 0.85, id="board-secretary-short"),
    # audit
    P("审计经理", "compliance", 0.8, id="audit-manager"),
    P("内审经理", "compliance", 0.8, id="internal-audit-manager"),
    P("审计总监", "compliance", 0.8, id="audit-director"),
    P("稽核主管", "compliance", 0.8, id="audit-supervisor-taiwan-word"),
    P("内控经理", "compliance", 0.9, id="internal-control-manager"),
    # purchasing
    P("采购经理", "procurement", 0.95, id="purchasing-manager"),
    P("采购专员", "procurement", 0.9, id="purchasing-specialist"),
    P("采购员", "procurement", 0.9, id="buyer"),
    P("供应链总监", "procurement", 0.75, id="supply-chain-director"),
    P("寻源经理", "procurement", 0.9, id="sourcing-manager"),
    P("采购工程师", "procurement", 0.9, id="purchasing-engineer-not-engineer"),
    P("寻源工程师", "procurement", 0.9, id="sourcing-engineer-not-engineer"),
    P("招采经理", "procurement", 0.85, id="tendering-and-purchasing-manager"),
    P("资材经理", "procurement", 0.85, id="materials-manager"),
    P("供应商管理经理", "procurement", 0.9, id="supplier-management-manager"),
    # plant and manufacturing
    P("厂长", "business", 0.9, id="plant-manager"),
    P("副厂长", "business", 0.9, id="deputy-plant-manager"),
    P("工厂经理", "business", 0.85, id="factory-manager"),
    P("生产经理", "business", 0.9, id="production-manager"),
    P("生产总监", "business", 0.85, id="production-director"),
    P("车间主任", "business", 0.9, id="workshop-head"),
    P("质量经理", "business", 0.7, id="quality-manager"),
    P("设备工程师", "technical", 0.8, id="equipment-engineer"),
    P("设备经理", "technical", 0.7, id="equipment-manager"),
    P("维修主管", "technical", 0.8, id="maintenance-supervisor"),
    P("工艺经理", "technical", 0.8, id="process-manager"),
    P("EHS经理", "compliance", 0.85, id="ehs-manager"),
    P("安全主任", "compliance", 0.75, id="safety-officer"),
    P("环保专员", "compliance", 0.75, id="environmental-specialist"),
    # finance
    P("财务总监", "finance", 0.95, id="finance-director"),
    P("财务经理", "finance", 0.9, id="finance-manager"),
    P("财务BP", "finance", 0.9, id="finance-business-partner"),
    P("财务副总", "finance", 0.9, id="finance-vp"),
    P("总会计师", "finance", 0.9, id="chief-accountant"),
    P("会计主任", "finance", 0.9, id="chief-of-accounting"),
    P("应收会计", "finance", 0.9, id="receivables-accountant"),
    P("出纳", "finance", 0.85, id="cashier"),
    P("资金经理", "finance", 0.85, id="treasury-manager"),
    # IT and technical
    P("IT经理", "technical", 0.85, id="it-manager"),
    P("信息部经理", "technical", 0.85, id="it-department-manager"),
    P("信息科科长", "technical", 0.8, id="it-section-chief"),
    P("首席信息官", "technical", 0.95, id="cio"),
    P("架构师", "technical", 0.95, id="architect"),
    P("数字化总监", "technical", 0.85, id="digital-director"),
    P("测试经理", "technical", 0.8, id="test-manager"),
    P("ERP经理", "technical", 0.8, id="erp-manager"),
    P("网管", "technical", 0.85, id="network-admin"),
    P("数据分析师", "technical", 0.8, id="data-analyst"),
    # decision makers
    P("总经理", "decision_maker", 0.95, id="general-manager"),
    P("董事长", "decision_maker", 0.95, id="chairman"),
    P("总裁", "decision_maker", 0.95, id="president"),
    P("事业部总经理", "decision_maker", 0.95, id="business-unit-gm"),
    P("董事总经理", "decision_maker", 0.95, id="managing-director"),
    P("执行董事", "decision_maker", 0.85, id="executive-director"),
    P("老总", "decision_maker", 0.9, id="the-boss-colloquial"),
    P("副总经理", "decision_maker", 0.6, id="deputy-gm"),
    P("处长", "decision_maker", 0.5, id="division-head"),
    # business users
    P("运营经理", "business", 0.8, id="operations-manager"),
    P("市场总监", "business", 0.8, id="marketing-director"),
    P("业务经理", "business", 0.8, id="business-manager"),
    P("商务经理", "business", 0.8, id="commercial-manager"),
    P("区域经理", "business", 0.8, id="area-manager"),
    P("客服主管", "business", 0.8, id="customer-service-supervisor"),
    P("人力资源经理", "business", 0.6, id="hr-manager"),
    P("总经理特助", "business", 0.57, id="special-assistant-to-gm"),
    P("总经理秘书", "business", 0.57, id="secretary-to-gm"),
]

# Taiwan (TW) and Hong Kong (HK) titles, in traditional characters.
TRADITIONAL_TITLES = [
    # legal and audit
    P("法務總監", "compliance", 0.95, id="legal-director"),
    P("法務長", "compliance", 0.95, id="tw-chief-legal-officer"),
    P("公司秘書", "compliance", 0.85, id="hk-company-secretary"),
    P("內部稽核", "compliance", 0.8, id="tw-internal-audit"),
    P("稽核專員", "compliance", 0.8, id="tw-audit-specialist"),
    P("內部稽核主管", "compliance", 0.8, id="tw-internal-audit-supervisor"),
    P("環安衛經理", "compliance", 0.85, id="tw-ehs-manager"),
    P("工安主管", "compliance", 0.85, id="tw-industrial-safety-supervisor"),
    # purchasing
    P("採購經理", "procurement", 0.95, id="purchasing-manager"),
    P("採購專員", "procurement", 0.9, id="purchasing-specialist"),
    P("採購工程師", "procurement", 0.9, id="purchasing-engineer"),
    P("資深採購", "procurement", 0.9, id="senior-buyer"),
    P("資材課長", "procurement", 0.85, id="tw-materials-section-chief"),
    P("供應鏈經理", "procurement", 0.75, id="supply-chain-manager"),
    # plant
    P("廠長", "business", 0.9, id="plant-manager"),
    P("廠務經理", "business", 0.85, id="tw-fab-facilities-manager"),
    P("生管主任", "business", 0.8, id="tw-production-control-head"),
    P("製造部經理", "business", 0.85, id="manufacturing-manager"),
    P("品保經理", "business", 0.7, id="tw-qa-manager"),
    P("品質經理", "business", 0.7, id="quality-manager"),
    P("設備工程師", "technical", 0.8, id="equipment-engineer"),
    # finance
    P("財務總監", "finance", 0.95, id="finance-director"),
    P("財務長", "finance", 0.95, id="tw-cfo"),
    P("會計主任", "finance", 0.9, id="chief-of-accounting"),
    P("會計師", "finance", 0.9, id="accountant"),
    P("首席財務官", "finance", 0.95, id="cfo"),
    # IT and technical
    P("資訊長", "technical", 0.95, id="tw-cio"),
    P("技術長", "technical", 0.95, id="tw-cto"),
    P("資訊部經理", "technical", 0.85, id="tw-it-department-manager"),
    P("資訊科技經理", "technical", 0.9, id="hk-it-manager"),
    P("軟體工程師", "technical", 0.8, id="tw-software-engineer"),
    P("程式設計師", "technical", 0.85, id="tw-programmer"),
    P("研發處處長", "technical", 0.9, id="tw-rnd-division-head"),
    P("系統架構師", "technical", 0.95, id="systems-architect"),
    # decision makers
    P("董事長", "decision_maker", 0.95, id="chairman"),
    P("總經理", "decision_maker", 0.95, id="general-manager"),
    P("事業部總經理", "decision_maker", 0.95, id="business-unit-gm"),
    P("執行長", "decision_maker", 0.95, id="tw-ceo"),
    P("首席執行官", "decision_maker", 0.95, id="hk-ceo"),
    P("行政總裁", "decision_maker", 0.95, id="hk-ceo-not-admin"),
    P("董事長暨總經理", "decision_maker", 0.95, id="tw-chairman-and-gm"),
    P("執行董事", "decision_maker", 0.85, id="executive-director"),
    P("營運長", "decision_maker", 0.85, id="tw-coo"),
    P("合夥人", "decision_maker", 0.9, id="partner"),
    P("副總經理", "decision_maker", 0.6, id="deputy-gm"),
    P("協理", "decision_maker", 0.5, id="tw-assistant-vp"),
    P("處長", "decision_maker", 0.5, id="division-head"),
    # business users
    P("業務經理", "business", 0.8, id="tw-sales-manager"),
    P("行銷經理", "business", 0.85, id="tw-marketing-manager"),
    P("市場推廣經理", "business", 0.8, id="hk-marketing-manager"),
    P("專案經理", "business", 0.7, id="tw-project-manager"),
    P("營運經理", "business", 0.8, id="hk-operations-manager"),
    P("總務主任", "business", 0.6, id="tw-general-affairs-head"),
    P("總經理特助", "business", 0.57, id="tw-special-assistant-to-gm"),
]

# English titles as Chinese companies print them on name cards.
ENGLISH_TITLES = [
    P("General Counsel", "compliance", 0.95, id="general-counsel"),
    P("Head of Legal", "compliance", 0.95, id="head-of-legal"),
    P("Company Secretary", "compliance", 0.85, id="company-secretary-an-officer"),
    P("Paralegal", "compliance", 0.9, id="paralegal"),
    P("Internal Audit Manager", "compliance", 0.8, id="internal-audit-manager"),
    P("EHS Manager", "compliance", 0.85, id="ehs-manager"),
    P("Purchasing Manager", "procurement", 0.95, id="purchasing-manager"),
    P("Procurement Engineer", "procurement", 0.9, id="procurement-engineer"),
    P("Sourcing Engineer", "procurement", 0.9, id="sourcing-engineer"),
    P("Purchaser", "procurement", 0.85, id="purchaser"),
    P("Plant Director", "business", 0.85, id="plant-director-not-generic-director"),
    P("Factory Manager", "business", 0.85, id="factory-manager"),
    P("Quality Manager", "business", 0.7, id="quality-manager"),
    P("Maintenance Manager", "technical", 0.8, id="maintenance-manager"),
    P("FP&A Manager", "finance", 0.9, id="fpa-manager"),
    P("Finance Business Partner", "finance", 0.9, id="finance-business-partner"),
    P("Accounts Payable Specialist", "finance", 0.85, id="accounts-payable"),
    P("Treasury Manager", "finance", 0.85, id="treasury-manager"),
    P("CISO", "technical", 0.95, id="ciso"),
    P("Chief Information Security Officer", "technical", 0.95, id="ciso-long"),
    P("Head of IT", "technical", 0.85, id="head-of-it"),
    P("Country Manager", "decision_maker", 0.85, id="country-manager"),
    P("Key Account Manager", "business", 0.85, id="key-account-manager"),
    P("HRBP", "business", 0.6, id="hr-business-partner"),
]


def _assert_reads(title: str, role: str, confidence: float) -> None:
    guess = infer_role(title)
    assert guess is not None, title
    assert (guess.role, guess.source) == (role, "title"), (title, guess)
    assert guess.confidence == pytest.approx(confidence), (title, guess)


@pytest.mark.parametrize(("title", "role", "confidence"), SIMPLIFIED_TITLES)
def test_simplified_titles(title: str, role: str, confidence: float) -> None:
    _assert_reads(title, role, confidence)


@pytest.mark.parametrize(("title", "role", "confidence"), TRADITIONAL_TITLES)
def test_traditional_titles(title: str, role: str, confidence: float) -> None:
    _assert_reads(title, role, confidence)


@pytest.mark.parametrize(("title", "role", "confidence"), ENGLISH_TITLES)
def test_english_titles(title: str, role: str, confidence: float) -> None:
    _assert_reads(title, role, confidence)


# (traditional, the same title in simplified characters)
PAIRS = [
    P("財務總監", "财务总监", id="finance-director"),
    P("採購經理", "采购经理", id="purchasing-manager"),
    P("採購專員", "采购专员", id="purchasing-specialist"),
    P("法務總監", "法务总监", id="legal-director"),
    P("內部稽核", "内部稽核", id="internal-audit"),
    P("稽核主管", "稽核主管", id="audit-supervisor-same-characters"),
    P("廠長", "厂长", id="plant-manager"),
    P("設備工程師", "设备工程师", id="equipment-engineer"),
    P("品保經理", "品保经理", id="qa-manager"),
    P("會計主任", "会计主任", id="chief-of-accounting"),
    P("財務長", "财务长", id="tw-cfo"),
    P("資訊長", "资讯长", id="tw-cio"),
    P("技術長", "技术长", id="tw-cto"),
    P("執行長", "执行长", id="tw-ceo"),
    P("營運長", "营运长", id="tw-coo"),
    P("行政總裁", "行政总裁", id="hk-ceo"),
    P("事業部總經理", "事业部总经理", id="business-unit-gm"),
    P("董事長", "董事长", id="chairman"),
    P("董事長暨總經理", "董事长暨总经理", id="chairman-and-gm"),
    P("軟體工程師", "软体工程师", id="software-engineer"),
    P("資訊科技經理", "资讯科技经理", id="it-manager"),
    P("行銷經理", "行销经理", id="marketing-manager"),
    P("專案經理", "专案经理", id="project-manager"),
    P("供應鏈總監", "供应链总监", id="supply-chain-director"),
    P("公司秘書", "公司秘书", id="company-secretary"),
    P("總經理助理", "总经理助理", id="assistant-to-gm"),
    P("衞生主任", "卫生主任", id="hk-variant-character"),
    P("經理", "经理", id="bare-manager-is-nothing"),
]


@pytest.mark.parametrize(("traditional", "simplified"), PAIRS)
def test_a_traditional_title_reads_as_its_simplified_form(
    traditional: str, simplified: str
) -> None:
    assert to_simplified(traditional) == simplified
    assert infer_role(traditional) == infer_role(simplified)


def test_simplified_titles_pass_the_conversion_unchanged() -> None:
    simplified = [p.values[0] for p in SIMPLIFIED_TITLES] + [t for t, _, _ in TITLES]
    for title in map(lambda t: unicodedata.normalize("NFKC", t), simplified):
        assert to_simplified(title) == title
    assert to_simplified("著作权经理") == "著作权经理"  # why not tw2s: it writes 着作权


def test_the_converter_is_built_once_and_used_once_per_title(monkeypatch) -> None:
    assert roles._converter() is roles._converter()
    calls = []

    class Counting:
        def convert(self, text: str) -> str:
            calls.append(text)
            return text.replace("財務總監", "财务总监").replace("採購經理", "采购经理")

    monkeypatch.setattr(roles, "_converter", lambda: Counting())
    guess = infer_role("財務總監兼採購經理")
    assert calls == ["財務總監兼採購經理"]
    assert guess is not None
    assert guess.role == "finance"
