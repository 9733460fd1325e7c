"""The validation messages a console form can show, in the reader's language (console/messages.py,
docs/console.md "Languages"). Every message is produced by the real schema or function that
answers it, so a changed message fails here instead of reaching a form in English."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from marshmallow import Schema, ValidationError, fields, validate

from console import messages
from console.app import init_console
from services.outreach import api_campaigns, notices
from services.outreach.model import (
    CampaignInSchema,
    ContentInSchema,
    ContentRefSchema,
    ScheduleSchema,
)
from services.outreach.schedule import frequency_error, rrule_error
from services.segment.lifecycle.grammar import _flags
from services.segment.segments import SegmentError, compile_rule
from shared.api.errors import ApiError
from shared.api.names import Unknown, unknown_names
from shared.config import Settings
from shared.vocabulary import time_zone_error

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def app():
    app = Flask("messages-test")
    init_console(app, Settings.from_env({"SIYU_CONSOLE_SECRET": "s" * 32}))
    return app


def _leaves(found) -> list[str]:
    if isinstance(found, dict):
        return [m for v in found.values() for m in _leaves(v)]
    if isinstance(found, list):
        return [m for v in found for m in _leaves(v)]
    return [str(found)]


def _refused(load, *args) -> list[str]:
    try:
        load(*args)
    except ValidationError as exc:
        return _leaves(exc.messages)
    raise AssertionError("accepted")


def _rule(rule) -> list[str]:
    try:
        compile_rule(rule)
    except SegmentError as exc:
        return [exc.message]
    raise AssertionError("accepted")


class _Form(Schema):  # marshmallow's own messages, as every schema answers them
    n = fields.Integer(required=True)
    when = fields.DateTime()
    url = fields.Url()
    mail = fields.Email()
    size = fields.Integer(validate=validate.Range(0, 1000000))
    low = fields.Integer(validate=validate.Range(min=1))
    pick = fields.String(validate=validate.OneOf(["a", "b"]))
    text = fields.String(validate=validate.Length(max=5))


def _transition(monkeypatch, status: str, action: str) -> list[str]:
    monkeypatch.setattr(api_campaigns, "campaign_row", lambda *a, **k: {"status": status})
    try:
        api_campaigns.transition(None, "t", "c1", action, None)
    except ApiError as exc:
        return [exc.message]
    raise AssertionError("allowed")


# (case, producer, what the translation keeps: names and numbers).
CASES = [
    ("required", lambda: _refused(_Form().load, {}), []),
    ("null", lambda: _refused(_Form().load, {"n": None}), []),
    ("integer", lambda: _refused(_Form().load, {"n": "x"}), []),
    ("datetime", lambda: _refused(_Form().load, {"n": 1, "when": "soon"}), []),
    ("url", lambda: _refused(_Form().load, {"n": 1, "url": "nope"}), []),
    ("email", lambda: _refused(_Form().load, {"n": 1, "mail": "nope"}), []),
    ("range", lambda: _refused(_Form().load, {"n": 1, "size": -1}), ["0", "1000000"]),
    ("minimum", lambda: _refused(_Form().load, {"n": 1, "low": 0}), ["1"]),
    ("one of", lambda: _refused(_Form().load, {"n": 1, "pick": "c"}), ["a, b"]),
    ("too long", lambda: _refused(_Form().load, {"n": 1, "text": "toolong"}), ["5"]),
    ("unknown field", lambda: _refused(_Form().load, {"n": 1, "other": 1}), []),
    (
        "campaign name length",
        lambda: _refused(CampaignInSchema(partial=True).load, {"name": ""}),
        ["1", "200"],
    ),
    (
        "campaign name null",
        lambda: _refused(CampaignInSchema(partial=True).load, {"name": None}),
        [],
    ),
    (
        "unknown channel",
        lambda: _refused(CampaignInSchema(partial=True).load, {"channel": "sms"}),
        ["'sms'", "wecom_single"],
    ),
    (
        "unknown content format",
        lambda: _refused(ContentInSchema(partial=True).load, {"format": "memo"}),
        ["'memo'"],
    ),
    (
        "a promotion",
        lambda: _refused(
            ContentInSchema(partial=True).load, {"format": "promotion", "promotional": False}
        ),
        [],
    ),
    ("no payload", lambda: _refused(ContentInSchema(partial=True).load, {"payloads": {}}), []),
    (
        "text payload",
        lambda: _refused(
            ContentInSchema(partial=True).load, {"payloads": {"oa_custom": {"msgtype": "text"}}}
        ),
        [],
    ),
    (
        "unknown name, close",
        lambda: [
            Unknown("audience.stages[0]", "stage", "attension", ("attention", "interest")).message()
        ],
        ["'attension'", "attention, interest", "'attention'"],
    ),
    (
        "unknown names, request",
        lambda: [
            unknown_names(
                [
                    Unknown("stages[0]", "stage", "x", ("a",)),
                    Unknown("stages[1]", "stage", "y", ("a",)),
                ]
            ).message
        ],
        ["stages[0]", "'x'", "1"],
    ),
    ("bad cron", lambda: _refused(ScheduleSchema().load, {"cron": "every day"}), ["every day"]),
    (
        "cron and rrule",
        lambda: _refused(ScheduleSchema().load, {"cron": "0 10 * * *", "rrule": "FREQ=DAILY"}),
        [],
    ),
    ("rrule part", lambda: [rrule_error("FREQ=DAILY;DTSTART=20240101")], ["DTSTART", "BYHOUR"]),
    ("rrule count", lambda: [rrule_error("FREQ=DAILY;COUNT=999999")], []),
    ("rrule month day", lambda: [rrule_error("FREQ=MONTHLY;BYMONTHDAY=31")], ["28"]),
    ("rrule lines", lambda: [rrule_error("FREQ=DAILY\nFREQ=WEEKLY")], ["FREQ=WEEKLY"]),
    ("not an rrule", lambda: [rrule_error("FREQ=SOMETIMES")], []),
    ("too frequent", lambda: [frequency_error({"cron": "* * * * *"}, timedelta(minutes=60))], []),
    (
        "segment: number and kind",
        lambda: _rule({"all": [{"attribute": "x", "gte": "a"}, {"nope": 1}]}),
        ["all[0].gte", "all[1].nope", "stage_at_least"],
    ),
    ("segment: operator", lambda: _rule({"attribute": "clicks_30d"}), ["attribute"]),
    ("segment: range", lambda: _rule({"score": {}}), []),
    ("oa template notice", lambda: [notices.refusal(["cnt_a", "cnt_b"])], ["cnt_a, cnt_b"]),
    ("oa template edit", lambda: [notices.edit_refusal(["cmp_1", "cmp_2"])], ["cmp_1, cmp_2"]),
    ("launch conflict", lambda mp: _transition(mp, "archived", "launch"), []),
    ("pause conflict", lambda mp: _transition(mp, "draft", "pause"), []),
    ("archive conflict", lambda mp: _transition(mp, "archived", "archive"), []),
]


@pytest.mark.parametrize(("case", "produce", "kept"), CASES, ids=[c[0] for c in CASES])
def test_every_message_a_form_shows_is_translated(app, monkeypatch, case, produce, kept):
    produced = produce(monkeypatch) if "conflict" in case else produce()
    assert produced and all(produced)
    with app.test_request_context("/"):  # Chinese, the default
        for text in produced:
            shown = messages.translated(text)
            assert shown is not None, f"no translation of {text!r}"
            assert CJK.search(shown), shown
            for name in kept:
                if name in text:
                    assert name in shown, (name, shown)
    assert any(name in text for text in produced for name in kept) or not kept


KINDS = (
    "all, any, not, event, attribute, score, days_since_last_event, tag, account, stage_at_least"
)
LINK = {"msgtype": "link", "link": {"title": "t", "url": "https://example.com"}}

# (case, producer, the whole translation): messages a general rule once half-matched ("Unknown
# {kind} ..." read "condition kind; expected ..." as a kind), lengths of lists called
# characters, and the service's English minutes kept inside the Chinese.
EXACT = [
    (
        "grammar: a misspelt key",
        lambda: _rule({"al": []}),
        f"规则无效：条件无效：al: 未知的条件类型；应为以下之一：{KINDS}。",
    ),
    (
        "grammar: a misspelt nested key",
        lambda: _rule({"all": [{"nope": 1}]}),
        f"规则无效：条件无效：all[0].nope: 未知的条件类型；应为以下之一：{KINDS}。",
    ),
    (
        "time zone, close",
        lambda: [time_zone_error("Asia/Shanghia")],
        "未知的时区 'Asia/Shanghia'。您是否想用 'Asia/Shanghai'？",
    ),
    (
        "time zone, none close",
        lambda: [time_zone_error("Mars/Base")],
        "未知的时区 'Mars/Base'。请填写 IANA 时区名称，例如 Asia/Shanghai。",
    ),
    (
        "stage flag",
        lambda: _refused(_flags().deserialize, ["evaluatin"]),
        "未知的阶段标记 'evaluatin'。可用：evaluating, lapsed。",
    ),
    (
        "ten WeCom attachments",
        lambda: _refused(
            ContentInSchema(partial=True).load,
            {"payloads": {"wecom": {"attachments": [LINK] * 10}}},
        ),
        "长度最多为 9。",
    ),
    (
        "a series over 100 items",
        lambda: _refused(ContentRefSchema().load, {"series": ["x"] * 101}),
        "长度须在 1 到 100 之间。",
    ),
    (
        "a text over its length",
        lambda: _refused(_Form().load, {"n": 1, "text": "toolong"}),
        "长度最多为 5。",
    ),
    (
        "schedule under the minimum",
        lambda: [frequency_error({"cron": "*/5 * * * *"}, timedelta(minutes=60))],
        "该定时每隔 5 分钟触发一次；本租户的最小间隔为 60 分钟（见设置）。",
    ),
    (
        "schedule under the minimum, one minute",
        lambda: [frequency_error({"cron": "* * * * *"}, timedelta(minutes=1.5))],
        "该定时每隔 1 分钟触发一次；本租户的最小间隔为 1.5 分钟（见设置）。",
    ),
]


@pytest.mark.parametrize(("case", "produce", "chinese"), EXACT, ids=[c[0] for c in EXACT])
def test_a_message_is_translated_whole(app, case, produce, chinese):
    (text,) = produce()
    with app.test_request_context("/"):
        assert messages.translated(text) == chinese


def test_kind_is_only_a_known_kind():
    """The general rule takes only KINDS' names, so no Chinese around an English phrase."""
    with Flask("k").test_request_context("/"):
        assert messages.translated("Unknown gizmo 'x'.") is None


def test_launch_conflict_says_launched(monkeypatch):
    (text,) = _transition(monkeypatch, "archived", "launch")
    assert text == "a campaign that is archived cannot be launched"


def test_an_unknown_message_is_shown_as_it_came_with_a_tooltip(app):
    with app.test_request_context("/"):
        assert messages.translated("Something new <b>") is None
        shown = str(messages.shown("Something new <b>"))
        assert 'title="Something new &lt;b&gt;"' in shown and "<b>" not in shown
        assert messages.plain("Something new") == "Something new"


def test_english_stays_english(app):
    with app.test_request_context("/", headers={"Cookie": "siyu_lang=en"}):
        text = _refused(CampaignInSchema(partial=True).load, {"name": ""})[0]
        assert messages.translated(text) == "A length from 1 to 200."
