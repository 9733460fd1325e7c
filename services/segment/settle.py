"""Settle stages in event time, an account and its members together (docs/domain.md "Event time
and replay").

A batch's touchpoints are checkpoints: each (occurred_at, event id) applied to a contact. Within
a group (a B2B account with all its members, or one contact without an account) the checkpoints
are visited in (occurred_at, event id) order: the contact whose event it is settles its stage with
the facts of that instant (its events up to then; its account's roles engaged, score and stage
then), and the account is evaluated with the facts of that instant too (its members' stages then,
roles engaged in the ENGAGED_DAYS window ending then, scores then). Each transition is recorded
at its own time with its event id. So a group's stages are a function of its stored events, not
of how they were batched.

Late evidence (a checkpoint earlier than an event of the group already settled: another
partition, a later batch, a contact that joined the account) rewinds the group to just before it:
each subject takes the stage in effect then (stage_history; manual changes are kept and never
rewound past), the derived transitions from then on are deleted, and every stored event of the
group from then on is a checkpoint again. Re-recorded transitions are queued to the outbox again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from psycopg import Connection

from services.segment import store
from services.segment.facts import AccountFacts, ContactFacts, EventFact, is_activity
from services.segment.lifecycle.model import LifecycleModel, Transition, evaluate_account
from services.segment.roles import RoleGuess
from services.segment.scoring import DEFAULT_SCORING, account_score, age_days, decayed, score

Key = tuple[datetime, str]  # (occurred_at, event id): the order of checkpoints, ties included
State = tuple[str | None, datetime | None]  # (stage, since)
# (kind, subject id, move, at, event id): derive.record_move bound to the batch's writes.
Record = Callable[[str, str, Transition, datetime, str | None], None]


@dataclass
class Settled:
    """Stages settled in event time for the batch: what derive writes instead of settling."""

    contacts: dict[str, State] = field(default_factory=dict)
    accounts: dict[str, State] = field(default_factory=dict)
    resettled: set[str] = field(default_factory=set)  # contacts rewound, not in the batch


@dataclass
class _Member:
    row: dict
    role: str | None
    events: list[EventFact]  # oldest first, by (occurred_at, event id)
    keys: list[Key]
    state: State
    # Caches of what the account's view reads at every checkpoint of the group (the account is
    # evaluated at each, so reading every member's window each time cost O(checkpoints x events)).
    _scores: dict[tuple[int, int], tuple[float, datetime]] = field(default_factory=dict)
    _active: list[Key] | None = None

    def _bounds(self, until: Key, days: int) -> tuple[int, int]:
        first = bisect_left(self.keys, (until[0] - timedelta(days=days), ""))
        return first, bisect_right(self.keys, until)

    def window(self, until: Key, days: int) -> list[EventFact]:
        """The events up to checkpoint ``until`` (an event at the same time with a greater id
        comes after it), back ``days`` days."""
        first, last = self._bounds(until, days)
        return self.events[first:last]

    def score_at(self, until: Key, days: int) -> float | None:
        """``score(window, at)`` (None: an empty window), from the running value at the
        window's newest event, decayed to ``at`` exactly as ``score`` does."""
        bounds = self._bounds(until, days)
        if bounds[0] == bounds[1]:
            return None
        if bounds not in self._scores:
            newest = self.events[bounds[1] - 1].occurred_at
            self._scores[bounds] = (score(self.events[bounds[0] : bounds[1]], newest), newest)
        value, newest = self._scores[bounds]
        return decayed(value, age_days(newest, until[0]), DEFAULT_SCORING.half_life_days)

    def engaged(self, until: Key, since: datetime) -> bool:
        """An own action at or after ``since``, up to checkpoint ``until``."""
        if self._active is None:
            self._active = [_key(e) for e in self.events if is_activity(e)]
        i = bisect_right(self._active, until)
        return i > 0 and self._active[i - 1][0] >= since

    def present(self, until: Key) -> bool:
        return bool(self.keys) and self.keys[0] <= until


