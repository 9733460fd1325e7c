"""The funnel report of a lifecycle model: pure computation over plain rows, and its SVG chart.

Input: the subjects in scope (contacts or accounts) with their current stage and since when,
and their recorded transitions (``stage_history`` rows of the model). No I/O, no clock.

The admin API counts the same numbers in SQL (``funnel_query``: a tenant's contacts never
leave the database), from stage_history and the stays that triggers keep by this module's
``_chain`` rule (segment migration 0012); this function defines them and is the oracle its
tests compare with. Both end in ``assemble``, which shapes the tallies into the report.

What the numbers mean (``FIGURES``, also in the report and the API schema)
--------------------------------------------------------------------------
An *entry* into a stage is a transition into it (in the period), or the subject's current stage
when it was entered in the period (a current stage without a known start: entered now, counted
only without a period). Each subject counts once however many entries it has: a merge re-keys
both histories onto the survivor, so one person may have entered a stage twice.

- ``entered``: distinct subjects with an entry into this stage. A skipped stage is not entered:
  an order without prior clicks goes straight from activation to revenue, and counts in
  revenue only (the report once had "reached": this stage *or a later one*, which showed
  subjects in stages nobody had been in).
- ``now``: subjects whose current stage is this one (with a period: entered it in the period).
- ``conversion`` of stage i: of the subjects that entered it, the share that later entered
  stage i+1, that is with an entry into i+1 at or after their first entry into i (both in the
  period). None for the last stage or when nobody entered.
- ``median_days``: median length of the completed stays in the stage whose entry is in the
  period. Stays come from each subject's consecutive transitions, oldest first, following the
  chain ``to_stage -> from_stage``: a row that does not continue the chain (a duplicate from a
  merged history, or a second "first" transition) is skipped, so merged histories do not
  produce zero-length or overlapping stays. Open stays (the current stage) are not measured.
- ``weeks``: per ISO week (Monday 00:00 in the tenant's time zone) of the period, per stage,
  distinct subjects with an entry in that week (a subject may count in several weeks).
- The period is half-open: ``since <= t < until``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from xml.sax.saxutils import escape, quoteattr

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
# The entry time of a current stage whose start is unknown: "now", after every recorded entry.
_UNKNOWN = datetime.max.replace(tzinfo=UTC)

# What each figure means, in the report itself (``figures``) and in the API schema.
FIGURES = {
    "entered": "Distinct subjects that entered this stage in the period (a transition into it, "
    "or their current stage entered in the period). Stages skipped over are not entered.",
    "now": "Subjects currently in this stage (with a period: those that entered it in the "
    "period and are still in it).",
    "conversion": "Share of the subjects that entered this stage that later entered the next "
    "stage (at or after their first entry into this one, in the period); null for the last "
    "stage or when nobody entered.",
    "converted": "Subjects that entered this stage and later entered the next one.",
    "median_days": "Median days of the completed stays in this stage begun in the period.",
    "stays": "Completed stays measured for median_days.",
    "weeks": "Per ISO week of the period (Monday 00:00 in the tenant's time zone): distinct "
    "subjects that entered each stage that week.",
}


@dataclass(frozen=True)
class FunnelSpec:
    """The stages of a model as the report shows them: (name, title) in funnel order."""

    name: str
    title: str
    stages: tuple[tuple[str, str], ...]
    side_stages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Current:
    """A subject in scope and where it stands now (stage None: not in the funnel yet)."""

    subject_id: str
    stage: str | None
    since: datetime | None = None


@dataclass(frozen=True)
class Move:
    """One recorded transition (a stage_history row); ``seq`` breaks ties of equal times."""

    subject_id: str
    from_stage: str | None
    to_stage: str
    changed_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class _Stay:
    stage: str
    entered_at: datetime
    left_at: datetime | None


def _chain(moves: Sequence[Move]) -> list[_Stay]:
    """The subject's stays, following ``from_stage`` links (see the module docstring)."""
    stays: list[_Stay] = []
    stage: str | None = None
    entered: datetime | None = None
    for move in sorted(moves, key=lambda m: (m.changed_at, m.seq)):
        if stage is not None and (move.from_stage != stage or move.to_stage == stage):
            continue
        if stage is not None and entered is not None:
            stays.append(_Stay(stage, entered, move.changed_at))
        stage, entered = move.to_stage, move.changed_at
    if stage is not None and entered is not None:
        stays.append(_Stay(stage, entered, None))
    return stays


def _median_days(durations: list[timedelta]) -> float | None:
    if not durations:
        return None
    return round(statistics.median(d / _DAY for d in durations), 3)


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def week_of(at: datetime, tz: tzinfo) -> date:
    """The Monday (a day in ``tz``) of the ISO week holding the instant ``at``."""
    local = at.astimezone(tz).date()
    return local - timedelta(days=local.weekday())


