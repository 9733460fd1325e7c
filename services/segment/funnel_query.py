"""The funnel report computed by PostgreSQL: three grouped statements, a few rows per stage.

Same numbers as ``funnel.funnel_report`` (its docstring says what they mean; the tests compare
both on generated histories), but the contacts and their history never leave the database, so
the API's memory does not grow with the tenant: a 1M-contact tenant is a handful of rows here.

- Figures: the period's transitions are aggregated per subject (first and last entry into each
  stage: one pass over the history index in subject order, or over the time index for a
  period), joined to the subjects in scope (the model in use stands where the scope's stage
  columns say, another model where the chains end: ``funnel_subjects`` of migration 0012) and
  counted per (current stage, entered in the period): entered, converted (an entry into the
  next stage at or after the first into this one) and now.
- Medians: the completed stays of subjects in scope entered in the period (``funnel_stays``,
  kept by migration 0012's triggers), per stage: their number and the one or two middle
  durations (``percentile_disc``), averaged in Python (``funnel.median_of_middles``): the
  float ``statistics.median`` gives.
- Weeks: the period's entries grouped by (ISO week in the tenant's zone, stage), distinct
  subjects each.
- The period is half-open, ``lo <= t < hi`` (``-infinity``/``infinity`` when unset); a missing
  ``stage_since`` is in it only when there is no period (entered "now": ``infinity``).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

import psycopg
from psycopg import sql

from services.segment.funnel import FunnelSpec, Tallies, median_of_middles

_HISTORY = sql.SQL(
    "h.tenant_id = %(tenant)s AND h.subject_kind = %(kind)s AND h.model = %(model)s "
    "AND h.changed_at >= %(lo)s::timestamptz AND h.changed_at < %(hi)s::timestamptz"
)
_IN_WINDOW = sql.SQL(
    "CASE WHEN since IS NULL THEN NOT %(windowed)s "
    "ELSE since >= %(lo)s::timestamptz AND since < %(hi)s::timestamptz END"
)

# {scope} is one of the scope queries of api_funnel (constants), not a value.
# The period's transitions come first: the start of the text is what pg_stat_activity shows.
_FIGURES = sql.SQL("""
WITH moves AS NOT MATERIALIZED (
    SELECT h.subject_id, h.to_stage, h.changed_at FROM stage_history h WHERE {history}
),
scope AS NOT MATERIALIZED ({scope}),
hist AS (SELECT subject_id, {firsts_lasts} FROM moves h GROUP BY h.subject_id),
subjects AS ({subjects}),
marked AS (SELECT *, {in_window} AS in_window FROM subjects),
entries AS (SELECT stage, in_window, {entries} FROM marked)
SELECT stage, in_window, count(*) AS n, {counts} FROM entries GROUP BY 1, 2
""")

# (model in use): where subjects stand, with their aggregated history (hist's columns).
_SUBJECTS = {
    True: """SELECT s.stage, s.stage_since AS since, h.*
      FROM scope s LEFT JOIN hist h ON h.subject_id = s.subject_id""",
    False: """SELECT f.end_stage AS stage, f.end_at AS since, h.*
      FROM scope s JOIN funnel_subjects f ON f.subject_id = s.subject_id
       AND f.tenant_id = %(tenant)s AND f.subject_kind = %(kind)s AND f.model = %(model)s
      LEFT JOIN hist h ON h.subject_id = s.subject_id""",
}

# The one or two middle stays: percentile_disc(f) is the value at rank ceil(f * n), so 0.5 is
# the lower middle one and 0.5 + 1e-9 the upper one (the same one when n is odd).
_MEDIANS = sql.SQL("""
WITH scope AS NOT MATERIALIZED ({scope})
SELECT t.stage, count(*) AS n,
       percentile_disc(ARRAY[0.5, 0.5 + 1e-9]) WITHIN GROUP (ORDER BY t.duration) AS middle
  FROM funnel_stays t
 WHERE t.tenant_id = %(tenant)s AND t.subject_kind = %(kind)s AND t.model = %(model)s
   AND t.stage = ANY(%(staged)s::text[])
   AND t.entered_at >= %(lo)s::timestamptz AND t.entered_at < %(hi)s::timestamptz
   AND t.subject_id IN (SELECT subject_id FROM scope)
 GROUP BY t.stage
