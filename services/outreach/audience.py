"""A campaign's audience from outreach's own tables: the filters compiled to SQL over ``audience``
(bound parameters only), with what the policies need joined in (exposures for caps and quotas,
what the campaign already sent each recipient). Returns ``policies.Recipient`` values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection, sql

from services.outreach.budget import CHANNELS as BUDGET_CHANNELS
from services.outreach.policies import Recipient

# filter field -> SQL over the audience row ``a`` with one parameter
_ARRAY_OVERLAP = {
    "segments": "a.segments && {}",
    "risk_flags": "a.risk_flags && {}",
    "tags": "a.tags && {}",
    "behaviour": "a.behaviour && {}",
}
_ANY = {
    "stages": "a.stage = ANY({})",
    "roles": "a.role = ANY({})",
    "accounts": "a.account_id = ANY({})",
    "account_stages": "a.account_stage = ANY({})",
    "contacts": "a.contact_id = ANY({})",
}
GROUP_MEMBER = (
    "EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = a.tenant_id AND g.chat_id = ANY({}) "
    "AND g.status = 'active' AND g.members && a.external_userids)"
)
# Channel -> the address column: the first id of the contact on that platform.
ADDRESS = {
    "wecom_single": "a.external_userids[1]",
    "oa_template": "a.openids[1]",
    "oa_mass": "a.openids[1]",
    "oa_custom": "a.openids[1]",
}
QUOTA_WINDOW = {  # how far back a channel's platform quota counts
    "oa_mass": timedelta(days=30),
}
# The WeCom group sends one recipient used of the budget's period (services/outreach/budget.py),
# looked up per audience row (LATERAL, by index: never the tenant's whole period): those
# received (platform_sends, by address) and other runs' deliveries on their way that are not
# recorded there yet - pending or sending (they go out now), sent without a row, or unknown
# (may have gone out) in the period. {address}, {kind}, {rid}: the row's columns; {tenant},
# {start}, {end}, {channels} bound by the caller.
BUDGET_USED = (
    "SELECT (SELECT count(*) FROM platform_sends ps WHERE ps.tenant_id = {tenant} "
    "AND ps.recipient = {address} AND ps.sent_at >= {start} AND ps.sent_at < {end}) "
    "+ (SELECT count(*) FROM deliveries d WHERE d.tenant_id = {tenant} "
    "AND d.recipient_kind = {kind} AND d.recipient_id = {rid} AND d.address = {address} "
    "AND d.channel = ANY({channels}) AND (d.status IN ('pending', 'sending') "
    "OR (d.status = 'unknown' AND COALESCE(d.sent_at, d.created_at) >= {start}) "
    "OR (d.status = 'sent' AND d.sent_at >= {start} AND d.sent_at < {end} AND NOT EXISTS ("
    "SELECT 1 FROM platform_sends r WHERE r.tenant_id = d.tenant_id "
    "AND r.recipient = d.address AND r.msgid = d.msgid)))) AS used"
)


class Params:
    """Bound parameters of a composed statement: ``p(value)`` is a placeholder for ``value``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def conditions(spec: dict[str, Any], p: Params) -> list[tuple[str, sql.Composable]]:
    """(field, condition) for each filter of ``spec`` (an AudienceSchema's or its exclude)."""
    out: list[tuple[str, sql.Composable]] = []
    for name, value in spec.items():
        if name == "exclude" or value is None or value == []:
            continue  # an empty list filters nothing (as if left out)
        if name in _ARRAY_OVERLAP:
            out.append((name, sql.SQL(_ARRAY_OVERLAP[name]).format(p(list(value)))))
        elif name in _ANY:
            out.append((name, sql.SQL(_ANY[name]).format(p(list(value)))))
        elif name == "groups":
            out.append((name, sql.SQL(GROUP_MEMBER).format(p(list(value)))))
        elif name == "mode":
            out.append((name, sql.SQL("a.mode = {}").format(p(value))))
        elif name == "oa_followers":
            test = "a.oa_follower IS TRUE" if value else "a.oa_follower IS NOT TRUE"
            out.append((name, sql.SQL(test)))
        elif name == "min_score":
            out.append((name, sql.SQL("a.score >= {}").format(p(float(value)))))
        else:  # the schema refuses unknown fields; a new one must be compiled here
            raise ValueError(f"audience filter {name!r} has no SQL")
    return out


@dataclass(frozen=True)
class Scope:
    """An event run reaches only its subject: one contact, or the members of one account."""

    kind: str  # contact | account
    id: str