def funnel_report(
    spec: FunnelSpec,
    current: Iterable[Current] | None,
    moves: Iterable[Move],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tz: tzinfo = UTC,
) -> dict:
    """The report (a JSON-ready dict, shape in the module docstring and the API schema).

    ``current`` None: the model is not the one in use, so subjects' stage columns say nothing
    about it; the population is the subjects with transitions, each where its chain ends.
    ``tz``: the time zone of the weekly buckets.
    """

    def in_window(at: datetime | None) -> bool:
        if at is None:
            return since is None and until is None
        return (since is None or at >= since) and (until is None or at < until)

    by_subject: dict[str, list[Move]] = {}
    for move in moves:
        by_subject.setdefault(move.subject_id, []).append(move)
    chains = {subject: _chain(rows) for subject, rows in by_subject.items()}

    if current is None:
        now_at = {
            s: Current(s, chain[-1].stage, chain[-1].entered_at)
            for s, chain in chains.items()
            if chain
        }
    else:
        now_at = {c.subject_id: c for c in current}
        by_subject = {s: rows for s, rows in by_subject.items() if s in now_at}

    funnel = [name for name, _ in spec.stages]
    staged = [*funnel, *(name for name, _ in spec.side_stages)]

    counts = dict.fromkeys(staged, 0)
    unstaged = 0
    # subject -> stage -> times of its entries in the window
    entries: dict[str, dict[str, list[datetime]]] = {}

    def enter(subject: str, stage: str, at: datetime) -> None:
        if stage in counts:
            entries.setdefault(subject, {}).setdefault(stage, []).append(at)

    for subject, here in now_at.items():
        if here.stage in counts:
            if in_window(here.since):
                counts[here.stage] += 1
                enter(subject, here.stage, here.since or _UNKNOWN)
        else:
            unstaged += 1
    for subject, rows in by_subject.items():
        for move in rows:
            if in_window(move.changed_at):
                enter(subject, move.to_stage, move.changed_at)

    entered = dict.fromkeys(staged, 0)
    converted = [0] * max(len(funnel) - 1, 0)
    weeks: dict[date, dict[str, int]] = {}
    for stages in entries.values():
        for stage, times in stages.items():
            entered[stage] += 1
            for week in {week_of(at, tz) for at in times if at is not _UNKNOWN}:
                weeks.setdefault(week, dict.fromkeys(staged, 0))[stage] += 1
        for i in range(len(funnel) - 1):
            this, after = stages.get(funnel[i]), stages.get(funnel[i + 1])
            if this and after and max(after) >= min(this):
                converted[i] += 1

    durations: dict[str, list[timedelta]] = {name: [] for name in counts}
    for subject in by_subject:
        for stay in chains[subject]:
            if stay.left_at is not None and stay.stage in durations and in_window(stay.entered_at):
                durations[stay.stage].append(stay.left_at - stay.entered_at)

    return assemble(
        spec,
        Tallies(
            total=len(now_at),
            unstaged=unstaged,
            now=counts,
            entered=entered,
            converted=converted,
            stays={name: len(d) for name, d in durations.items()},
            median_days={name: _median_days(d) for name, d in durations.items()},
            weeks=weeks,
        ),
        since=since,
        until=until,
        tz=tz,
    )


@dataclass(frozen=True)
class Tallies:
    """What the report is made of, per stage name (funnel and side stages); ``converted`` by
    funnel position (entered stage i, later i+1); ``weeks``: Monday -> stage -> entered.
    ``funnel_report`` counts them in Python, ``funnel_query`` in SQL."""

    total: int
    unstaged: int
    now: Mapping[str, int]
    entered: Mapping[str, int]
    converted: Sequence[int]
    stays: Mapping[str, int]
    median_days: Mapping[str, float | None]
    weeks: Mapping[date, Mapping[str, int]] = field(default_factory=dict)


def median_of_middles(middles: Sequence[timedelta]) -> float | None:
    """The median in days from the one or two middle stays of a sorted list (the same float
    as ``statistics.median`` over all of them: it only ever looks at the middle ones)."""
    return _median_days(list(middles))


