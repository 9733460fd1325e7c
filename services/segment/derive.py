"""Refresh what the rules derive for a contact and its account, inside the batch's transaction.

Reads the stored facts, calls the pure rules (roles, scoring, lifecycle, risk), writes the results,
records every stage transition with its cause, and queues the stage changes and the new profile
in the outbox. ``now`` is event time (the newest evidence), never the wall clock, so a replay of
the topic derives the same values. The statements are in store.py (reads, locks) and writes.py
(the batched writes of derived values); a manual stage change is overrides.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from psycopg import Connection

from services.segment import behaviour, risk, store
from services.segment.catalogue import queue_catalogue
from services.segment.due import horizon_days, next_due
from services.segment.facts import AccountFacts, ContactFacts, EventFact, is_activity
from services.segment.lifecycle.model import LifecycleModel, Transition, evaluate_account
from services.segment.lost import lost_state, members_lost
from services.segment.reach import reach
from services.segment.risk import lost_flag, risk_flags
from services.segment.roles import RoleGuess, infer_role
from services.segment.scoring import DEFAULT_SCORING, account_score, decayed, score
from services.segment.segments import (
    Failures,
    SegmentDef,
    disable_segments,
    load_segments,
    membership,
    segment_facts,
)
from services.segment.settle import State, settle_touched
from services.segment.sources import account_sources, contact_sources
from services.segment.tenant_model import model_for
from services.segment.topics import Topics
from services.segment.writes import AccountDerived, ContactDerived, Writes
from shared import messages
from shared.tenants import Tenant

HISTORY_DAYS = 400  # rules look back at most a year (plus margin)
HISTORY_LIMIT = 2000  # newest events per contact the rules see
ENGAGED_DAYS = 90  # a buying role counts as engaged with an own action in this window


Checkpoint = tuple[datetime, str]  # (event time, event id) of a touchpoint applied to a contact

# What moved a stage (stage_history.moved_by, the stage change's ``moved_by``): a touchpoint, time
# alone (the tick), a recompute, or staff through the admin API.
MOVED_BY = ("event", "time", "recompute", "staff")


@dataclass(frozen=True)
class Watch:
    """What a subject's next due instant is computed from (docs/architecture.md "Time-driven
    evaluation"): the ages in days and the score thresholds its rules compare with."""

    days: frozenset[float]
    scores: frozenset[float]

    def due(self, times: Iterable[datetime], now: datetime, score_now: float) -> datetime | None:
        return next_due(times, now, self.days, score=score_now, score_limits=self.scores,
                        half_life_days=DEFAULT_SCORING.half_life_days)  # fmt: skip


def contact_watch(model: LifecycleModel, defined: Iterable[SegmentDef]) -> Watch:
    found = model.horizons()
    for segment in defined:
        found = found | segment.condition.horizons()
    # An event leaving the history the rules see (HISTORY_DAYS) changes them too.
    return Watch(horizon_days(found, behaviour.horizon_days(), (HISTORY_DAYS,)), found.scores)


def account_watch(model: LifecycleModel) -> Watch:
    found = model.horizons()
    return Watch(
        horizon_days(found, risk.horizon_days(), (ENGAGED_DAYS, HISTORY_DAYS)), found.scores
    )


def score_now(stored: float | None, at: datetime | None, now: datetime) -> float:
    """A stored score decayed from when it was derived to ``now`` (scores decay continuously,
    between derivations too: docs/domain.md "Scoring")."""
    if not stored or at is None:
        return stored or 0.0
    return decayed(stored, (now - at).total_seconds() / 86400.0, DEFAULT_SCORING.half_life_days)


def derived_at(row: Mapping) -> datetime:
    """The instant a contact is derived at unless told otherwise: its newest evidence, or the
    later instant it was last derived at (the time tick, a recompute). Never earlier: what time
    alone changed stays changed when an older event arrives late, and the profiles' versions
    never go back (in the event log alone, this is the newest evidence)."""
    last = row.get("score_at")
    return row["last_event_at"] if last is None else max(last, row["last_event_at"])


def load_history(conn: Connection, tenant_id: str, rows: list[dict], now: datetime | None = None):
    """The events the rules may see for these contact rows: each contact's own window (up to
    ``now`` or when it is derived) is cut from one read in ``_derive``."""
    oldest = min(now or derived_at(r) for r in rows)
    ids = [r["contact_id"] for r in rows]
    return store.contact_events(
        conn, tenant_id, ids, oldest - timedelta(days=HISTORY_DAYS), HISTORY_LIMIT
    )


