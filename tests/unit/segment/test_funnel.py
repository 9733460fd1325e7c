"""The funnel report as a pure function: tables of (current stages, transitions) -> numbers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import defusedxml.ElementTree as ET
import pytest

from services.segment.funnel import (
    FONT_FAMILY,
    LEGEND,
    Current,
    FunnelSpec,
    Move,
    funnel_report,
    render_svg,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SPEC = FunnelSpec(
    name="mini",
    title="Mini",
    stages=(("attention", "Attention"), ("interest", "Interest"), ("action", "Action")),
    side_stages=(("lapsed", "Lapsed"),),
)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def mv(subject: str, frm: str | None, to: str, at: float, seq: int = 0) -> Move:
    return Move(subject, frm, to, day(at), seq)


def by_name(report: dict, key: str = "stages") -> dict[str, dict]:
    return {s["name"]: s for s in report[key]}


# (case, current, moves, window, expected {stage: (now, entered, conversion, median_days,
#  stays)}, expected side {stage: (now, entered, median_days)}, unstaged)
EMPTY_SIDE = {"lapsed": (0, 0, None)}
CASES = [
    (
        "empty funnel",
        [],
        [],
        {},
        {
            "attention": (0, 0, None, None, 0),
            "interest": (0, 0, None, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "step conversion and medians",
        [
            Current("a", "action", day(5)),
            Current("b", "interest", day(4)),
            Current("c", "attention", day(1)),
            Current("d", None),
        ],
        [
            mv("a", None, "attention", 0),
            mv("a", "attention", "interest", 2),
            mv("a", "interest", "action", 5),
            mv("b", None, "attention", 0),
            mv("b", "attention", "interest", 4),
            mv("c", None, "attention", 1),
        ],
        {},
        {
            "attention": (1, 3, 0.6667, 3.0, 2),  # stays of 2 and 4 days; a and b went on
            "interest": (1, 2, 0.5, 3.0, 1),
            "action": (1, 1, None, None, 0),  # the last stage converts to nothing
        },
        EMPTY_SIDE,
        1,
    ),
    (
        "skipped stages are not entered (the bloom retention case)",
        [Current("a", "action", day(3))],
        [mv("a", None, "action", 3)],
        {},
        {
            "attention": (0, 0, None, None, 0),
            "interest": (0, 0, None, None, 0),
            "action": (1, 1, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "skipping the next stage is not converting to it",
        [Current("a", "action", day(3))],
        [mv("a", None, "attention", 0), mv("a", "attention", "action", 3)],
        {},
        {
            "attention": (0, 1, 0.0, 3.0, 1),
            "interest": (0, 0, None, None, 0),
            "action": (1, 1, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "a merge duplicated history rows: each subject counts once, the chain is followed",
        [Current("a", "interest", day(2))],
        [
            mv("a", None, "attention", 0, 1),
            mv("a", None, "attention", 1, 2),  # the merged contact's own first move
            mv("a", "attention", "interest", 2, 3),
            mv("a", "attention", "interest", 3, 4),  # and its own second one
        ],
        {},
        {
            "attention": (0, 1, 1.0, 2.0, 1),
            "interest": (1, 1, 0.0, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "re-entering: once per subject; converted only by an entry after the first one",
        [Current("a", "attention", day(5)), Current("b", "attention", day(3))],
        [
            mv("a", None, "attention", 0),
            mv("a", "attention", "interest", 2),
            mv("a", "interest", "attention", 5),  # back, re-entering attention
            mv("b", None, "interest", 0),
            mv("b", "interest", "attention", 3),  # interest before attention: no conversion
        ],
        {},
        {
            "attention": (2, 2, 0.5, 2.0, 1),
            "interest": (0, 2, 0.0, 3.0, 2),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "side stages are listed apart",
        [Current("a", "lapsed", day(10)), Current("b", "action", day(20))],
        [
            mv("a", None, "action", 0),
            mv("a", "action", "lapsed", 10),
            mv("b", None, "action", 0),
            mv("b", "action", "lapsed", 10),
            mv("b", "lapsed", "action", 20),
        ],
        {},
        {
            "attention": (0, 0, None, None, 0),
            "interest": (0, 0, None, None, 0),
            "action": (1, 2, None, 10.0, 2),
        },
        {"lapsed": (1, 2, 10.0)},
        0,
    ),
    (
        "period: only entries in [since, until) count",
        [Current("a", "interest", day(12)), Current("b", "attention", day(1))],
        [
            mv("a", None, "attention", 1),
            mv("a", "attention", "interest", 12),
            mv("b", None, "attention", 1),
        ],
        {"since": day(10), "until": day(20)},
        {
            "attention": (0, 0, None, None, 0),  # a's stay began before the period
            "interest": (1, 1, 0.0, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "period edges: an entry at since counts, one at until does not",
        [Current("a", "attention", day(10)), Current("b", "attention", day(20))],
        [mv("a", None, "attention", 10), mv("b", None, "attention", 20)],
        {"since": day(10), "until": day(20)},
        {
            "attention": (1, 1, 0.0, None, 0),
            "interest": (0, 0, None, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "a current stage without history is an entry; one without a start is entered now",
        [Current("a", "interest", day(3)), Current("b", "attention", None)],
        [mv("b", None, "interest", 1)],
        {},
        {
            "attention": (1, 1, 0.0, None, 0),  # b is in attention now: after its interest
            "interest": (1, 2, 0.0, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        0,
    ),
    (
        "unknown current stages are unstaged; other subjects' history is ignored",
        [Current("a", "legacy_stage", day(1))],
        [mv("zz", None, "attention", 0)],
        {},
        {
            "attention": (0, 0, None, None, 0),
            "interest": (0, 0, None, None, 0),
            "action": (0, 0, None, None, 0),
        },
        EMPTY_SIDE,
        1,
    ),
]


@pytest.mark.parametrize(
    ("current", "moves", "window", "stages", "side", "unstaged"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_funnel_report(current, moves, window, stages, side, unstaged):
    report = funnel_report(SPEC, current, moves, **window)
    got = {
        name: (s["now"], s["entered"], s["conversion"], s["median_days"], s["stays"])
        for name, s in by_name(report).items()
    }
    assert got == stages
    got_side = {
        name: (s["now"], s["entered"], s["median_days"])
        for name, s in by_name(report, "side_stages").items()
    }
    assert got_side == side
    assert report["unstaged"] == unstaged
    assert report["total"] == len(current)
    assert [s["position"] for s in report["stages"]] == [0, 1, 2]
    rates = [(c["from"], c["to"], c["entered"], c["rate"]) for c in report["conversions"]]
    assert rates == [
        ("attention", "interest", stages["attention"][1], stages["attention"][2]),
        ("interest", "action", stages["interest"][1], stages["interest"][2]),
    ]
    for s in report["stages"]:  # the figures nest: now and converted within entered
        assert s["now"] <= s["entered"]
        assert s["converted"] is None or s["converted"] <= s["entered"]
    assert set(report["figures"]) >= {"entered", "now", "conversion", "weeks"}


SHANGHAI, NEW_YORK = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
# T0 is Sunday 2026-03-01 00:00 UTC; New York moves its clocks on Sunday 2026-03-08.
# (case, tz, moves, window, expected [(week, start, attention entered)])
WEEK_CASES = [
    (
        "Sunday 20:00 UTC is Monday in Shanghai",
        SHANGHAI,
        [mv("a", None, "attention", 20 / 24)],
        {},
        [("2026-W10", "2026-03-02T00:00:00+08:00", 1)],
    ),
    (
        "the same instant is Sunday in UTC",
        UTC,
        [mv("a", None, "attention", 20 / 24)],
        {},
        [("2026-W09", "2026-02-23T00:00:00+00:00", 1)],
    ),
    (
        "weeks across a daylight saving change keep their local Monday",
        NEW_YORK,
        [mv("a", None, "attention", 1.5), mv("b", None, "attention", 15.5)],
        {},
        [
            ("2026-W10", "2026-03-02T00:00:00-05:00", 1),
            ("2026-W11", "2026-03-09T00:00:00-04:00", 0),
            ("2026-W12", "2026-03-16T00:00:00-04:00", 1),
        ],
    ),
    (
        "a subject twice in a week counts once, in two weeks in both",
        UTC,
        [
            mv("a", None, "attention", 1),
            mv("a", None, "attention", 2, 1),
            mv("a", None, "attention", 9, 2),
        ],
        {},
        [
            ("2026-W10", "2026-03-02T00:00:00+00:00", 1),
            ("2026-W11", "2026-03-09T00:00:00+00:00", 1),
        ],
    ),
    (
        "the period's weeks, partial ones at its edges, even without entries",
        SHANGHAI,
        [mv("a", None, "attention", 1), mv("b", None, "attention", 30)],
        {
            "since": datetime(2026, 3, 1, tzinfo=SHANGHAI),
            "until": datetime(2026, 3, 10, tzinfo=SHANGHAI),
        },
        [
            ("2026-W09", "2026-02-23T00:00:00+08:00", 0),
            ("2026-W10", "2026-03-02T00:00:00+08:00", 1),
            ("2026-W11", "2026-03-09T00:00:00+08:00", 0),
        ],
    ),
]


@pytest.mark.parametrize(
    ("tz", "moves", "window", "expected"),
    [case[1:] for case in WEEK_CASES],
    ids=[case[0] for case in WEEK_CASES],
)
def test_weeks(tz, moves, window, expected):
    report = funnel_report(SPEC, None, moves, tz=tz, **window)
    got = [(w["week"], w["start"].isoformat(), w["entered"]["attention"]) for w in report["weeks"]]
    assert got == expected
    for week in report["weeks"]:
        monday = week["start"].date() + timedelta(days=7)
        assert week["end"] == datetime.combine(monday, time(0), tzinfo=tz)  # 167 h across DST
        assert set(week["entered"]) == {"attention", "interest", "action", "lapsed"}


def test_no_weeks_without_entries_or_period():
    assert funnel_report(SPEC, [Current("a", None)], [])["weeks"] == []


def test_without_current_stages_the_chain_end_is_where_a_subject_stands():
    moves = [mv("a", None, "attention", 0), mv("a", "attention", "interest", 3)]
    report = funnel_report(SPEC, None, moves)
    assert report["total"] == 1
    assert by_name(report)["interest"]["now"] == 1
    assert by_name(report)["attention"]["median_days"] == 3.0


def test_median_of_an_even_number_of_stays():
    moves = [
        m
        for i, days in enumerate([1, 2, 3, 10])
        for m in (mv(f"s{i}", None, "attention", 0), mv(f"s{i}", "attention", "interest", days))
    ]
    current = [Current(f"s{i}", "interest", day(1)) for i in range(4)]
    assert by_name(funnel_report(SPEC, current, moves))["attention"]["median_days"] == 2.5


def test_svg_is_well_formed_and_names_every_stage_escaped():
    spec = FunnelSpec(
        name="odd",
        title='Funnel <"&">',
        stages=(("attention", "Attention & <care>"), ("interest", 'Interest "quoted"')),
        side_stages=(("lapsed", "Lapsed <side>"),),
    )
    report = funnel_report(
        spec,
        [Current("a", "interest", day(1)), Current("b", "lapsed", day(2))],
        [mv("a", None, "attention", 0), mv("a", "attention", "interest", 1)],
    )
    svg = render_svg(report, subtitle="contacts <all>")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    groups = root.iter("{http://www.w3.org/2000/svg}g")
    assert [g.get("data-stage") for g in groups if g.get("class") == "stage"] == [
        "attention", "interest", "lapsed",
    ]  # fmt: skip
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for title in ("Attention & <care>", 'Interest "quoted"', "Lapsed <side>"):
        assert title in texts
    assert "contacts <all>" in texts
    assert "\u2193 转化 100.0%" in texts  # a entered attention, then interest
    assert "进入 1 · 当前 1" in texts
    assert "<care>" not in svg  # escaped in the markup
    # The legend says what the figures mean, for ops staff in Chinese, in a CJK font.
    legend = next(
        g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "legend"
    )
    assert [t.text for t in legend.iter("{http://www.w3.org/2000/svg}text")][1:] == list(LEGEND)
    assert any(line.startswith("转化率") for line in LEGEND)
    assert root.get("font-family") == FONT_FAMILY
    assert "Noto Sans CJK SC" in FONT_FAMILY


def test_svg_of_an_empty_funnel_parses():
    root = ET.fromstring(render_svg(funnel_report(SPEC, [], [])))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "\u2193 转化 n/a" in texts