@dataclass
class _Group:
    account: dict | None
    members: dict[str, _Member]
    applied: dict[str, set[Key]]  # the batch's checkpoints of each member
    new: dict[str, set[Key]] = field(default_factory=dict)  # and the evidence new to the group
    start: Key = (datetime.max, "")
    late: bool = False
    account_state: State = (None, None)
    # Every member's events, and their biz.* ones, in checkpoint order: (keys, events) each.
    _ordered: dict[str, tuple[list[Key], list[EventFact]]] | None = None

    def _window(self, which: str, until: Key, days: int) -> list[EventFact]:
        if self._ordered is None:
            pairs = sorted(((_key(e), e) for m in self.members.values() for e in m.events),
                           key=lambda pair: pair[0])  # fmt: skip
            biz = [p for p in pairs if p[1].type.startswith("biz.")]
            self._ordered = {
                "all": ([k for k, _ in pairs], [e for _, e in pairs]),
                "business": ([k for k, _ in biz], [e for _, e in biz]),
            }
        keys, events = self._ordered[which]
        first = bisect_left(keys, (until[0] - timedelta(days=days), ""))
        return events[first : bisect_right(keys, until)]

    def activity(self, until: Key, days: int) -> list[EventFact]:
        """Every member's events up to checkpoint ``until``, back ``days`` days (the account's
        regress rules read them: a lapse is about its members' own actions)."""
        return self._window("all", until, days)

    def business(self, until: Key, days: int) -> tuple[EventFact, ...]:
        """The members' business events up to checkpoint ``until``, back ``days`` days."""
        return tuple(self._window("business", until, days))


def _key(e: EventFact) -> Key:
    return (e.occurred_at, e.event_id or "")


def settle_touched(
    conn: Connection,
    tenant_id: str,
    mode: str,
    model: LifecycleModel,
    touched: Mapping[str, list[Key]],
    history: Mapping[str, list[EventFact]],
    record: Record,
    role_of: Callable[[Mapping], RoleGuess | None],
    *,
    history_days: int,
    engaged_days: int,
) -> Settled:
    """Settle the groups of the touched contacts (locked with their accounts' members) at every
    checkpoint from the batch's earliest one. Contacts without checkpoints (a re-derive through
    the API) are left to derive's own settling."""
    ids = set(history)
    rows = {r["contact_id"]: r for r in store.settle_rows(conn, tenant_id, ids)}
    wanted = sorted({rows[c]["account_id"] for c in touched if c in rows and rows[c]["account_id"]})
    accounts = {a["account_id"]: a for a in store.lock_accounts(conn, tenant_id, wanted)}
    groups: dict[str, _Group] = {}
    for contact_id in sorted(touched):
        row = rows.get(contact_id)
        if row is None or not touched[contact_id]:
            continue
        account = accounts.get(row["account_id"]) if row["account_id"] else None
        key = f"a:{account['account_id']}" if account else f"c:{contact_id}"
        group = groups.get(key)
        if group is None:
            ids_in = (
                [c for c, r in rows.items() if r["account_id"] == account["account_id"]]
                if account
                else [contact_id]
            )
            group = groups[key] = _Group(account, {c: _member(rows[c], history, role_of)
                                                   for c in sorted(ids_in)}, {})  # fmt: skip
        group.applied[contact_id] = {(at, eid) for at, eid in touched[contact_id]}
        group.new[contact_id] = set(group.applied[contact_id])
    joined: list[str] = []
    for group in groups.values():
        _plan(group, joined)
    _rewind(conn, tenant_id, [g for g in groups.values() if g.late])
    settled = Settled()
    for group in groups.values():
        _run(group, mode, model, record, history_days, engaged_days)
        for contact_id, member in group.members.items():
            if contact_id in group.new or group.late:
                settled.contacts[contact_id] = member.state
                if contact_id not in touched:
                    settled.resettled.add(contact_id)
        if group.account is not None:
            settled.accounts[group.account["account_id"]] = group.account_state
    store.set_settled_account(conn, tenant_id, joined)
    return settled


def _member(row: dict, history: Mapping[str, list[EventFact]], role_of) -> _Member:
    events = sorted(history.get(row["contact_id"], []), key=_key)
    guess = role_of(row)
    return _Member(row, guess.role if guess else None, events, [_key(e) for e in events],
                   (row["stage"], row["stage_since"]))  # fmt: skip


def _plan(group: _Group, joined: list[str]) -> None:
    """Where the group settles from, and whether that is before evidence already settled."""
    account_id = group.account["account_id"] if group.account else None
    for contact_id, member in group.members.items():
        moved = account_id is not None and member.row["settled_account"] != account_id
        if moved:
            joined.append(contact_id)
        if moved or member.role != member.row["role"]:
            # Joined the account, or its buying role changed (profiles are not versioned: the
            # role known now holds for all its evidence), since it was last settled: all its
            # evidence is new to the group.
            group.new.setdefault(contact_id, set()).update(_key(e) for e in member.events)
    group.start = min(k for keys in group.new.values() for k in keys)
    # Late: an event after the start was settled before this batch (even one now new to the
    # group: it was settled without the account or with another role).
    group.late = any(
        _key(e) > group.start and _key(e) not in group.applied.get(contact_id, ())
        for contact_id, member in group.members.items()
        for e in member.events
    )
    group.account_state = (
        (group.account["stage"], group.account["stage_since"]) if group.account else (None, None)
    )
    # Late too: a stage moved after the start without an event (the time tick, a recompute, at
    # the clock's time): the new evidence comes before it, so the group re-settles from there and
    # the tick applies what time still changes afterwards.
    moved = [m.state[1] for m in group.members.values()] + [group.account_state[1]]
    group.late = group.late or any(at is not None and at > group.start[0] for at in moved)


