"""Every code the services write has a display name, and every sentence they write is put in
the reader's words (console/labels.py, console/reasons.py): a new touchpoint type, exclusion
reason or risk-reason sentence without a label fails here."""

from __future__ import annotations

import ast
import inspect
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from console import labels, reasons
from console.app import init_console
from console.http import LANG_COOKIE
from services.outreach import policies
from services.segment import lost, risk
from services.segment.facts import AccountFacts, EventFact
from shared.config import Settings
from shared.envelope import EVENT_TYPES
from shared.vocabulary import MODES

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def app():
    app = Flask("reasons-test")
    init_console(app, Settings.from_env({"SIYU_CONSOLE_SECRET": "s" * 32}))
    return app


def _in(app, lang="zh_Hans_CN"):
    return app.test_request_context("/", headers={"Cookie": f"{LANG_COOKIE}={lang}"})


def test_every_touchpoint_type_has_a_label():
    assert set(labels.EVENT_TYPES) == set(EVENT_TYPES)


def _exclusion_codes() -> set[str]:
    """The reasons policies.py returns: its string constants in return statements and
    ``return None, "..."``, and its capped f-strings (group_ prefix or none, day or week)."""
    tree = ast.parse(inspect.getsource(policies))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and not isinstance(node.value, ast.Dict | None):
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    found.add(sub.value)
    found = {
        c for c in found if re.fullmatch(r"[a-z0-9_]+", c) and c not in {"group", "contact", *MODES}
    }
    return found | {"cap_day", "cap_week", "group_cap_day", "group_cap_week"}


def test_every_exclusion_reason_has_a_label():
    codes = _exclusion_codes()
    documented = set(re.findall(r"``([a-z0-9_]+)``", policies.__doc__)) - {"evaluating", "guard_of"}
    assert documented <= codes | {"excluded"}
    # Labels may also cover a delivery's own reasons (``erased``), never fewer than policies'.
    assert codes - {"excluded"} <= set(labels.EXCLUSIONS)


def test_exclusion_labels(app):
    with _in(app):
        assert labels.exclusion("cap_day") == "每日频次上限"
        assert labels.exclusion("excluded:vip") == "活动排除规则：vip"
        assert labels.exclusion("future_code") == "future_code"


def _ev(kind, days_ago, **attributes):
    return EventFact(kind, NOW - timedelta(days=days_ago), attributes)


# One account per sentence risk.py writes (its reasons.append / RiskFlag calls).
SCENARIOS = {
    "overdue": (AccountFacts("a", "A", events=(
        _ev("biz.invoice.overdue", 10, invoice_id="i1", amount=5000),)), []),
    "slow payment and low credit": (AccountFacts("a", "A", attributes={"credit_rating": "C"},
        events=(_ev("biz.invoice.issued", 200, invoice_id="i1"),
                _ev("biz.payment.received", 100, invoice_id="i1"),
                _ev("biz.invoice.issued", 190, invoice_id="i2"),
                _ev("biz.payment.received", 95, invoice_id="i2"))), []),
    "churn": (AccountFacts("a", "A", created_at=NOW - timedelta(days=400)),
              [_ev("oa.click", d) for d in range(31, 90, 3)]
              + [_ev("oa.unsubscribe", 2), _ev("wecom.contact.follow_user_deleted", 3),
                 _ev("biz.complaint.filed", 4)]),
    "inactive": (AccountFacts("a", "A", created_at=NOW - timedelta(days=400)),
                 [_ev("oa.click", 60)]),
    "inactive, never acted": (AccountFacts("a", "A", created_at=NOW - timedelta(days=400)), []),
    "new": (AccountFacts("a", "A", created_at=NOW - timedelta(days=3)), []),
    "new, first seen": (AccountFacts("a", "A"), [_ev("oa.click", 2)]),
    "growing": (AccountFacts("a", "A", created_at=NOW - timedelta(days=400), events=(
        _ev("biz.order.paid", 150, amount=100), _ev("biz.order.paid", 10, amount=500))), []),
    "growing, mixed currencies": (AccountFacts("a", "A", created_at=NOW - timedelta(days=400),
        events=(_ev("biz.order.paid", 150, amount=100, currency="USD"),
                _ev("biz.order.paid", 10, amount=500))), []),
}  # fmt: skip


def _sentences() -> list[str]:
    out = []
    for account, events in SCENARIOS.values():
        for flag in risk.risk_flags(account, events, NOW):
            out += flag.reason.split("; ")
    # The lost flag (services/segment/lost.py), both reasons.
    members = lost.members_lost({
        "c1": lost.lost_state([_ev("wecom.contact.follow_user_deleted", 1, staff_userid="s")]),
        "c2": lost.lost_state([_ev("wecom.contact.deleted", 2, staff_userid="s")]),
    })  # fmt: skip
    out += risk.lost_flag(members).reason.split("; ")
    return out


def test_the_scenarios_reach_every_sentence_risk_writes():
    """risk.py writes a sentence in each reasons.append(...) and RiskFlag(...) with a literal
    reason: as many kinds of sentence as the scenarios produce (add one for a new sentence)."""
    tree = ast.parse(inspect.getsource(risk))
    writes = sum(
        1
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "append"
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "reasons")
            or (isinstance(n.func, ast.Name) and n.func.id == "RiskFlag"
                and len(n.args) > 1 and isinstance(n.args[1], ast.JoinedStr))
        )
    )  # fmt: skip
    kinds = {next(i for i, (p, _) in enumerate(reasons.RISK_REASONS) if p.match(s))
             for s in _sentences()}  # fmt: skip
    # inactive and new each write two sentences from one RiskFlag call (an f-string choice)
    assert len(kinds) == writes + 2 == len(reasons.RISK_REASONS)


def test_every_risk_sentence_is_translated(app):
    with _in(app):
        for sentence in _sentences():
            shown = reasons.risk_reason(sentence)
            assert shown != sentence
            assert not re.search(r"[a-z]{4,}", shown.replace("USD", "")), shown


def test_risk_reason_in_chinese_and_english(app):
    text = "1 invoice overdue, 5,000 CNY, oldest 10 days; low credit rating: C"
    with _in(app):
        assert (
            reasons.risk_reason(text)
            == "1 张发票逾期，5,000 CNY，最早的已逾期 10 天；信用评级低：C"
        )
    with _in(app, "en"):
        assert reasons.risk_reason(text) == (
            "1 invoices overdue, 5,000 CNY, the oldest 10 days; low credit rating: C"
        )
    with _in(app):
        assert reasons.risk_reason("a sentence of tomorrow") == "a sentence of tomorrow"


@pytest.mark.parametrize(
    ("cause", "chinese"),
    [
        ("manual: 客户已签约", "员工调整：客户已签约"),
        ("stage comparison: 1 of biz.demo.requested within 30 days",
         "进入比较：申请演示 ×1（30 天内）"),
        ("account facts: stage action: 1 of biz.contract.signed",
         "账户自身事实达到行动：签订合同 ×1"),
        ("members reached interest (2 of 3 members)", "成员达到兴趣（3 位成员中 2 位）"),
        ("regress action -> lapsed: 95.5 days since last event (>= 90)",
         "从行动回到流失：距上次事件 95.5 天 (>= 90)"),
        ("stage interest: score 12 (>= 10) and tag vip", "进入兴趣：评分 12 (>= 10) 且 标签 vip"),
    ],
)  # fmt: skip
def test_stage_causes_in_chinese(app, cause, chinese):
    with _in(app):
        assert reasons.stage_cause(cause) == chinese
