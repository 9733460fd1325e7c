"""Display names of the domain's codes (console/labels.py) in Chinese by default and in English,
and a label for every built-in stage, buying role and risk flag."""

from __future__ import annotations

import pytest
from flask import Flask

from console import labels
from console.app import init_console
from shared.config import Settings
from shared.vocabulary import BUILTIN_SIDE_STAGES, BUILTIN_STAGES, BUYING_ROLES, RISK_FLAGS

ZH = {
    "attention": "注意", "interest": "兴趣", "search": "搜索", "comparison": "比较",
    "examination": "检讨", "action": "行动", "share": "分享", "lapsed": "流失",
    "acquisition": "获取", "activation": "激活", "retention": "留存", "revenue": "收入",
    "referral": "推荐",
}  # fmt: skip
ROLES_ZH = {"decision_maker": "决策者", "technical": "技术", "finance": "财务",
            "compliance": "合规/法务", "business": "业务", "procurement": "采购"}  # fmt: skip


@pytest.fixture(scope="module")
def app():
    app = Flask("labels-test")
    init_console(app, Settings.from_env({"SIYU_CONSOLE_SECRET": "s" * 32}))
    return app


def test_every_builtin_code_has_a_label():
    stages = {s for model in BUILTIN_STAGES for s in BUILTIN_STAGES[model]}
    stages |= {s for model in BUILTIN_SIDE_STAGES for s in BUILTIN_SIDE_STAGES[model]}
    assert set(labels.STAGES) == stages
    assert set(labels.BUYING_ROLES) == set(BUYING_ROLES)
    assert set(labels.RISK_FLAGS) == set(RISK_FLAGS)


@pytest.mark.parametrize(("code", "chinese"), sorted(ZH.items()))
def test_stages_are_chinese_by_default(app, code, chinese):
    with app.test_request_context("/"):
        assert labels.stage(code) == chinese


@pytest.mark.parametrize(("code", "chinese"), sorted(ROLES_ZH.items()))
def test_buying_roles_are_chinese_by_default(app, code, chinese):
    with app.test_request_context("/"):
        assert labels.buying_role(code) == chinese


def test_english_after_the_switch(app):
    with app.test_request_context("/", headers={"Cookie": "siyu_lang=en"}):
        assert labels.stage("comparison") == "Comparison"
        assert labels.buying_role("decision_maker") == "Decision maker"
        assert labels.risk_flag("payment_risk") == "Payment risk"


def test_a_custom_stage_shows_as_named_and_none_as_a_dash(app):
    with app.test_request_context("/"):
        assert labels.stage("pilot_project") == "pilot_project"
        assert labels.stage(None) == "—"
        assert labels.risk_flag("payment_risk") == "回款风险"


def test_every_exclusion_rule_has_a_label(app):
    from services.outreach.model import FilterSchema

    assert set(FilterSchema().fields) <= set(labels.EXCLUSION_RULES)
    with app.test_request_context("/"):
        shown = labels.exclusion("excluded:segments")
    assert "segments" not in shown and shown.startswith("活动排除规则")


def test_active_token_content_and_campaign_are_told_apart(app):
    """One English word, two Chinese ones: a context (pgettext) keeps them apart."""
    from flask_babel import pgettext

    with app.test_request_context("/"):
        assert labels.campaign_status("active") == "进行中"
        assert labels.token_status("active") == "有效"
        assert pgettext("content status", "Active") == "启用"


def test_a_custom_models_title_wins_over_a_builtin_label(app, monkeypatch):
    """A custom model that reuses a built-in stage's name shows the stage as it titles it."""
    from console import stage_titles

    titles = {"attention": "Awareness", "pilot_project": "Pilot"}
    monkeypatch.setattr(stage_titles, "titles", lambda: titles)
    with app.test_request_context("/"):
        assert labels.stage("attention") == "Awareness"
        assert labels.stage("pilot_project") == "Pilot"
        assert labels.stage("interest") == "兴趣"  # not titled by the model: the built-in label