def _rewind(conn: Connection, tenant_id: str, groups: list[_Group]) -> None:
    """Each subject of a late group back to its state just before the group's start."""
    if not groups:
        return
    contacts = store.stage_histories(
        conn, tenant_id, "contact", [c for g in groups for c in g.members]
    )
    accounts = store.stage_histories(
        conn, tenant_id, "account", [g.account["account_id"] for g in groups if g.account]
    )
    dropped: list[int] = []
    for group in groups:
        for contact_id, member in group.members.items():
            member.state = _state_before(contacts[contact_id], group.start, member.state, dropped)
        if group.account is not None:
            group.account_state = _state_before(
                accounts[group.account["account_id"]], group.start, group.account_state, dropped
            )
    store.delete_transitions(conn, tenant_id, dropped)


def _state_before(rows: list[dict], start: Key, current: State, dropped: list[int]) -> State:
    """The stage in effect just before ``start``; the derived transitions from ``start`` on
    (recorded after the newest manual change) go to ``dropped``."""
    manual = max((i for i, r in enumerate(rows) if r["actor"] is not None), default=-1)
    after = rows[manual + 1 :]  # derived moves since the newest manual change, as recorded
    gone = [r for r in after if (r["changed_at"], r["event_id"] or "") >= start]
    if not gone:
        return current
    dropped.extend(r["id"] for r in gone)
    kept = [r for r in after if (r["changed_at"], r["event_id"] or "") < start]
    if kept:
        last = max(kept, key=lambda r: ((r["changed_at"], r["event_id"] or ""), r["id"]))
    elif manual >= 0:
        last = rows[manual]
    else:
        return (None, None)
    return (last["to_stage"], last["changed_at"])


def _run(group, mode, model, record, history_days, engaged_days) -> None:
    checkpoints = sorted(
        (_key(e), contact_id)
        for contact_id, member in group.members.items()
        for e in member.events
        if _key(e) >= group.start
    )
    account = group.account
    for (at, event_id), contact_id in checkpoints:
        member = group.members[contact_id]
        until = (at, event_id)
        # One view of the account at this instant: its own evaluation below reads its business
        # events; a member's conditions see it without them, as they see the stored account.
        then = _account_at(group, until, history_days, engaged_days) if account else None
        view = replace(then, events=()) if then else None
        row = member.row
        seen = tuple(member.window(until, history_days))
        facts = ContactFacts(
            contact_id=contact_id,
            tenant_mode=mode,
            stage=member.state[0],
            score=score(seen, at),
            role=member.role,
            attributes=row["attributes"],
            tags=frozenset(row["tags"]),
            events=seen,
            account=view,
            created_at=row["created_at"],
        )
        for move in model.settle(facts, at):
            record("contact", contact_id, move, at, event_id or None)
            member.state = (move.to_stage, at)
        if account is not None:
            stages = [m.state[0] for m in group.members.values() if m.present(until)]
            move = evaluate_account(model, then, stages, at, group.activity(until, history_days))
            if move is not None:
                record("account", account["account_id"], move, at, event_id or None)
                group.account_state = (move.to_stage, at)


def _account_at(group, until, history_days, engaged_days) -> AccountFacts:
    """The account as it stood at checkpoint ``until``: members present then, their roles
    engaged in the window ending then, their scores then, their business events then."""
    account = group.account
    since = until[0] - timedelta(days=engaged_days)
    engaged = frozenset(
        m.role for m in group.members.values() if m.role and m.engaged(until, since)
    )
    scores = [m.score_at(until, history_days) for m in group.members.values()]
    return AccountFacts(
        account_id=account["account_id"],
        name=account["name"],
        stage=group.account_state[0],
        score=account_score([s for s in scores if s is not None], 0.0),
        roles_engaged=engaged,
        members=sum(1 for m in group.members.values() if m.present(until)),
        attributes=account["attributes"],
        events=group.business(until, history_days),
        created_at=account["created_at"],
    )
