from __future__ import annotations

import pytest

from services.segment.roles import (
    TITLE_PATTERNS,
    Coverage,
    RoleGuess,
    infer_role,
    normalise_title,
    role_coverage,
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
    [None, "", "   ", "经理", "Manager", "Test", "张三", "员工", "Mr.", "VIP客户", "学生"],
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