def refresh_contacts(
    conn: Connection,
    tenant: Tenant,
    rows: list[dict],
    *,
    checkpoints: Mapping[str, list[Checkpoint]] | None = None,
    topics: Topics,
    now: datetime | None = None,
    settle: bool = True,
    history: Mapping[str, list[EventFact]] | None = None,
    moved_by: str = "event",
    settled: Mapping[str, State] | None = None,
) -> set[str]:
    """Re-derive locked contact rows: role, score, stage, behaviour, segments; queue profiles.

    ``now`` defaults to ``derived_at`` (the newest evidence: replays derive the same); a recompute
    passes the wall clock so that time-based rules (lapsing) apply. ``checkpoints`` are the
    (time, event id) of each touchpoint a batch applied to a contact: stages are settled at each,
    in time order, so a batch records the same transitions as one event at a time would.
    ``settle=False`` keeps each stage as it is (a manual override just set it): everything else
    is derived; the next evidence settles the stage again from there. ``history`` (from
    ``load_history``, covering these rows) saves reading the events again. ``moved_by`` says what
    moved the stages (``MOVED_BY``). ``settled`` are stages already settled in event time with
    their accounts (settle.py): written as they are. Each row also gets its next due instant
    (``due_at``).
    """
    if not rows:
        return set()
    if history is None:
        history = load_history(conn, tenant.id, rows, now)
    model = model_for(tenant, conn)
    # A segment whose rule fails (to load, or for one contact) is skipped from then on and
    # disabled below: the contacts, the events and the other segments go on.
    failures: Failures = {}
    defined = load_segments(conn, tenant.id, failures)
    ids = [r["contact_id"] for r in rows]
    identities = store.contact_identities(conn, tenant.id, ids)
    accounts = store.accounts_of(conn, tenant.id, rows)
    writes = Writes(tenant.id)
    watch = contact_watch(model, defined)
    for row in rows:
        account = accounts.get(row["account_id"]) if row["account_id"] else None
        _derive(writes, tenant, model, defined, row, history[row["contact_id"]], account,
                now or derived_at(row), (checkpoints or {}).get(row["contact_id"], []),
                topics, settle, identities.get(row["contact_id"], {}), failures, watch,
                moved_by, (settled or {}).get(row["contact_id"]))  # fmt: skip
    writes.flush(conn)
    if failures and disable_segments(conn, tenant.id, failures):
        # The catalogue shows the segments just disabled (outreach records them in its audit log).
        queue_catalogue(conn, tenant, topics)
    return set(accounts)


def contact_role(row: Mapping) -> RoleGuess | None:
    """The contact's buying role: the override set through the API, else inferred from title and
    tags (``roles.infer_role``)."""
    override = row.get("role_override")
    if override:
        return RoleGuess(override, 1.0, "api", "api")
    return _inferred_role(row["title"], tuple(row["tags"]))


@lru_cache(maxsize=4096)
def _inferred_role(title: str | None, tags: tuple[str, ...]) -> RoleGuess | None:
    # Titles repeat a lot (采购经理, IT经理...): the pattern table is matched once per title.
    return infer_role(title, tags)