def _week_range(
    weeks: Iterable[date], since: datetime | None, until: datetime | None, tz: tzinfo
) -> list[date]:
    """The Mondays from the period's first week to its last; an open end: the data's."""
    seen = sorted(weeks)
    first = week_of(since, tz) if since is not None else (seen[0] if seen else None)
    last = (
        week_of(until - timedelta(microseconds=1), tz)
        if until is not None
        else (seen[-1] if seen else first)
    )
    if first is None or last is None:
        return []
    return [first + _WEEK * i for i in range((last - first) // _WEEK + 1)]


def assemble(
    spec: FunnelSpec,
    t: Tallies,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tz: tzinfo = UTC,
) -> dict:
    """The report (a JSON-ready dict) from its tallies; weeks dense over the period."""
    funnel = [name for name, _ in spec.stages]
    staged = [*funnel, *(name for name, _ in spec.side_stages)]
    converted = [*t.converted, 0]

    def conversion(i: int) -> float | None:
        return _rate(converted[i], t.entered.get(funnel[i], 0)) if i < len(funnel) - 1 else None

    stages = [
        {
            "name": name,
            "title": title,
            "position": i,
            "entered": t.entered.get(name, 0),
            "now": t.now.get(name, 0),
            "converted": converted[i] if i < len(funnel) - 1 else None,
            "conversion": conversion(i),
            "median_days": t.median_days.get(name),
            "stays": t.stays.get(name, 0),
        }
        for i, (name, title) in enumerate(spec.stages)
    ]
    conversions = [
        {
            "from": funnel[i],
            "to": funnel[i + 1],
            "entered": t.entered.get(funnel[i], 0),
            "converted": converted[i],
            "rate": conversion(i),
        }
        for i in range(len(funnel) - 1)
    ]
    side_stages = [
        {
            "name": name,
            "title": title,
            "entered": t.entered.get(name, 0),
            "now": t.now.get(name, 0),
            "median_days": t.median_days.get(name),
            "stays": t.stays.get(name, 0),
        }
        for name, title in spec.side_stages
    ]
    weeks = []
    for monday in _week_range(t.weeks, since, until, tz):
        counts = t.weeks.get(monday, {})
        year, number, _ = monday.isocalendar()
        weeks.append(
            {
                "week": f"{year}-W{number:02d}",
                "start": datetime.combine(monday, time(0), tzinfo=tz),
                "end": datetime.combine(monday + _WEEK, time(0), tzinfo=tz),
                "entered": {name: counts.get(name, 0) for name in staged},
            }
        )
    return {
        "model": spec.name,
        "title": spec.title,
        "total": t.total,
        "unstaged": t.unstaged,
        "figures": FIGURES,
        "stages": stages,
        "side_stages": side_stages,
        "conversions": conversions,
        "weeks": weeks,
    }


# --- SVG -----------------------------------------------------------------------------------------

_WIDTH = 760
_LABEL_W = 200
_BAR_W = 360
_ROW_H = 46
_TOP = 56
# The chart is for ops staff reading Chinese: CJK faces first (fonts-noto-cjk on Linux).
FONT_FAMILY = (
    "'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', "
    "'Microsoft YaHei', 'WenQuanYi Micro Hei', sans-serif"
)
# The legend: what the chart's figures mean (FIGURES, in Chinese).
LEGEND = (
    "进入：统计期内曾进入该阶段的人数（跳过的阶段不计）",
    "当前：目前处于该阶段的人数",
    "转化率：进入该阶段的人中，之后进入下一阶段的比例",
)


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(body)}</text>'


def caption(stage: Mapping) -> str:
    """A bar's figures, as the legend names them."""
    return f"进入 {stage['entered']} · 当前 {stage['now']}"


def render_svg(report: Mapping, *, subtitle: str = "") -> str:
    """A horizontal bar chart of the funnel: one bar per stage (length: subjects that entered
    it), its figures, the conversion to the next bar, the side stages, and a legend."""
    stages = list(report["stages"])
    side = list(report["side_stages"])
    top = max([s["entered"] for s in stages + side] + [1])
    body_h = _ROW_H * (len(stages) + len(side)) + (40 if side else 0)
    height = _TOP + body_h + 24 + 18 * (len(LEGEND) + 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family={quoteattr(FONT_FAMILY)} font-size="13">',
        f"<title>{escape(str(report['title']))} funnel</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        _text(16, 26, f"{report['title']} 漏斗", font_size="17", font_weight="bold"),
    ]
    if subtitle:
        out.append(_text(16, 44, subtitle, fill="#555555"))

    def bar(y: float, stage: Mapping, colour: str) -> None:
        value = stage["entered"]
        width = 0 if value == 0 else max(2.0, _BAR_W * value / top)
        out.append(f'<g class="stage" data-stage={quoteattr(str(stage["name"]))}>')
        out.append(f"<title>{escape(str(stage['name']))}: {escape(caption(stage))}</title>")
        out.append(_text(16, y + 19, str(stage["title"])))
        out.append(
            f'<rect x="{_LABEL_W}" y="{y + 4:g}" width="{width:.1f}" height="22" '
            f'fill="{colour}" rx="3"/>'
        )
        out.append(_text(_LABEL_W + width + 8, y + 19, caption(stage)))
        out.append("</g>")

    y = float(_TOP)
    for i, stage in enumerate(stages):
        if i:
            out.append(
                _text(_LABEL_W - 8, y - 4, f"\u2193 转化 {_pct(stages[i - 1]['conversion'])}",
                      text_anchor="end", fill="#2a7a2a", font_size="11")
            )  # fmt: skip
        bar(y, stage, "#3b6fb6")
        y += _ROW_H
    if side:
        y += 16
        out.append(_text(16, y, "漏斗外阶段", font_weight="bold"))
        y += 8
        for stage in side:
            bar(y, stage, "#b0793b")
            y += _ROW_H
    y += 20
    out.append('<g class="legend">')
    out.append(_text(16, y, "图例", font_weight="bold", fill="#333333"))
    for line in LEGEND:
        y += 18
        out.append(_text(16, y, line, fill="#555555", font_size="12"))
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
