"""The funnel report computed by PostgreSQL: one statement returns a few rows per stage.

Same numbers as ``funnel.funnel_report`` (its docstring says what they mean; the tests compare
both on generated histories), but the contacts and their history never leave the database, so
the API's memory does not grow with the tenant: a 1M-contact tenant is a handful of rows here.

The history is not walked per request: migration 0012's triggers keep, as ``stage_history`` is
written (consumer, merges, erasure, recompute), per subject and model where its chain ends and
the stages it ever entered (``funnel_subjects``), and the completed stays of its chain
(``funnel_stays``, ``funnel._chain``'s rule). Neither depends on the model's funnel order or on
a window, so the statement only aggregates them:
- ``subjects``: the subjects in scope grouped by (stage, stage entered in the window, stages
  entered): the model in use stands where the scope's stage columns say, another model where
  the chains end (subjects without history of it are not in its population). All time, the
  stages entered are the summary's; with a window, those of the transitions in it (found by the
  history's time index, which includes the stage). A few dozen groups; Python turns each
  group's stages into the highest funnel position reached and the stages entered.
- ``stays``: the completed stays of subjects in scope entered in the window, per stage: their
  number and the one or two middle durations (``percentile_disc``), averaged in Python
  (``funnel.median_of_middles``): the float ``statistics.median`` gives.
- The window is half-open, ``lo <= t < hi`` (``-infinity``/``infinity`` when unset); a missing
  ``stage_since`` is in the window only when there is no window.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from services.segment.funnel import FunnelSpec, Tallies, median_of_middles

# {scope} is replaced by one of the scope queries of api_funnel (constants), not a value;
# {subjects} by one of the FROM clauses below.
_STATEMENT = """
WITH scope AS NOT MATERIALIZED ({scope}),
summary AS (
    SELECT subject_id, end_stage, end_at, stages FROM funnel_subjects
     WHERE tenant_id = %(tenant)s AND subject_kind = %(kind)s AND model = %(model)s
),
win AS (
    SELECT subject_id, array_agg(DISTINCT to_stage) AS stages FROM stage_history
     WHERE tenant_id = %(tenant)s AND subject_kind = %(kind)s AND model = %(model)s
       AND changed_at >= %(lo)s::timestamptz AND changed_at < %(hi)s::timestamptz
     GROUP BY subject_id
),
subjects AS ({subjects}),
-- The one or two middle stays: percentile_disc(f) is the value at rank ceil(f * n), so 0.5
-- is the lower middle one and 0.5 + 1e-9 the upper one (the same one when n is odd).
medians AS (
    SELECT t.stage, count(*) AS n,
           percentile_disc(ARRAY[0.5, 0.5 + 1e-9]) WITHIN GROUP (ORDER BY t.duration) AS middle
      FROM funnel_stays t
     WHERE t.tenant_id = %(tenant)s AND t.subject_kind = %(kind)s AND t.model = %(model)s
       AND t.stage = ANY(%(staged)s::text[])
       AND t.entered_at >= %(lo)s::timestamptz AND t.entered_at < %(hi)s::timestamptz
       AND t.subject_id IN (SELECT subject_id FROM scope)
     GROUP BY t.stage
)
SELECT 'subjects' AS what, stage,
       CASE WHEN since IS NULL THEN NOT %(windowed)s
            ELSE since >= %(lo)s::timestamptz AND since < %(hi)s::timestamptz END AS in_window,
       stages, count(*) AS n, NULL::interval AS d1, NULL::interval AS d2
  FROM subjects GROUP BY 2, 3, 4
UNION ALL
SELECT 'stays', stage, NULL, NULL, n, middle[1], middle[2] FROM medians
"""

# (model in use, window): the subjects' stage columns, the stages entered ever / in the window.
_SUBJECTS = {
    (True, False): """SELECT s.stage, s.stage_since AS since, f.stages
      FROM scope s LEFT JOIN summary f ON f.subject_id = s.subject_id""",
    (True, True): """SELECT s.stage, s.stage_since AS since, w.stages
      FROM scope s LEFT JOIN win w ON w.subject_id = s.subject_id""",
    (False, False): """SELECT f.end_stage AS stage, f.end_at AS since, f.stages
      FROM scope s JOIN summary f ON f.subject_id = s.subject_id""",
    (False, True): """SELECT f.end_stage AS stage, f.end_at AS since, w.stages
      FROM scope s JOIN summary f ON f.subject_id = s.subject_id
      LEFT JOIN win w ON w.subject_id = s.subject_id""",
}


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
) -> Tallies:
    """The report's tallies for the subjects of ``scope`` (a constant query selecting
    ``subject_id, stage, stage_since`` with ``params``) under ``spec``'s model.

    ``active`` False: the model is not the one in use, so subjects stand where their recorded
    chain ends (``funnel_report`` with ``current=None``)."""
    funnel = [name for name, _ in spec.stages]
    staged = funnel + [name for name, _ in spec.side_stages]
    position = {name: i for i, name in enumerate(funnel)}
    windowed = since is not None or until is not None
    # The sort of the stays (medians) fits in memory at 1M contacts instead of spilling; the
    # database's memory, per report, bounded (the statement is the only one using it).
    conn.execute("SET LOCAL work_mem = '64MB'")
    rows = conn.execute(
        _STATEMENT.format(scope=scope, subjects=_SUBJECTS[active, windowed]),
        {
            **params,
            "kind": kind,
            "model": spec.name,
            "windowed": windowed,
            "lo": since if since is not None else "-infinity",
            "hi": until if until is not None else "infinity",
            "staged": staged,
        },
    ).fetchall()
    counts = dict.fromkeys(staged, 0)
    entered = dict.fromkeys(staged, 0)
    stays = dict.fromkeys(staged, 0)
    median_days: dict[str, float | None] = dict.fromkeys(staged)
    reached = [0] * len(funnel)
    total = unstaged = 0
    for r in rows:
        stage, n = r["stage"], r["n"]
        if r["what"] == "stays":
            stays[stage] = n
            median_days[stage] = median_of_middles([r["d1"], r["d2"]])
            continue
        total += n
        best = -1
        if stage not in counts:
            unstaged += n
        elif r["in_window"]:
            counts[stage] += n
            best = position.get(stage, -1)
        for name in set(r["stages"] or ()):
            if name in entered:
                entered[name] += n
            best = max(best, position.get(name, -1))
        for i in range(best + 1):
            reached[i] += n
    return Tallies(total, unstaged, counts, entered, reached, stays, median_days)