def _derive(writes, tenant, model, defined, row, events, account_row, now, checkpoints, topics,
            settle=True, identities=None, failures=None, watch=None, moved_by="event",
            settled=None):  # fmt: skip
    contact_id = row["contact_id"]
    # The contact's own window, whatever the batch read: a replay batched differently derives
    # the same.
    lower = now - timedelta(days=HISTORY_DAYS)
    events = [e for e in events if lower <= e.occurred_at <= now]
    guess = contact_role(row)
    base = ContactFacts(
        contact_id=contact_id,
        tenant_mode=tenant.mode,
        stage=row["stage"],
        role=guess.role if guess else None,
        attributes=row["attributes"],
        tags=frozenset(row["tags"]),
        account=account_facts(account_row) if account_row else None,
        created_at=row["created_at"],
    )
    stage, since = row["stage"], row["stage_since"]
    steps = sorted((min(at, now), eid) for at, eid in checkpoints) or [(now, None)]
    if steps[-1][0] < now:
        steps.append((now, steps[-1][1]))
    if not settle:
        steps = []
    if settled is not None:  # settled in event time with its account (settle.py)
        (stage, since), steps = settled, []
    at_score = None  # the score at the last step
    for at, event_id in steps:
        seen = tuple(e for e in events if e.occurred_at <= at)
        at_score = score(seen, at)
        facts = replace(base, stage=stage, score=at_score, events=seen)
        for move in model.settle(facts, at):
            record_move(writes, tenant, "contact", contact_id, model, move, at, event_id, topics,
                        moved_by=moved_by)  # fmt: skip
            stage, since = move.to_stage, at
    # The last step is ``now`` and saw every event: its score is the contact's.
    new_score = at_score if steps and steps[-1][0] == now else score(events, now)
    facts = replace(base, stage=stage, score=new_score, events=tuple(events))
    # Behaviour (RFM, engagement, interests) is how B2C contacts are grouped; B2B contacts get the
    # features too (ops may filter on them) but are grouped by company and role.
    feats = behaviour.features(events, now, row["created_at"])
    kinds = behaviour.segments(feats) if tenant.mode == "b2c" else []
    features = behaviour.as_dict(feats)
    member_of = membership(
        defined,
        segment_facts(
            replace(facts, stage=stage),
            behaviour=kinds,
            features=features,
            account_stage=account_row["stage"] if account_row else None,
            risk_flags=[f["flag"] for f in account_row["risk_flags"]] if account_row else [],
        ),
        now,
        model,
        failures,
    )
    writes.memberships[contact_id] = (member_of, now)
    times = [e.occurred_at for e in events]
    times += [t for t in (row["created_at"], account_row and account_row["created_at"]) if t]
    watch = watch or contact_watch(model, defined)
    # docs/domain.md "Lost customers": the stored loss carries past the event window.
    lost = lost_state(events, row.get("lost"))
    writes.contacts[contact_id] = ContactDerived(
        role=guess.role if guess else None,
        role_confidence=guess.confidence if guess else None,
        role_source=guess.source if guess else None,
        score=new_score,
        score_at=now,
        stage=stage,
        stage_since=since,
        behaviour=kinds,
        features=features,
        due_at=watch.due(times, now, new_score),
        lost=lost,
        # docs/domain.md "Channel codes": the stored channels carry past the event window.
        sources=contact_sources(events, row),
    )
    # A profile's version is when it was derived; never older than the last one published (the
    # time tick derives at the wall clock, a later touchpoint may carry an older event time).
    version = max(now, row.get("score_at") or now)
    profile = {
        "tenant_id": tenant.id,
        "contact_id": contact_id,
        "mode": tenant.mode,
        "identities": identities or {},
        "model": model.name,
        "stage": stage,
        "role": guess.role if guess else None,
        "account_id": row["account_id"],
        "account_stage": account_row["stage"] if account_row else None,
        "risk_flags": [f["flag"] for f in account_row["risk_flags"]] if account_row else [],
        "score": new_score,
        "tags": list(row["tags"]),
        "behaviour": kinds,
        "segments": member_of,
        "last_event_at": row["last_event_at"].isoformat(),
        "updated_at": version.isoformat(),
        "lost": lost,
        **reach(events, lost),
    }
    value = messages.encode_built(messages.PROFILE, profile)
    writes.message(topics.profiles, f"{tenant.id}:{contact_id}", value)


def account_facts(row: dict) -> AccountFacts:
    return AccountFacts(
        account_id=row["account_id"],
        name=row["name"],
        stage=row["stage"],
        score=row["score"],
        roles_engaged=frozenset(row["roles_engaged"]),
        members=row["members"],
        attributes=row["attributes"],
        created_at=row["created_at"],
    )


