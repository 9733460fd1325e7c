"""The funnel report computed by PostgreSQL: one statement returns a few rows per stage.

Same numbers as ``funnel.funnel_report`` (its docstring says what they mean; the tests compare
both on generated histories), but the contacts and their history never leave the database, so
the API's memory does not grow with the tenant: a 1M-contact tenant is a handful of rows here.

How the statement follows the pure function:
- ``moves``: the model's transitions of the subjects in scope, numbered per subject in
  ``(changed_at, id)`` order (the order of the covering index of migration 0009, so nothing is
  sorted), each with the previous ``to_stage`` and the next ``changed_at``; per subject, the
  highest funnel stage and the set of stages (a bit string) entered in the window.
- ``subjects``: one row per subject (its first transition's row; subjects in scope without
  history from the scope alone), grouped by (stage, in window, highest stage, stages entered):
  a few dozen groups, summed up in Python.
- With a window and the model in use, only subjects with a transition in the window (found by
  the time index) have their history read; the others count by their stage column alone.
- A subject whose every transition continues the previous one (``from_stage`` is the previous
  ``to_stage`` and the stage changes) is *regular*: its chain is all its transitions, so its
  stays are ``(to_stage, changed_at, next changed_at)`` from the window functions alone. That is
  every subject but those whose histories were merged.
- The others (``odd``) are walked transition by transition in a recursive CTE that keeps only
  those continuing the chain, as ``funnel._chain`` does; the walk touches only their rows.
- Medians: the one or two middle stays of each stage (``percentile_disc``) are returned and
  averaged in Python (``funnel.median_of_middles``): the float ``statistics.median`` gives.
- The window is half-open, ``lo <= t < hi`` (``-infinity``/``infinity`` when unset); a missing
  ``stage_since`` is in the window only when there is no window.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from services.segment.funnel import FunnelSpec, Tallies, median_of_middles

# {scope} is replaced by one of the scope queries of api_lifecycle (constants), not a value.
_STATEMENT = """
WITH RECURSIVE
scope AS NOT MATERIALIZED ({scope}),
moved AS MATERIALIZED (
    SELECT DISTINCT subject_id FROM stage_history
     WHERE tenant_id = %(tenant)s AND subject_kind = %(kind)s AND model = %(model)s
       AND changed_at >= %(lo)s::timestamptz AND changed_at < %(hi)s::timestamptz
),
numbered AS (
    SELECT h.subject_id, s.stage AS cur, s.stage_since AS cur_since,
           h.id, h.from_stage, h.to_stage, h.changed_at,
           row_number() OVER w AS rn,
           lag(h.to_stage) OVER w AS prev_to,
           lead(h.changed_at) OVER w AS next_at
      FROM stage_history h
      JOIN scope s ON s.subject_id = h.subject_id
     WHERE h.tenant_id = %(tenant)s AND h.subject_kind = %(kind)s AND h.model = %(model)s
    {narrow}
    WINDOW w AS (PARTITION BY h.subject_id ORDER BY h.changed_at, h.id)
),
moves AS MATERIALIZED (
    SELECT * FROM (
        SELECT n.*,
               bool_or(n.rn > 1 AND (n.from_stage IS DISTINCT FROM n.prev_to
                                     OR n.to_stage = n.prev_to)) OVER p AS odd,
               -- the last row is the one without a next
               max(CASE WHEN n.next_at IS NULL THEN n.to_stage END) OVER p AS last_stage,
               max(CASE WHEN n.next_at IS NULL THEN n.changed_at END) OVER p AS last_at,
               max(array_position(%(funnel)s::text[], n.to_stage))
                   FILTER (WHERE n.changed_at >= %(lo)s::timestamptz
                             AND n.changed_at < %(hi)s::timestamptz) OVER p AS best_hist,
               bit_or(CASE WHEN n.to_stage = ANY(%(staged)s::text[])
                           THEN set_bit(%(zeros)s::bit({width}),
                                        array_position(%(staged)s::text[], n.to_stage) - 1, 1)
                           END)
                   FILTER (WHERE n.changed_at >= %(lo)s::timestamptz
                             AND n.changed_at < %(hi)s::timestamptz) OVER p AS mask
          FROM numbered n
        WINDOW p AS (PARTITION BY n.subject_id)
    ) m
     WHERE rn = 1 OR odd OR next_at IS NOT NULL
),
odd_moves AS MATERIALIZED (SELECT * FROM moves WHERE odd),
walk (subject_id, rn, stage, entered_at, closed, closed_at, left_at) AS (
    SELECT subject_id, rn, to_stage, changed_at, NULL::text, NULL::timestamptz, NULL::timestamptz
      FROM odd_moves WHERE rn = 1
    UNION ALL
    SELECT w.subject_id, m.rn,
           CASE WHEN x.ok THEN m.to_stage ELSE w.stage END,
           CASE WHEN x.ok THEN m.changed_at ELSE w.entered_at END,
           CASE WHEN x.ok THEN w.stage END,
           CASE WHEN x.ok THEN w.entered_at END,
           CASE WHEN x.ok THEN m.changed_at END
      FROM walk w
      JOIN odd_moves m ON m.subject_id = w.subject_id AND m.rn = w.rn + 1
     CROSS JOIN LATERAL (
           SELECT coalesce(m.from_stage = w.stage AND m.to_stage <> w.stage, false) AS ok) x
),
ends AS (
    SELECT DISTINCT ON (subject_id) subject_id, stage, entered_at FROM walk
     ORDER BY subject_id, rn DESC
),
subjects AS (
    SELECT CASE WHEN %(active)s THEN m.cur WHEN m.odd THEN e.stage ELSE m.last_stage END
               AS stage,
           CASE WHEN %(active)s THEN m.cur_since WHEN m.odd THEN e.entered_at ELSE m.last_at END
               AS since,
           m.best_hist, m.mask
      FROM moves m LEFT JOIN ends e ON m.odd AND e.subject_id = m.subject_id
     WHERE m.rn = 1
    {rest}
),
placed AS (
    SELECT stage, mask, best_hist,
           CASE WHEN since IS NULL THEN NOT %(windowed)s
                ELSE since >= %(lo)s::timestamptz AND since < %(hi)s::timestamptz END AS in_window
      FROM subjects
),
stays AS (
    SELECT to_stage AS stage, changed_at AS entered_at, next_at AS left_at
      FROM moves WHERE NOT odd AND next_at IS NOT NULL
    UNION ALL
    SELECT closed, closed_at, left_at FROM walk WHERE closed IS NOT NULL
),
-- The one or two middle stays: percentile_disc(f) is the value at rank ceil(f * n), so 0.5
-- is the lower middle one and 0.5 + 1e-9 the upper one (the same one when n is odd).
medians AS (
    SELECT stage, count(*) AS n,
           percentile_disc(ARRAY[0.5, 0.5 + 1e-9]) WITHIN GROUP (ORDER BY left_at - entered_at)
               AS middle
      FROM stays
     WHERE stage = ANY(%(staged)s::text[])
       AND entered_at >= %(lo)s::timestamptz AND entered_at < %(hi)s::timestamptz
     GROUP BY stage
)
SELECT 'subjects' AS what, stage, in_window,
       greatest(best_hist, CASE WHEN in_window THEN array_position(%(funnel)s::text[], stage)
                           END) - 1 AS best,
       mask::text AS mask, count(*) AS n, NULL::interval AS d1, NULL::interval AS d2
  FROM placed GROUP BY 2, 3, 4, 5
