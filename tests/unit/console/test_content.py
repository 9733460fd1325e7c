"""The content pages' pure parts (console/content.py): an account's recommended next content,
the coverage matrix, and the form <-> API body mapping."""

from __future__ import annotations

from collections import Counter

import pytest

from console.content import body_of, field_of, flatten, form_of, matrix, recommend, tags
from services.outreach.library import ANY_ROLE
from shared.vocabulary import BUYING_ROLES


def item(cid: str, *roles: str) -> dict:
    return {"content_id": cid, "title": cid, "format": "article", "roles": list(roles)}


LIBRARY = [item("a", "finance"), item("b", "technical", "finance"), item("c"),
           item("d", "decision_maker"), item("e")]  # fmt: skip


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (["finance"], [("a", ["finance"]), ("b", ["finance"])]),
        (["technical", "finance"], [("b", ["technical", "finance"]), ("a", ["finance"])]),
        (["compliance"], [("c", []), ("e", [])]),  # none for it: the general items
        ([], [("c", []), ("e", [])]),  # no role missing: the general items
        (["decision_maker", "procurement"], [("d", ["decision_maker"])]),
    ],
)
def test_recommend_serves_the_missing_roles_or_falls_back_to_general_items(missing, expected):
    got = recommend(LIBRARY, missing)
    assert [(i["content_id"], i["serves"]) for i in got] == expected


def test_recommend_keeps_at_most_the_limit_and_an_empty_library_recommends_nothing():
    many = [item(f"x{i}", "finance") for i in range(10)]
    assert [i["content_id"] for i in recommend(many, ["finance"], limit=3)] == ["x0", "x1", "x2"]
    assert recommend([], ["finance"]) == []
    assert recommend([item("only", "technical")], ["finance"]) == []  # no general item either


def test_a_b2b_matrix_has_a_cell_per_role_and_one_for_general_items_with_gaps_marked():
    counts = Counter({("interest", "technical"): 2, ("interest", None): 1,
                      ("interest", ANY_ROLE): 3, (None, ANY_ROLE): 4})  # fmt: skip
    m = matrix(["attention", "interest"], counts, b2b=True)
    assert [c["role"] for c in m["columns"]] == [*BUYING_ROLES, None]
    interest = {c["role"]: c for c in m["rows"][1]["cells"]}
    assert interest["technical"] == {"role": "technical", "count": 2, "gap": False}
    assert interest["finance"]["gap"] and not interest[None]["gap"]  # general: never a gap
    assert m["gaps"] == 2 * len(BUYING_ROLES) - 1
    assert m["stageless"] == 4


def test_a_b2c_matrix_counts_each_stage_once():
    counts = Counter({("activation", ANY_ROLE): 2, ("activation", "finance"): 1})
    m = matrix(["acquisition", "activation"], counts, b2b=False)
    assert [c["role"] for c in m["columns"]] == [ANY_ROLE]
    assert [[c["count"] for c in r["cells"]] for r in m["rows"]] == [[0], [2]]
    assert m["gaps"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a, b，c、d;e", ["a", "b", "c", "d", "e"]), ("  ", []), ("x, x ,", ["x"])],
)
def test_tags_split_on_either_comma_and_drop_blanks_and_repeats(text, expected):
    assert tags(text) == expected


