"""Apply one touchpoint to the segment state: resolve the person, store the event once, update
profile and account. Derived values (role, score, stage, segments) are refreshed by ``derive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.types.json import Jsonb

from services.segment import enrichment, erasure, store
from services.segment.identity import IdentityKey, Resolution, person_identities, resolve
from shared.companies import account_key
from shared.envelope import Identity, Touchpoint, is_customer_action
from shared.privacy import identity_hash

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


class _Batch:
    """What applying a batch of one tenant's touchpoints needs to know, read once up front and
    kept current as the batch goes: which contact each identity belongs to, which (event,
    contact) pairs are stored, which account each company key lives on as. Event rows and
    their counts are written together, set-based, when the batch ends or before a merge
    (which moves stored events)."""

    def __init__(self, conn: Connection, tenant_id: str, touchpoints: list[Touchpoint]):
        self.conn, self.tenant_id = conn, tenant_id
        identities = sorted({i for tp in touchpoints for people in subjects(tp) for i in people})
        # Shared: an erasure of this tenant (exclusive) waits for the batch, and the batch for it.
        erasure.tenant_lock(conn, tenant_id, shared=True)
        self.hashes = {i: identity_hash(tenant_id, *i) for i in identities}
        self.erased = erasure.erased_before(conn, tenant_id, sorted(set(self.hashes.values())))
        self.known = store.known_contacts(conn, tenant_id, identities)
        self.stored = store.stored_events(
            conn, tenant_id, sorted({tp.event_id for tp in touchpoints})
        )
        self.accounts = store.account_targets(
            conn, tenant_id, sorted({k for tp in touchpoints if (k := _account_key(tp))})
        )
        self.events: list[tuple] = []
        self.first_seen: dict[IdentityKey, datetime] = {}  # the earliest evidence of each

    def erased_subject(self, identities: list[IdentityKey], tp: Touchpoint) -> bool:
        """A person erased after this touchpoint was received: a replay or a redelivery of
        what they did before, dropped. Received after the erasure, they are a new person,
        unless it is a click on a tracked link issued before the erasure (the link names the
        erased person: an old message opened again, not a new relationship)."""
        if not self.erased:
            return False
        for identity in identities:
            at = self.erased.get(self.hashes[identity])
            if at is not None and (tp.received_at <= at or _old_link(tp, at)):
                return True
        return False

    def resolve_subject(self, identities: list[IdentityKey], tp: Touchpoint) -> Resolution:
        plan = resolve(self.tenant_id, identities, self.known)
        if plan.merge:
            self.flush()  # the merge moves stored events: ours must be stored first
        cause = f"{tp.type} {tp.event_id} links " + ", ".join(f"{k}" for k, _ in identities)
        store.apply_resolution(
            self.conn, self.tenant_id, plan, at=tp.occurred_at, event_id=tp.event_id, cause=cause
        )
        for identity in plan.link:
            self.known[identity] = plan.contact_id
        for identity in identities:
            seen = self.first_seen.get(identity)
            self.first_seen[identity] = (
                tp.occurred_at if seen is None else min(seen, tp.occurred_at)
            )
        if plan.merge:
            merged = set(plan.merge)
            for identity, contact in self.known.items():
                if contact in merged:
                    self.known[identity] = plan.contact_id
            self.stored = {(e, plan.contact_id if c in merged else c) for e, c in self.stored}
        return plan

    def record(self, tp: Touchpoint, contact_id: str, attributes: dict) -> bool:
        """Queue the event for ``contact_id``; False when it is stored already (redelivery)."""
        if (tp.event_id, contact_id) in self.stored:
            return False
        self.stored.add((tp.event_id, contact_id))
        acted = is_customer_action(tp.type, attributes)  # docs/domain.md "Activity"
        self.events.append(
            (tp.event_id, contact_id, tp.type, tp.occurred_at, Jsonb(attributes), acted)
        )
        return True

    def flush(self) -> None:
        if self.events:
            store.record_events(self.conn, self.tenant_id, self.events)
            self.events = []


def _old_link(tp: Touchpoint, erased_at: datetime) -> bool:
    """A click (ingest's ``link.clicked``) on a link issued before ``erased_at``; a link that
    does not say when it was issued (sealed before links did) counts as old."""
    if tp.source != "link" or tp.type != "link.clicked":
        return False
    issued = tp.attributes.get("link_issued_at")
    try:
        return issued is None or datetime.fromisoformat(issued) <= erased_at
    except (TypeError, ValueError):
        return True


def apply_touchpoints(
    conn: Connection, tenant_id: str, touchpoints: list[Touchpoint]
) -> list[tuple[Touchpoint, Applied]]:
    """Apply one tenant's touchpoints in order; return each contact change with its touchpoint
    (none for a touchpoint applied before). Three reads for the whole batch; the writes are
    pipelined by the caller."""
    batch = _Batch(conn, tenant_id, touchpoints)
    changed: list[tuple[Touchpoint, Applied]] = []
    for tp in touchpoints:
        account_id = _account(conn, tp, batch.accounts)
        for identities in subjects(tp):
            if batch.erased_subject(identities, tp):
                continue
            plan = batch.resolve_subject(identities, tp)
            attributes = dict(tp.attributes)
            if tp.identity.chat_id:
                attributes.setdefault("chat_id", tp.identity.chat_id)
            if tp.identity.staff_userid:
                attributes.setdefault("staff_userid", tp.identity.staff_userid)
            if not batch.record(tp, plan.contact_id, attributes):
                continue
            _side_effects(conn, tp, plan.contact_id, account_id)
            if tp.type == enrichment.JOINED:
                _queue_join(conn, tp, identities)
            changed.append((tp, Applied(plan.contact_id, account_id, plan.merge)))
    batch.flush()
    # An identity was first seen at its earliest evidence, whatever order it arrived in.
    store.lower_first_seen(conn, tenant_id, batch.first_seen)
    return changed


def _side_effects(conn: Connection, tp: Touchpoint, contact_id: str, account_id: str | None):
    """What a newly stored event changes beyond the event itself: profile, enrichment, account."""
    if tp.type == "biz.contact.updated" or tp.type == "biz.registered":
        _update_profile(conn, tp, contact_id, title="title", company="company")
    if tp.type in enrichment.TRIGGERS and tp.identity.external_userid:
        enrichment.enqueue(conn, tp.tenant_id, tp.identity.external_userid, tp.occurred_at)
    elif tp.type == enrichment.ENRICHED:
        _apply_enriched(conn, tp, contact_id)
    elif tp.type == enrichment.MEMBER_ENRICHED and tp.identity.external_userid:
        chat_id = tp.attributes.get("chat_id")
        if chat_id:  # the join requests it answers (services/segment/enrichment.py)
            enrichment.join_satisfied(
                conn, tp.tenant_id, str(chat_id), tp.identity.external_userid, tp.occurred_at
            )
    if account_id is not None:
        store.attach_account(conn, tp.tenant_id, contact_id, account_id)


def _queue_join(conn: Connection, tp: Touchpoint, identities: list[IdentityKey]) -> None:
    """A member joined a group: fetch their ``groupchat/get`` entry for a join code's state
    (docs/domain.md "Channel codes"), unless a member invited them directly (join_scene 0),
    which no join code can have done."""
    external = dict(identities).get("external_userid")
    if tp.identity.chat_id and external and tp.attributes.get("join_scene") != 0:
        enrichment.enqueue_join(conn, tp.tenant_id, tp.identity.chat_id, external, tp.occurred_at)


def _update_profile(conn: Connection, tp: Touchpoint, contact_id: str, *, title: str, company: str):
    """Name, title and company from the attributes that carry them in this touchpoint."""
    fields = {
        "name": tp.attributes.get("name"),
        "title": tp.attributes.get(title),
        "corp_name": tp.attributes.get(company),
    }
    store.update_profile(conn, tp.tenant_id, contact_id, tp.occurred_at, fields)


def _apply_enriched(conn: Connection, tp: Touchpoint, contact_id: str) -> None:
    """WeCom contact detail (services/segment/enrichment.py): profile and follow-user tags, the
    latest by event time; queued requests it answers are dropped (it never queues one)."""
    _update_profile(conn, tp, contact_id, title="position", company="corp_name")
    tags = tp.attributes.get("tags")
    if isinstance(tags, list):
        store.set_tags(conn, tp.tenant_id, contact_id, tp.occurred_at, [str(t) for t in tags if t])
    if tp.identity.external_userid:
        enrichment.satisfied(conn, tp.tenant_id, tp.identity.external_userid, tp.occurred_at)


def _account_key(tp: Touchpoint) -> str | None:
    raw = tp.identity.account_key or tp.attributes.get("company")
    if not raw:
        return None
    try:
        return account_key(str(raw))
    except ValueError:
        return None  # a name made only of legal-form words names no company


def _account(conn: Connection, tp: Touchpoint, targets: dict[str, str]) -> str | None:
    """The company account a touchpoint names (business events carry identity.account_key), or
    the account it was merged into (``targets``, read for the batch: only staff merge
    accounts, through POST /accounts/<id>/merge, which keeps merged_into at the final target)."""
    key = _account_key(tp)
    if key is None:
        return None
    raw = tp.identity.account_key or tp.attributes.get("company")
    store.ensure_account(
        conn, tp.tenant_id, key, str(tp.attributes.get("company") or raw), tp.occurred_at
    )
    key = targets.get(key) or key
    if tp.type == "biz.account.updated":
        facts = {k: tp.attributes[k] for k in ACCOUNT_FIELDS if k in tp.attributes}
        if facts:
            store.update_account_attributes(conn, tp.tenant_id, key, facts)
    return key
