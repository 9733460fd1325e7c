"""Apply one touchpoint to the segment state: resolve the person, store the event once, update
profile and account. Derived values (role, score, stage, segments) are refreshed by ``derive``.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import Connection
from psycopg.types.json import Jsonb

from services.segment import enrichment, store
from services.segment.companies import account_key
from services.segment.identity import person_identities, resolve
from shared.envelope import Identity, Touchpoint

# Chat membership events name their people in attributes.members (external_userids).
MEMBER_EVENTS = ("wecom.chat.member_joined", "wecom.chat.member_left")
ACCOUNT_FIELDS = ("industry", "size", "lifecycle", "region", "credit_rating", "employees")


@dataclass(frozen=True)
class Applied:
    contact_id: str
    account_id: str | None
    merged: tuple[str, ...] = ()  # contacts folded into contact_id by this touchpoint


def subjects(tp: Touchpoint) -> list[list[tuple[str, str]]]:
    """The people a touchpoint is about, each as its person identities."""
    if tp.type in MEMBER_EVENTS:
        members = tp.attributes.get("members") or []
        return [person_identities(Identity(external_userid=m)) for m in members if m]
    people = person_identities(tp.identity)
    return [people] if people else []


def apply_touchpoint(conn: Connection, tp: Touchpoint) -> list[Applied]:
    """Apply ``tp``; return the contacts it changed (none when it was applied before)."""
    changed: list[Applied] = []
    account_id = _account(conn, tp)
    for identities in subjects(tp):
        known = store.known_contacts(conn, tp.tenant_id, identities)
        plan = resolve(tp.tenant_id, identities, known)
        cause = f"{tp.type} {tp.event_id} links " + ", ".join(f"{k}" for k, _ in identities)
        store.apply_resolution(
            conn, tp.tenant_id, plan, at=tp.occurred_at, event_id=tp.event_id, cause=cause
        )
        attributes = dict(tp.attributes)
        if tp.identity.chat_id:
            attributes.setdefault("chat_id", tp.identity.chat_id)
        if tp.identity.staff_userid:
            attributes.setdefault("staff_userid", tp.identity.staff_userid)
        if not store.record_event(
            conn, tp.tenant_id, tp.event_id, plan.contact_id, tp.type, tp.occurred_at, attributes
        ):
            continue
        if tp.type == "biz.contact.updated" or tp.type == "biz.registered":
            store.update_profile(
                conn,
                tp.tenant_id,
                plan.contact_id,
                tp.occurred_at,
                {
                    "name": tp.attributes.get("name"),
                    "title": tp.attributes.get("title"),
                    "corp_name": tp.attributes.get("company"),
                },
            )
        if tp.type in enrichment.TRIGGERS and tp.identity.external_userid:
            enrichment.enqueue(conn, tp.tenant_id, tp.identity.external_userid, tp.occurred_at)
        elif tp.type == enrichment.ENRICHED:
            _apply_enriched(conn, tp, plan.contact_id)
        if account_id is not None:
            store.attach_account(conn, tp.tenant_id, plan.contact_id, account_id)
        changed.append(Applied(plan.contact_id, account_id, plan.merge))
    return changed


def _apply_enriched(conn: Connection, tp: Touchpoint, contact_id: str) -> None:
    """WeCom contact detail (services/segment/enrichment.py): profile and follow-user tags, the
    latest by event time; queued requests it answers are dropped (it never queues one)."""
    store.update_profile(
        conn,
        tp.tenant_id,
        contact_id,
        tp.occurred_at,
        {
            "name": tp.attributes.get("name"),
            "title": tp.attributes.get("position"),
            "corp_name": tp.attributes.get("corp_name"),
        },
    )
    tags = tp.attributes.get("tags")
    if isinstance(tags, list):
        store.set_tags(conn, tp.tenant_id, contact_id, tp.occurred_at, [str(t) for t in tags if t])
    if tp.identity.external_userid:
        enrichment.satisfied(conn, tp.tenant_id, tp.identity.external_userid, tp.occurred_at)


def _account(conn: Connection, tp: Touchpoint) -> str | None:
    """The company account a touchpoint names (business events carry identity.account_key), or
    the account it was merged into."""
    raw = tp.identity.account_key or tp.attributes.get("company")
    if not raw:
        return None
    try:
        key = account_key(str(raw))
    except ValueError:
        return None  # a name made only of legal-form words names no company
    store.ensure_account(
        conn, tp.tenant_id, key, str(tp.attributes.get("company") or raw), tp.occurred_at
    )
    # A company merged by staff (POST /accounts/<id>/merge) lives on as its target; merges keep
    # merged_into pointing at the final target, so one look-up suffices.
    merged = conn.execute(
        "SELECT merged_into FROM accounts WHERE tenant_id = %s AND account_id = %s",
        (tp.tenant_id, key),
    ).fetchone()
    if merged is not None and merged["merged_into"]:
        key = merged["merged_into"]
    if tp.type == "biz.account.updated":
        facts = {k: tp.attributes[k] for k in ACCOUNT_FIELDS if k in tp.attributes}
        if facts:
            conn.execute(
                "UPDATE accounts SET attributes = attributes || %s "
                "WHERE tenant_id = %s AND account_id = %s",
                (Jsonb(facts), tp.tenant_id, key),
            )
    return key