UNION ALL
SELECT 'stays', stage, NULL, NULL, NULL, n, middle[1], middle[2] FROM medians
"""


# A window of the model in use: the history pass keeps the subjects that moved in the window...
_NARROW = "AND h.subject_id IN (SELECT subject_id FROM moved)"
# ... and every other subject of the scope stands where its stage column says.
_REST = """UNION ALL
    SELECT stage, stage_since, NULL, NULL::bit({width}) FROM scope s
     WHERE NOT EXISTS (SELECT 1 FROM moves x WHERE x.rn = 1 AND x.subject_id = s.subject_id)"""


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
    # With a window, only subjects with a transition in it need their history walked (found by
    # the history's time index); the others count by their current stage alone. Without the
    # active model the population is where chains end, so every history is walked.
    narrow = active and (since is not None or until is not None)
    # The sort of the stays (medians) fits in memory at 1M contacts instead of spilling; the
    # database's memory, per report, bounded (the statement is the only one using it).
    conn.execute("SET LOCAL work_mem = '64MB'")
    rows = conn.execute(
        _STATEMENT.format(
            scope=scope,
            width=len(staged),
            narrow=_NARROW if narrow else "",
            rest=_REST.format(width=len(staged)) if active else "",
        ),
        {
            **params,
            "kind": kind,
            "model": spec.name,
            "active": active,
            "windowed": since is not None or until is not None,
            "lo": since if since is not None else "-infinity",
            "hi": until if until is not None else "infinity",
            "funnel": funnel,
            "staged": staged,
            "zeros": "0" * len(staged),
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
        if stage not in counts:
            unstaged += n
        elif r["in_window"]:
            counts[stage] += n
        for i, bit in enumerate(r["mask"] or ""):
            if bit == "1":
                entered[staged[i]] += n
        for i in range(0 if r["best"] is None else r["best"] + 1):
            reached[i] += n
    return Tallies(total, unstaged, counts, entered, reached, stays, median_days)