""")

_WEEKS = sql.SQL("""
WITH scope AS NOT MATERIALIZED ({scope}),
entries AS (
    SELECT h.subject_id, h.to_stage AS stage, h.changed_at AS at FROM stage_history h
     WHERE {history} AND h.to_stage = ANY(%(staged)s::text[])
       AND h.subject_id IN (SELECT subject_id FROM scope)
    {current}
),
-- distinct (week, stage, subject) by hashing, not count(DISTINCT)'s sort of every entry
weekly AS (
    SELECT DISTINCT (date_trunc('week', at AT TIME ZONE %(tz)s))::date AS week, stage, subject_id
      FROM entries
)
SELECT week, stage, count(*) AS n FROM weekly GROUP BY 1, 2
""")
# The model in use: the current stage entered in the period is an entry too.
_CURRENT_ENTRIES = sql.SQL("""UNION ALL
    SELECT s.subject_id, s.stage, s.stage_since FROM scope s
     WHERE s.stage = ANY(%(staged)s::text[])
       AND s.stage_since >= %(lo)s::timestamptz AND s.stage_since < %(hi)s::timestamptz""")


def _figures(scope: str, active: bool, staged: list[str], funnel: list[str]) -> sql.Composed:
    """The figures statement for these stages: per stage k, columns f_k/l_k (first and last
    entry, the current stage included) and counts e_k (entered), c_k (converted to k+1)."""
    first, last = (
        [sql.Identifier(f"f{k}") for k in range(len(staged))],
        [sql.Identifier(f"l{k}") for k in range(len(staged))],
    )
    stage = [sql.Placeholder(f"s{k}") for k in range(len(staged))]
    firsts_lasts = sql.SQL(", ").join(
        sql.SQL(
            "min(h.changed_at) FILTER (WHERE h.to_stage = {s}) AS {f}, "
            "max(h.changed_at) FILTER (WHERE h.to_stage = {s}) AS {l}"
        ).format(s=stage[k], f=first[k], l=last[k])
        for k in range(len(staged))
    )
    current = [
        sql.SQL(
            "CASE WHEN in_window AND stage = {s} THEN coalesce(since, 'infinity'::timestamptz) END"
        ).format(s=stage[k])
        for k in range(len(staged))
    ]
    entries = sql.SQL(", ").join(
        sql.SQL("least({f}, {cur}) AS {f}, greatest({l}, {cur}) AS {l}").format(
            f=first[k], l=last[k], cur=current[k]
        )
        for k in range(len(staged))
    )
    counts = [
        sql.SQL("count(*) FILTER (WHERE {f} IS NOT NULL) AS {e}").format(
            f=first[k], e=sql.Identifier(f"e{k}")
        )
        for k in range(len(staged))
    ] + [
        sql.SQL("count(*) FILTER (WHERE {l} >= {f}) AS {c}").format(
            l=last[i + 1], f=first[i], c=sql.Identifier(f"c{i}")
        )
        for i in range(len(funnel) - 1)
    ]
    return _FIGURES.format(
        scope=sql.SQL(scope),
        firsts_lasts=firsts_lasts if staged else sql.SQL("NULL AS none"),
        history=_HISTORY,
        subjects=sql.SQL(_SUBJECTS[active]),
        in_window=_IN_WINDOW,
        entries=entries if staged else sql.SQL("NULL AS none"),
        counts=sql.SQL(", ").join(counts) if counts else sql.SQL("NULL AS none"),
    )


def funnel_tallies(
    conn: psycopg.Connection,
    spec: FunnelSpec,
    scope: str,
    params: dict,
    *,
    kind: str,
    active: bool,
    since: datetime | None = None,
    until: datetime | None = None,
    tz: tzinfo,
) -> Tallies:
    """The report's tallies for the subjects of ``scope`` (a constant query selecting
    ``subject_id, stage, stage_since`` with ``params``) under ``spec``'s model; weeks in
    ``tz`` (its name is PostgreSQL's: an IANA zone).

    ``active`` False: the model is not the one in use, so subjects stand where their recorded
    chain ends (``funnel_report`` with ``current=None``)."""
    funnel = [name for name, _ in spec.stages]
    staged = funnel + [name for name, _ in spec.side_stages]
    windowed = since is not None or until is not None
    values = {
        **params,
        "kind": kind,
        "model": spec.name,
        "windowed": windowed,
        "lo": since if since is not None else "-infinity",
        "hi": until if until is not None else "infinity",
        "staged": staged,
        "tz": str(tz),
        **{f"s{k}": name for k, name in enumerate(staged)},
    }
    # The sorts (medians, distinct weekly subjects) fit in memory at 1M contacts instead of
    # spilling; the database's memory, per report, bounded (one statement at a time).
    conn.execute("SET LOCAL work_mem = '64MB'")
    # No parallel workers: on a few shared cores they competed with the other requests and
    # made the report slower (bench/REPORT.md, Funnel report); one core per report.
    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    counts = dict.fromkeys(staged, 0)
    entered = dict.fromkeys(staged, 0)
    converted = [0] * max(len(funnel) - 1, 0)
    total = unstaged = 0
    for r in conn.execute(_figures(scope, active, staged, funnel), values).fetchall():
        total += r["n"]
        if r["stage"] not in counts:
            unstaged += r["n"]
        elif r["in_window"]:
            counts[r["stage"]] += r["n"]
        for k, name in enumerate(staged):
            entered[name] += r[f"e{k}"]
        for i in range(len(converted)):
            converted[i] += r[f"c{i}"]

    stays = dict.fromkeys(staged, 0)
    median_days: dict[str, float | None] = dict.fromkeys(staged)
    for r in conn.execute(_MEDIANS.format(scope=sql.SQL(scope)), values).fetchall():
        stays[r["stage"]] = r["n"]
        median_days[r["stage"]] = median_of_middles(r["middle"])

    weeks: dict = {}
    statement = _WEEKS.format(
        scope=sql.SQL(scope),
        history=_HISTORY,
        current=_CURRENT_ENTRIES if active else sql.SQL(""),
    )
    for r in conn.execute(statement, values).fetchall():
        weeks.setdefault(r["week"], dict.fromkeys(staged, 0))[r["stage"]] = r["n"]
    return Tallies(total, unstaged, counts, entered, converted, stays, median_days, weeks)