def form(**fields) -> dict:
    return {"title": "T", "format": "article", "stages": [], "roles": [], "topics": "",
            "industries": "", "promotional": False, "wecom_text": "", "wecom_link_title": "",
            "wecom_link_url": "", "wecom_link_desc": "", "payload_wecom": "",
            "payload_oa_template": "", "payload_oa_mass": "", "payload_oa_custom": "",
            **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "payloads", "errors"),
    [
        ({"wecom_text": "hi"}, {"wecom": {"text": "hi"}}, {}),
        ({"wecom_link_title": "W", "wecom_link_url": "https://x.example/"},
         {"wecom": {"attachments": [{"msgtype": "link",
                                     "link": {"title": "W", "url": "https://x.example/"}}]}}, {}),
        ({"payload_oa_mass": '{"msgtype": "text", "text": "hi"}'},
         {"oa_mass": {"msgtype": "text", "text": "hi"}}, {}),
        ({"payload_oa_custom": "{nope"}, {}, {"payloads.oa_custom": "json"}),
        ({"payload_oa_template": "x" * 20_001}, {}, {"payloads.oa_template": "too_long"}),
        ({"payload_oa_mass": "[" * 300 + "]" * 300}, {}, {"payloads.oa_mass": "json_deep_or_nul"}),
        ({"payload_oa_mass": "[" * 5000 + "]" * 5000}, {}, {"payloads.oa_mass": "json_deep"}),
        ({"payload_oa_mass": '{"text": "\\u0000"}'}, {}, {"payloads.oa_mass": "json_deep_or_nul"}),
        ({"wecom_text": "hi", "payload_wecom": '{"text": "hi"}'}, {"wecom": {"text": "hi"}},
         {"payloads.wecom": "twice"}),
    ],
)  # fmt: skip
def test_the_form_becomes_the_apis_body(fields, payloads, errors):
    body, found = body_of(form(**fields))
    assert body["payloads"] == payloads
    assert {k: code for k, (code, _) in found.items()} == errors


def test_a_simple_item_round_trips_through_the_form():
    stored = {"title": "白皮书", "format": "whitepaper", "stages": ["interest"],
              "roles": ["technical"], "topics": ["MES", "数字化"], "industries": [],
              "promotional": False,
              "payloads": {"wecom": {"text": "看看", "attachments": [
                  {"msgtype": "link", "link": {"title": "W", "url": "https://x.example/"}}]},
                  "oa_mass": {"msgtype": "text", "text": "hi"}}}  # fmt: skip
    f = form_of(stored)
    assert f["wecom_text"] == "看看" and f["payload_wecom"] == ""
    body, errors = body_of(f)
    assert not errors
    assert body == {**stored, "promotional": None}


def test_a_wecom_payload_the_fields_cannot_show_is_edited_as_json():
    wecom = {"attachments": [{"msgtype": "image", "image": {"media_id": "m"}}]}
    f = form_of({"payloads": {"wecom": wecom}})
    assert '"image"' in f["payload_wecom"] and "wecom_text" not in f
    assert body_of(f)[0]["payloads"] == {"wecom": wecom}


def test_schema_errors_are_flattened_to_form_fields():
    messages = {"payloads": {"wecom": {"text": ["Longer than maximum length 4000."]},
                             "_schema": ["give a payload"]},
                "roles": {0: ["Unknown buying role 'cfo'."]}}  # fmt: skip
    flat = flatten(messages)
    assert flat == {"payloads.wecom.text": ["Longer than maximum length 4000."],
                    "payloads": ["give a payload"], "roles[0]": ["Unknown buying role 'cfo'."]}  # fmt: skip
    assert [field_of(p) for p in flat] == ["payloads.wecom", "payloads", "roles"]


@pytest.mark.parametrize(
    ("text", "chinese"),
    [
        ("[" * 5000 + "]" * 5000, "不是有效的 JSON：嵌套层级过深。"),
        (
            "[" * 300 + "]" * 300,
            "此 JSON 嵌套层级过深或含有 \\u0000 字符，这样的 JSON 不会被保存。",
        ),
        (
            '{"text": "\\u0000"}',
            "此 JSON 嵌套层级过深或含有 \\u0000 字符，这样的 JSON 不会被保存。",
        ),
    ],
)
def test_a_payload_never_stored_is_refused_in_the_readers_words(text, chinese):
    from flask import Flask

    from console.app import init_console
    from console.views_content import _early_message
    from shared.config import Settings

    app = Flask("content-test")
    init_console(app, Settings.from_env({"SIYU_CONSOLE_SECRET": "s" * 32}))
    (found,) = body_of(form(payload_oa_mass=text))[1].values()
    with app.test_request_context("/"):
        assert _early_message(*found) == chinese
