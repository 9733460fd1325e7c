"""The funnel report of a lifecycle model: pure computation over plain rows, and its SVG chart.

Input: the subjects in scope (contacts or accounts) with their current stage and since when,
and their recorded transitions (``stage_history`` rows of the model). No I/O, no clock.

The admin API counts the same numbers in SQL (``funnel_query``: a tenant's contacts never
leave the database), from per-subject summaries and stays that triggers on ``stage_history``
keep by this module's ``_chain`` rule (segment migration 0012); this function defines them and
is the oracle its tests compare with. Both end in ``assemble``, which shapes the tallies into
the report.

What the numbers mean
---------------------
- ``count``: subjects whose current stage is this one (with a window: entered it in the window).
- ``entered``: distinct subjects with a transition into the stage (in the window).
- ``reached``: distinct subjects that reached this funnel stage *or a later one* (stages may be
  skipped: an order without prior clicks goes straight to action), from their transitions (in
  the window) and their current stage (entered in the window). Each subject counts once however
  many history rows it has: a merge of two contacts re-keys both histories onto the survivor, so
  one person may have entered a stage twice.
- ``conversion`` of stage i: ``reached[i] / reached[i-1]`` (share of those who reached the
  previous stage who reached this one); None for the first stage or an empty previous stage.
- ``median_days``: median length of the completed stays in the stage whose entry is in the
  window. Stays come from each subject's consecutive transitions, oldest first, following the
  chain ``to_stage -> from_stage``: a row that does not continue the chain (a duplicate from a
  merged history, or a second "first" transition) is skipped, so merged histories do not
  produce zero-length or overlapping stays. Open stays (the current stage) are not measured.
- The window is half-open: ``since <= t < until``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

_DAY = timedelta(days=1)


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


def funnel_report(
    spec: FunnelSpec,
    current: Iterable[Current] | None,
    moves: Iterable[Move],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict:
    """The report (a JSON-ready dict, shape in the module docstring and the API schema).

    ``current`` None: the model is not the one in use, so subjects' stage columns say nothing
    about it; the population is the subjects with transitions, each where its chain ends.
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
    side = [name for name, _ in spec.side_stages]
    position = {name: i for i, name in enumerate(funnel)}

    counts = dict.fromkeys([*funnel, *side], 0)
    unstaged = 0
    best: dict[str, int] = {}  # subject -> highest funnel position reached (in the window)
    entered: dict[str, set[str]] = {name: set() for name in counts}

    def reach(subject: str, stage: str | None) -> None:
        p = position.get(stage) if stage is not None else None
        if p is not None and p > best.get(subject, -1):
            best[subject] = p

    for subject, here in now_at.items():
        if here.stage in counts:
            if in_window(here.since):
                counts[here.stage] += 1
                reach(subject, here.stage)
        else:
            unstaged += 1
    for subject, rows in by_subject.items():
        for move in rows:
            if in_window(move.changed_at):
                reach(subject, move.to_stage)
                if move.to_stage in entered:
                    entered[move.to_stage].add(subject)

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
            counts=counts,
            entered={name: len(subjects) for name, subjects in entered.items()},
            reached=[sum(1 for p in best.values() if p >= i) for i in range(len(funnel))],
            stays={name: len(d) for name, d in durations.items()},
            median_days={name: _median_days(d) for name, d in durations.items()},
        ),
    )


@dataclass(frozen=True)
class Tallies:
    """What the report is made of, per stage name (funnel and side stages); ``reached`` by
    funnel position. ``funnel_report`` counts them in Python, ``funnel_query`` in SQL."""

    total: int
    unstaged: int
    counts: Mapping[str, int]
    entered: Mapping[str, int]
    reached: Sequence[int]
    stays: Mapping[str, int]
    median_days: Mapping[str, float | None]


def median_of_middles(middles: Sequence[timedelta]) -> float | None:
    """The median in days from the one or two middle stays of a sorted list (the same float
    as ``statistics.median`` over all of them: it only ever looks at the middle ones)."""
    return _median_days(list(middles))


