"""The funnel report computed by PostgreSQL: one statement returns a few rows per stage.

Same numbers as ``funnel.funnel_report`` (its docstring says what they mean; the tests compare
both on generated histories), but the contacts and their history never leave the database, so
the API's memory does not grow with the tenant: a 1M-contact tenant is a handful of rows here.

How the statement follows the pure function:
- ``moves``: the model's transitions of the subjects in scope, numbered per subject in
  ``(changed_at, id)`` order, each with the previous ``to_stage`` and the next ``changed_at``.
- A subject whose every transition continues the previous one (``from_stage`` is the previous
  ``to_stage`` and the stage changes) is *regular*: its chain is all its transitions, so its
  stays are ``(to_stage, changed_at, next changed_at)`` from the window functions alone. That is
  every subject but those whose histories were merged.
- The others (``odd``) are walked transition by transition in a recursive CTE that keeps only
  those continuing the chain, as ``funnel._chain`` does; the walk touches only their rows.
- Medians: the one or two middle stays of each stage are returned and averaged in Python
  (``funnel.median_of_middles``), so the float is the one ``statistics.median`` gives.
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
scope AS MATERIALIZED ({scope}),
numbered AS (
    SELECT h.subject_id, h.from_stage, h.to_stage, h.changed_at,
           row_number() OVER w AS rn,
           lag(h.to_stage) OVER w AS prev_to,
           lead(h.changed_at) OVER w AS next_at
      FROM stage_history h
     WHERE h.tenant_id = %(tenant)s AND h.subject_kind = %(kind)s AND h.model = %(model)s
       AND h.subject_id IN (SELECT subject_id FROM scope)
    WINDOW w AS (PARTITION BY h.subject_id ORDER BY h.changed_at, h.id)
),
moves AS MATERIALIZED (
    SELECT n.*, bool_or(n.rn > 1 AND (n.from_stage IS DISTINCT FROM n.prev_to
                                      OR n.to_stage = n.prev_to))
                    OVER (PARTITION BY n.subject_id) AS odd
      FROM numbered n
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
stays AS (
    SELECT to_stage AS stage, changed_at AS entered_at, next_at AS left_at
      FROM moves WHERE NOT odd AND next_at IS NOT NULL
    UNION ALL
    SELECT closed, closed_at, left_at FROM walk WHERE closed IS NOT NULL
),
now_at AS (
    SELECT subject_id, stage, stage_since AS since FROM scope WHERE %(active)s
    UNION ALL
    SELECT subject_id, to_stage, changed_at FROM moves
     WHERE NOT %(active)s AND NOT odd AND next_at IS NULL
    UNION ALL
    SELECT * FROM (
        SELECT DISTINCT ON (subject_id) subject_id, stage, entered_at FROM walk
         ORDER BY subject_id, rn DESC) ends
     WHERE NOT %(active)s
),
now_in AS (
    SELECT subject_id, stage,
           CASE WHEN since IS NULL THEN NOT %(windowed)s
                ELSE since >= %(lo)s::timestamptz AND since < %(hi)s::timestamptz END AS in_window
      FROM now_at
),
moved_in AS MATERIALIZED (
    SELECT subject_id, to_stage FROM moves
     WHERE changed_at >= %(lo)s::timestamptz AND changed_at < %(hi)s::timestamptz
),
best AS (
    SELECT subject_id, max(pos) AS pos
      FROM (SELECT subject_id, array_position(%(funnel)s::text[], to_stage) - 1 AS pos
              FROM moved_in
            UNION ALL
            SELECT subject_id, array_position(%(funnel)s::text[], stage) - 1
              FROM now_in WHERE in_window) r
     WHERE pos IS NOT NULL
     GROUP BY subject_id
),
ranked AS (
    SELECT stage, left_at - entered_at AS d,
           row_number() OVER (PARTITION BY stage ORDER BY left_at - entered_at) AS k,
           count(*) OVER (PARTITION BY stage) AS n
      FROM stays
     WHERE stage = ANY(%(staged)s::text[])
       AND entered_at >= %(lo)s::timestamptz AND entered_at < %(hi)s::timestamptz
)
SELECT 'now' AS what, stage, count(*) FILTER (WHERE in_window) AS n, count(*) AS m,
       NULL::interval AS d1, NULL::interval AS d2
  FROM now_in GROUP BY stage
UNION ALL
SELECT 'entered', to_stage, count(DISTINCT subject_id), NULL, NULL, NULL
  FROM moved_in WHERE to_stage = ANY(%(staged)s::text[]) GROUP BY to_stage
UNION ALL
SELECT 'best', pos::text, count(*), NULL, NULL, NULL FROM best GROUP BY pos
UNION ALL
SELECT 'stays', stage, max(n), NULL, min(d), max(d)
  FROM ranked WHERE k = (n + 1) / 2 OR k = n / 2 + 1 GROUP BY stage
"""


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
    rows = conn.execute(
        _STATEMENT.format(scope=scope),
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
        },
    ).fetchall()
    counts = dict.fromkeys(staged, 0)
    entered = dict.fromkeys(staged, 0)
    stays = dict.fromkeys(staged, 0)
    median_days: dict[str, float | None] = dict.fromkeys(staged)
    best: dict[int, int] = {}
    total = unstaged = 0
    for r in rows:
        what, stage = r["what"], r["stage"]
        if what == "now":
            total += r["m"]
            if stage in counts:
                counts[stage] = r["n"]
            else:
                unstaged += r["m"]
        elif what == "entered":
            entered[stage] = r["n"]
        elif what == "best":
            best[int(stage)] = r["n"]
        else:
            stays[stage] = r["n"]
            median_days[stage] = median_of_middles([r["d1"], r["d2"]])
    reached = [sum(n for p, n in best.items() if p >= i) for i in range(len(funnel))]
    return Tallies(total, unstaged, counts, entered, reached, stays, median_days)