def refresh_accounts(
    conn: Connection,
    tenant: Tenant,
    account_ids: Iterable[str],
    *,
    event_ids: Mapping[str, str | None],
    topics: Topics,
    history: Mapping[str, list[EventFact]] | None = None,
    now: datetime | None = None,
    moved_by: str = "event",
    settled: Mapping[str, State] | None = None,
) -> set[str]:
    """Members' roles and stages, score roll-up, account stage and risk flags, for many accounts
    in a few statements. ``event_ids`` names the touchpoint that caused each refresh; ``settled``
    are stages already settled in event time at each member checkpoint (settle.py). ``now``
    defaults to each account's newest member evidence (the tick passes the wall clock).

    Returns the accounts whose view from their members (stage, roles, flags) changed: members'
    profiles and segment memberships depend on it.
    """
    wanted = sorted(set(account_ids))
    if not wanted:
        return set()
    accounts = store.lock_accounts(conn, tenant.id, wanted)
    members: dict[str, list[dict]] = {}
    for m in store.member_summaries(conn, tenant.id, wanted):
        members.setdefault(m["account_id"], []).append(m)
    accounts = [a for a in accounts if members.get(a["account_id"])]
    if not accounts:
        return set()
    newest = {a: now or max(m["last_event_at"] for m in ms) for a, ms in members.items()}
    member_rows = [m for a in accounts for m in members[a["account_id"]]]
    missing = [m for m in member_rows if history is None or m["contact_id"] not in history]
    if missing:
        history = {**(history or {}), **load_history(conn, tenant.id, missing, now)}
    model = model_for(tenant, conn)
    watch = account_watch(model)
    writes = Writes(tenant.id)
    changed = set()
    for account in accounts:
        account_id = account["account_id"]
        if _refresh_account(writes, tenant, model, account, members[account_id], history,
                            newest[account_id], event_ids.get(account_id), topics, watch,
                            moved_by, (settled or {}).get(account_id)):  # fmt: skip
            changed.add(account_id)
    writes.flush(conn)
    return changed


def _refresh_account(writes, tenant, model, account, members, history, now, event_id, topics,
                     watch, moved_by, settled=None):  # fmt: skip
    account_id = account["account_id"]
    since_window = now - timedelta(days=HISTORY_DAYS)
    # The history was read for the widest window of the batch; each account sees its own.
    own = {
        m["contact_id"]: [e for e in history[m["contact_id"]] if e.occurred_at >= since_window]
        for m in members
    }
    member_events = sorted(
        (e for events in own.values() for e in events),
        key=lambda e: (e.occurred_at, e.event_id or "", e.type),
    )
    engaged_since = now - timedelta(days=ENGAGED_DAYS)
    engaged = sorted(
        {
            m["role"]
            for m in members
            if m["role"]
            and any(e.occurred_at >= engaged_since and is_activity(e) for e in own[m["contact_id"]])
        }
    )
    business = tuple(e for e in member_events if e.type.startswith("biz."))
    facts = AccountFacts(
        account_id=account_id,
        name=account["name"],
        stage=account["stage"],
        score=account_score([score_now(m["score"], m["score_at"], now) for m in members], 0.0),
        roles_engaged=frozenset(engaged),
        members=len(members),
        attributes=account["attributes"],
        events=business,
        created_at=account["created_at"],
    )
    stage, since = account["stage"], account["stage_since"]
    move = None
    if settled is None:
        move = evaluate_account(model, facts, [m["stage"] for m in members], now, member_events)
    else:  # settled in event time at each member checkpoint (settle.py)
        stage, since = settled
    if move is not None:
        record_move(writes, tenant, "account", account_id, model, move, now, event_id, topics,
                    moved_by=moved_by)  # fmt: skip
        stage, since = move.to_stage, now
    carried = {m["contact_id"]: m.get("lost") for m in members}
    lost = lost_flag(members_lost({c: lost_state(events, carried.get(c))
                                   for c, events in own.items()}))  # fmt: skip
    flags = [
        {"flag": f.flag, "reason": f.reason, "since": f.since.isoformat() if f.since else None,
         **({"members": f.details["members"]} if f.flag == "lost" else {})}
        for f in risk_flags(facts, member_events, now, lost=lost)
    ]  # fmt: skip
    writes.accounts[account_id] = AccountDerived(
        stage=stage,
        stage_since=since,
        score=facts.score,
        roles_engaged=engaged,
        members=len(members),
        risk_flags=flags,
        refreshed_at=now,
        due_at=watch.due(
            [e.occurred_at for e in member_events] + [account["created_at"]], now, facts.score
        ),
        sources=account_sources(contact_sources(own[m["contact_id"]], m) for m in members),
    )
    return (
        stage != account["stage"]
        or engaged != sorted(account["roles_engaged"])
        or [f["flag"] for f in flags] != [f["flag"] for f in account["risk_flags"]]
    )