def assemble(spec: FunnelSpec, t: Tallies) -> dict:
    """The report (a JSON-ready dict) from its tallies."""
    funnel = [name for name, _ in spec.stages]
    reached = list(t.reached)
    stages = []
    for i, (name, title) in enumerate(spec.stages):
        stages.append(
            {
                "name": name,
                "title": title,
                "position": i,
                "count": t.counts.get(name, 0),
                "entered": t.entered.get(name, 0),
                "reached": reached[i],
                "conversion": _rate(reached[i], reached[i - 1]) if i else None,
                "median_days": t.median_days.get(name),
                "stays": t.stays.get(name, 0),
            }
        )
    conversions = [
        {
            "from": funnel[i - 1],
            "to": funnel[i],
            "reached_from": reached[i - 1],
            "reached_to": reached[i],
            "rate": _rate(reached[i], reached[i - 1]),
        }
        for i in range(1, len(funnel))
    ]
    side_stages = [
        {
            "name": name,
            "title": title,
            "count": t.counts.get(name, 0),
            "entered": t.entered.get(name, 0),
            "median_days": t.median_days.get(name),
            "stays": t.stays.get(name, 0),
        }
        for name, title in spec.side_stages
    ]
    return {
        "model": spec.name,
        "title": spec.title,
        "total": t.total,
        "unstaged": t.unstaged,
        "stages": stages,
        "side_stages": side_stages,
        "conversions": conversions,
    }


# --- SVG -----------------------------------------------------------------------------------------

_WIDTH = 760
_LABEL_W = 200
_BAR_W = 360
_ROW_H = 46
_TOP = 56


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(body)}</text>'


def render_svg(report: Mapping, *, subtitle: str = "") -> str:
    """A horizontal bar chart of the funnel: one bar per stage (length: subjects that reached
    it), its counts, the step conversion between bars, and the side stages below."""
    stages = list(report["stages"])
    side = list(report["side_stages"])
    top = max([s["reached"] for s in stages] + [s["count"] for s in side] + [1])
    height = _TOP + _ROW_H * (len(stages) + len(side)) + (40 if side else 0) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f"<title>{escape(str(report['title']))} funnel</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        _text(16, 26, f"{report['title']} funnel", font_size="17", font_weight="bold"),
    ]
    if subtitle:
        out.append(_text(16, 44, subtitle, fill="#555555"))

    def bar(y: float, stage: Mapping, value: int, colour: str, caption: str) -> None:
        width = 0 if value == 0 else max(2.0, _BAR_W * value / top)
        out.append(f'<g class="stage" data-stage={quoteattr(str(stage["name"]))}>')
        out.append(f"<title>{escape(str(stage['name']))}: {escape(caption)}</title>")
        out.append(_text(16, y + 19, str(stage["title"])))
        out.append(
            f'<rect x="{_LABEL_W}" y="{y + 4:g}" width="{width:.1f}" height="22" '
            f'fill="{colour}" rx="3"/>'
        )
        out.append(_text(_LABEL_W + width + 8, y + 19, caption))
        out.append("</g>")

    y = float(_TOP)
    for i, stage in enumerate(stages):
        if i:
            out.append(
                _text(_LABEL_W - 8, y - 4, f"\u2193 {_pct(stage['conversion'])}",
                      text_anchor="end", fill="#2a7a2a", font_size="11")
            )  # fmt: skip
        caption = f"{stage['reached']} reached, {stage['count']} now"
        bar(y, stage, stage["reached"], "#3b6fb6", caption)
        y += _ROW_H
    if side:
        y += 16
        out.append(_text(16, y, "Off the funnel", font_weight="bold"))
        y += 8
        for stage in side:
            bar(y, stage, stage["count"], "#b0793b", f"{stage['count']} now")
            y += _ROW_H
    out.append("</svg>")
    return "\n".join(out)
