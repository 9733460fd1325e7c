"""What the content library holds, read for the console (docs/console.md "Content library"): how
many active items are tagged with each stage and buying role (the coverage matrix), and the
active items of one stage (an account's recommended next content).

Counts follow the tags as written: an item tagged with no role counts under ``None`` (it fits
every role, policies.py ``Item.fits``), one tagged with no stage under the stage ``None``.
"""

from __future__ import annotations

from collections import Counter

STAGE_ITEMS_LIMIT = 200  # an account's page looks at the newest items of its stage only


ANY_ROLE = "*"  # the key of a stage's items whatever their roles


def coverage_counts(conn, tenant: str) -> Counter:
    """``{(stage | None, role | None): active items}`` of the tenant's library, and
    ``{(stage | None, ANY_ROLE): items}`` counting each item of a stage once."""
    rows = conn.execute(
        "SELECT s.stage, r.role, grouping(r.role) AS any_role, "
        "       count(DISTINCT c.content_id) AS n FROM content c "
        "LEFT JOIN LATERAL unnest(c.stages) AS s(stage) ON true "
        "LEFT JOIN LATERAL unnest(c.roles) AS r(role) ON true "
        "WHERE c.tenant_id = %s AND c.status = 'active' "
        "GROUP BY GROUPING SETS ((s.stage, r.role), (s.stage))",
        (tenant,),
    ).fetchall()
    return Counter(
        {(row["stage"], ANY_ROLE if row["any_role"] else row["role"]): row["n"] for row in rows}
    )


def items_at_stage(conn, tenant: str, stage: str) -> list[dict]:
    """The newest active items tagged with ``stage`` (id, title, format, roles)."""
    return conn.execute(
        "SELECT content_id, title, format, roles FROM content "
        "WHERE tenant_id = %s AND status = 'active' AND %s = ANY(stages) "
        "ORDER BY updated_at DESC, content_id LIMIT %s",
        (tenant, stage, STAGE_ITEMS_LIMIT),
    ).fetchall()
