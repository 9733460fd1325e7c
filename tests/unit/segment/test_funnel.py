"""The funnel report as a pure function: tables of (current stages, transitions) -> numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import defusedxml.ElementTree as ET
import pytest

from services.segment.funnel import Current, FunnelSpec, Move, funnel_report, render_svg

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


# (case, current, moves, window, expected {stage: (count, entered, reached, conversion,
#  median_days, stays)}, expected side {stage: (count, entered, median_days)}, unstaged)
CASES = [
    (
        "empty funnel",
        [],
        [],
        {},
        {
            "attention": (0, 0, 0, None, None, 0),
            "interest": (0, 0, 0, None, None, 0),
            "action": (0, 0, 0, None, None, 0),
        },
        {"lapsed": (0, 0, None)},
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
            "attention": (1, 3, 3, None, 3.0, 2),  # stays of 2 and 4 days
            "interest": (1, 2, 2, 0.6667, 3.0, 1),
            "action": (1, 1, 1, 0.5, None, 0),
        },
        {"lapsed": (0, 0, None)},
        1,
    ),
    (
        "skipped stages still count as reached",
        [Current("a", "action", day(3))],
        [mv("a", None, "action", 3)],
        {},
        {
            "attention": (0, 0, 1, None, None, 0),
            "interest": (0, 0, 1, 1.0, None, 0),
            "action": (1, 1, 1, 1.0, None, 0),
        },
        {"lapsed": (0, 0, None)},
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
            "attention": (0, 1, 1, None, 2.0, 1),
            "interest": (1, 1, 1, 1.0, None, 0),
            "action": (0, 0, 0, 0.0, None, 0),
        },
        {"lapsed": (0, 0, None)},
        0,
    ),
    (
        "side stages are listed apart and keep the funnel reached",
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
            "attention": (0, 0, 2, None, None, 0),
            "interest": (0, 0, 2, 1.0, None, 0),
            "action": (1, 2, 2, 1.0, 10.0, 2),
        },
        {"lapsed": (1, 2, 10.0)},
        0,
    ),
    (
        "window: only entries in [since, until) count",
        [Current("a", "interest", day(12)), Current("b", "attention", day(1))],
        [
            mv("a", None, "attention", 1),
            mv("a", "attention", "interest", 12),
            mv("b", None, "attention", 1),
        ],
        {"since": day(10), "until": day(20)},
        {
            "attention": (0, 0, 1, None, None, 0),  # a's stay began before the window
            "interest": (1, 1, 1, 1.0, None, 0),
            "action": (0, 0, 0, 0.0, None, 0),
        },
        {"lapsed": (0, 0, None)},
        0,
    ),
    (
        "unknown current stages are unstaged; other subjects' history is ignored",
        [Current("a", "legacy_stage", day(1))],
        [mv("zz", None, "attention", 0)],
        {},
        {
            "attention": (0, 0, 0, None, None, 0),
            "interest": (0, 0, 0, None, None, 0),
            "action": (0, 0, 0, None, None, 0),
        },
        {"lapsed": (0, 0, None)},
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
        name: (s["count"], s["entered"], s["reached"], s["conversion"], s["median_days"],
               s["stays"])
        for name, s in by_name(report).items()
    }  # fmt: skip
    assert got == stages
    got_side = {
        name: (s["count"], s["entered"], s["median_days"])
        for name, s in by_name(report, "side_stages").items()
    }
    assert got_side == side
    assert report["unstaged"] == unstaged
    assert report["total"] == len(current)
    assert [s["position"] for s in report["stages"]] == [0, 1, 2]
    rates = [(c["from"], c["to"], c["rate"]) for c in report["conversions"]]
    assert rates == [
        ("attention", "interest", stages["interest"][3]),
        ("interest", "action", stages["action"][3]),
    ]


def test_without_current_stages_the_chain_end_is_where_a_subject_stands():
    moves = [mv("a", None, "attention", 0), mv("a", "attention", "interest", 3)]
    report = funnel_report(SPEC, None, moves)
    assert report["total"] == 1
    assert by_name(report)["interest"]["count"] == 1
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
    assert [g.get("data-stage") for g in groups] == ["attention", "interest", "lapsed"]
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for title in ("Attention & <care>", 'Interest "quoted"', "Lapsed <side>"):
        assert title in texts
    assert "contacts <all>" in texts
    assert "\u2193 100.0%" in texts  # a reached attention and interest
    assert "1 reached, 1 now" in texts
    assert "<care>" not in svg  # escaped in the markup


def test_svg_of_an_empty_funnel_parses():
    root = ET.fromstring(render_svg(funnel_report(SPEC, [], [])))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "\u2193 n/a" in texts