def where_clause(
    tenant_id: str, audience: dict[str, Any], scope: Scope | None, p: Params
) -> sql.Composable:
    parts: list[sql.Composable] = [sql.SQL("a.tenant_id = {}").format(p(tenant_id))]
    parts += [cond for _, cond in conditions(audience, p)]
    if scope is not None:
        column = "a.contact_id" if scope.kind == "contact" else "a.account_id"
        parts.append(sql.SQL(column + " = {}").format(p(scope.id)))
    return sql.SQL(" AND ").join(parts)


def _exclusions(audience: dict[str, Any], p: Params) -> list[tuple[str, sql.Composable]]:
    return conditions(audience.get("exclude") or {}, p)


def contacts(
    conn: Connection,
    tenant_id: str,
    campaign_id: str,
    audience: dict[str, Any],
    channel: str,
    now: datetime,
    scope: Scope | None = None,
    budget: tuple[datetime, datetime] | None = None,
) -> Iterator[Recipient]:
    """Contact recipients of a 1:1 channel, streamed (a million rows never sit in a list);
    ``budget``: the platform budget's period, for a channel it limits."""
    p = Params()
    excl = _exclusions(audience, p)
    flags = (
        sql.SQL(", ").join(
            sql.SQL("({}) AS {}").format(cond, sql.Identifier(f"x_{name}")) for name, cond in excl
        )
        if excl
        else sql.SQL("NULL AS x_none")
    )
    quota_since = now - QUOTA_WINDOW.get(channel, timedelta(hours=48))
    query = sql.SQL(
        """
        SELECT a.contact_id, a.mode, a.stage, a.account_stage, a.role, a.oa_follower,
               a.wecom_contact, a.oa_last_message_at, {address} AS address, {flags},
               COALESCE(x.day, 0) AS day, COALESCE(x.week, 0) AS week,
               COALESCE(x.quota, 0) AS quota, COALESCE(b.used, 0) AS budget_used, s.received
        FROM audience a
        LEFT JOIN (
            SELECT subject_id,
                   count(*) FILTER (WHERE at > {day}) AS day,
                   count(*) AS week,
                   count(*) FILTER (WHERE channel = {channel} AND at > {quota_since}) AS quota
            FROM exposures
            WHERE tenant_id = {tenant} AND subject_kind = 'contact' AND at > {since}
            GROUP BY subject_id
        ) x ON x.subject_id = a.contact_id
        LEFT JOIN (
            SELECT recipient_id, array_agg(DISTINCT content_id) AS received
            FROM deliveries
            WHERE tenant_id = {tenant} AND campaign_id = {campaign}
              AND recipient_kind = 'contact' AND status IN ('sent', 'delivered', 'unknown')
            GROUP BY recipient_id
        ) s ON s.recipient_id = a.contact_id
        LEFT JOIN LATERAL ({budget}) b ON true
        WHERE {where}
        ORDER BY a.contact_id
        """
    ).format(
        address=sql.SQL(ADDRESS[channel]),
        budget=_budget(tenant_id, budget, p, ADDRESS[channel], "'contact'", "a.contact_id"),
        flags=flags,
        day=p(now - timedelta(days=1)),
        channel=p(channel),
        quota_since=p(quota_since),
        since=p(min(now - timedelta(days=7), quota_since)),
        tenant=p(tenant_id),
        campaign=p(campaign_id),
        where=where_clause(tenant_id, audience, scope, p),
    )
    names = [name for name, _ in excl]
    with conn.cursor(name="audience") as cursor:  # server-side: rows stream in
        cursor.itersize = 5000
        cursor.execute(query, p.values)
        for row in cursor:
            week_row = row["week"]
            yield Recipient(
                kind="contact",
                id=row["contact_id"],
                address=row["address"],
                mode=row["mode"],
                stage=row["stage"],
                account_stage=row["account_stage"],
                role=row["role"],
                oa_follower=row["oa_follower"],
                wecom_contact=row["wecom_contact"],
                oa_last_message_at=row["oa_last_message_at"],
                excluded_by=tuple(n for n in names if row[f"x_{n}"]),
                exposures_day=row["day"],
                exposures_week=week_row,
                quota_used=row["quota"],
                budget_used=row["budget_used"],
                received=frozenset(row["received"] or ()),
            )