def derive_touched(
    conn: Connection, tenant: Tenant, touched: Mapping[str, list[Checkpoint]], topics: Topics
) -> None:
    """After a batch is applied: the stages of the touched contacts and their accounts, settled
    together in event time at every checkpoint (settle.py; late evidence re-settles what it
    affects: docs/domain.md "Event time and replay"); then the touched and re-settled contacts,
    then their accounts, each once; then, for the accounts whose stage, roles or flags changed,
    their members' profiles and segments (stages are settled at checkpoints only, not then)."""
    locked = store.lock_with_members(conn, tenant.id, touched)
    history = load_history(conn, tenant.id, locked)  # read once for all steps
    model = model_for(tenant, conn)
    writes = Writes(tenant.id)

    def record(kind: str, subject_id: str, move: Transition, at: datetime, event_id):
        record_move(writes, tenant, kind, subject_id, model, move, at, event_id, topics)

    settled = settle_touched(conn, tenant.id, tenant.mode, model, touched, history, record,
                             contact_role, history_days=HISTORY_DAYS,
                             engaged_days=ENGAGED_DAYS)  # fmt: skip
    writes.flush(conn)
    rows = store.contacts(conn, tenant.id, set(touched) | settled.resettled)
    accounts = refresh_contacts(
        conn,
        tenant,
        rows,
        checkpoints=touched,
        topics=topics,
        history=history,
        settled=settled.contacts,
    )
    latest: dict[str, Checkpoint] = {}  # each account's newest touchpoint: the cause of a move
    for r in locked:
        account = r["account_id"]
        for cp in touched.get(r["contact_id"], []) if account in accounts else ():
            if account not in latest or cp > latest[account]:
                latest[account] = cp
    changed = refresh_accounts(
        conn,
        tenant,
        accounts,
        event_ids={a: cp[1] for a, cp in latest.items()},
        topics=topics,
        history=history,
        settled=settled.accounts,
    )
    refresh_members(conn, tenant, changed, topics=topics, history=history, settle=False)


def refresh_members(
    conn: Connection,
    tenant: Tenant,
    accounts: set[str],
    *,
    topics: Topics,
    history: Mapping[str, list[EventFact]] | None = None,
    now: datetime | None = None,
    moved_by: str = "event",
    settle: bool = True,
) -> None:
    """Re-derive the members of ``accounts`` whose stage, roles or flags just changed: a member's
    profile carries its account's. ``settle=False`` keeps their stages (the consumer settled
    them at their checkpoints, in event time)."""
    if not accounts:
        return
    members = store.members(conn, tenant.id, accounts)
    refresh_contacts(conn, tenant, members, topics=topics, history=history, now=now,
                     moved_by=moved_by, settle=settle)  # fmt: skip


def record_move(
    writes: Writes,
    tenant: Tenant,
    kind: str,
    subject_id: str,
    model: LifecycleModel,
    move: Transition,
    at: datetime,
    event_id: str | None,
    topics: Topics,
    actor: str | None = None,
    moved_by: str = "event",
) -> None:
    if moved_by not in MOVED_BY:
        raise ValueError(f"moved_by must be one of {', '.join(MOVED_BY)}, not {moved_by!r}")
    writes.transition(kind, subject_id, model.name, move.from_stage, move.to_stage, move.cause,
                      event_id, at, actor, moved_by)  # fmt: skip
    value = messages.encode_built(
        messages.STAGE_CHANGE,
        {
            "tenant_id": tenant.id,
            "subject": kind,
            "subject_id": subject_id,
            "model": model.name,
            "from_stage": move.from_stage,
            "to_stage": move.to_stage,
            "cause": move.cause,
            "event_id": event_id,
            "changed_at": at.isoformat(),
            "actor": actor,
            "moved_by": moved_by,
        },
    )
    writes.message(topics.stage_changes, f"{tenant.id}:{subject_id}", value)


def queue_tombstone(
    conn: Connection, tenant: Tenant, merged: str, into: str, topics: Topics
) -> None:
    """The merged contact's last profile says where it went (the topic is compacted by key)."""
    at = store.merged_at(conn, tenant.id, merged, into)
    value = messages.encode(
        messages.PROFILE,
        {
            "tenant_id": tenant.id,
            "contact_id": merged,
            "mode": tenant.mode,
            "identities": {},
            "model": model_for(tenant, conn).name,
            "stage": None,
            "role": None,
            "account_id": None,
            "account_stage": None,
            "score": 0.0,
            "updated_at": at.isoformat(),
            "merged_into": into,
        },
    )
    writes = Writes(tenant.id)
    writes.message(topics.profiles, f"{tenant.id}:{merged}", value)
    writes.flush(conn)