def groups(
    conn: Connection,
    tenant_id: str,
    campaign_id: str,
    audience: dict[str, Any],
    now: datetime,
    scope: Scope | None = None,
    budget: tuple[datetime, datetime] | None = None,
) -> list[Recipient]:
    """Group recipients: the groups the audience names, else every active group with at least
    one member matching the audience's filters; each with its known members' facts."""
    p = Params()
    named = audience.get("groups")
    contact_filters = {k: v for k, v in audience.items() if k not in ("groups", "exclude")}
    if named:
        chosen = sql.SQL("g.chat_id = ANY({})").format(p(list(named)))
    else:
        chosen = sql.SQL(
            "g.status = 'active' AND EXISTS (SELECT 1 FROM audience a WHERE {} "
            "AND a.external_userids && g.members)"
        ).format(where_clause(tenant_id, contact_filters, scope, p))
    excluded_groups = set((audience.get("exclude") or {}).get("groups") or ())
    rows = conn.execute(
        sql.SQL(
            """
            SELECT g.chat_id, g.owner, g.status, g.members,
                   COALESCE(x.day, 0) AS day, COALESCE(x.week, 0) AS week,
                   COALESCE(b.used, 0) AS budget_used, s.received
            FROM groups g
            LEFT JOIN (
                SELECT subject_id, count(*) FILTER (WHERE at > {day}) AS day, count(*) AS week
                FROM exposures WHERE tenant_id = {tenant} AND subject_kind = 'group'
                  AND at > {week} GROUP BY subject_id
            ) x ON x.subject_id = g.chat_id
            LEFT JOIN (
                SELECT recipient_id, array_agg(DISTINCT content_id) AS received
                FROM deliveries WHERE tenant_id = {tenant} AND campaign_id = {campaign}
                  AND recipient_kind = 'group' AND status IN ('sent', 'delivered', 'unknown')
                GROUP BY recipient_id
            ) s ON s.recipient_id = g.chat_id
            LEFT JOIN LATERAL ({budget}) b ON true
            WHERE g.tenant_id = {tenant} AND {chosen}
            ORDER BY g.chat_id
            """
        ).format(
            day=p(now - timedelta(days=1)),
            week=p(now - timedelta(days=7)),
            tenant=p(tenant_id),
            campaign=p(campaign_id),
            budget=_budget(tenant_id, budget, p, "g.chat_id", "'group'", "g.chat_id"),
            chosen=chosen,
        ),
        p.values,
    ).fetchall()
    members = _members(conn, tenant_id, [r["chat_id"] for r in rows])
    return [
        Recipient(
            kind="group",
            id=r["chat_id"],
            address=r["chat_id"],
            sender=r["owner"],
            dismissed=r["status"] == "dismissed",
            excluded_by=("groups",) if r["chat_id"] in excluded_groups else (),
            exposures_day=r["day"],
            exposures_week=r["week"],
            budget_used=r["budget_used"],
            received=frozenset(r["received"] or ()),
            members=tuple(
                members.get(r["chat_id"], {}).get(m) or _stranger(m) for m in r["members"]
            ),
        )
        for r in rows
    ]


def _budget(tenant_id: str, budget: tuple[datetime, datetime] | None, p: Params,
            address: str, kind: str, rid: str):  # fmt: skip
    if budget is None:  # a channel the budget does not limit: nothing used
        return sql.SQL("SELECT 0 AS used")
    return sql.SQL(BUDGET_USED).format(
        tenant=p(tenant_id),
        start=p(budget[0]),
        end=p(budget[1]),
        address=sql.SQL(address),
        kind=sql.SQL(kind),
        rid=sql.SQL(rid),
        channels=p(list(BUDGET_CHANNELS)),
    )


def _stranger(external_userid: str) -> Recipient:
    """A member the audience does not know yet (no profile): reached, but no facts."""
    return Recipient(kind="contact", id=f"ext:{external_userid}", address=external_userid)


def _members(conn: Connection, tenant_id: str, chat_ids: list[str]):
    """{chat_id: {external_userid: Recipient}} for the members with a profile."""
    found: dict[str, dict[str, Recipient]] = {}
    if not chat_ids:
        return found
    rows = conn.execute(
        "SELECT g.chat_id, m.ext, a.contact_id, a.mode, a.stage, a.account_stage, a.role "
        "FROM groups g CROSS JOIN LATERAL unnest(g.members) AS m(ext) "
        "JOIN audience a ON a.tenant_id = g.tenant_id AND a.external_userids @> ARRAY[m.ext] "
        "WHERE g.tenant_id = %s AND g.chat_id = ANY(%s)",
        (tenant_id, chat_ids),
    ).fetchall()
    for r in rows:
        found.setdefault(r["chat_id"], {})[r["ext"]] = Recipient(
            kind="contact",
            id=r["contact_id"],
            address=r["ext"],
            mode=r["mode"],
            stage=r["stage"],
            account_stage=r["account_stage"],
            role=r["role"],
        )
    return found
