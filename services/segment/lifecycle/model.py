"""A lifecycle model and its evaluation: which stage a contact or an account moves to, and why.

Models are built by ``grammar.load_model`` (or ``grammar.builtin_models``). No I/O and no clock
reads: ``now`` is always an argument, so every rule can be tested with tables of cases.

Semantics
---------
- **Forward on evidence**: the target is the highest funnel stage whose ``when`` holds; the contact
  moves only if it is above its current stage. A contact with no stage (or a stage the model does
  not know) enters the highest stage whose condition holds, so stages are skipped when later
  evidence exists (an order without prior clicks goes straight to action/revenue).
- **Never backwards** except by a ``regress`` rule whose ``from`` names the current stage. Regress
  rules are checked, in document order, only when no forward move applies.
- **Side stages** (e.g. ``lapsed``) are off the funnel: they are entered and left only by regress
  rules; forward evidence does not pull a contact out of a side stage.
- **Flags** say what a stage means to others (``stage_flags``; the known ones are
  ``shared.vocabulary.STAGE_FLAGS``): ``evaluating``, a buyer still comparing, whom outreach's
  no-discount guard keeps B2B promotions from; ``lapsed``, a side stage of lapsed customers.
  They never change how a contact moves.
- ``evaluate`` returns one move. Conditions such as ``stage_at_least`` depend on the current
  stage, so a second move may follow once the first is applied; ``settle`` applies moves until
  none is left.
- Events later than ``now`` are ignored (replays evaluate history as of ``now``); windows are
  inclusive: an event exactly ``within_days`` old counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.segment.facts import AccountFacts, ContactFacts, EventFact
from services.segment.lifecycle.conditions import (
    NO_HORIZONS,
    Condition,
    Context,
    Horizons,
    require_aware,
)


@dataclass(frozen=True)
class Transition:
    from_stage: str | None
    to_stage: str
    cause: str  # which rule held, human readable


@dataclass(frozen=True)
class Stage:
    name: str
    when: Condition
    title: str = ""


@dataclass(frozen=True)
class RegressRule:
    from_stages: tuple[str, ...]
    to_stage: str
    when: Condition


@dataclass(frozen=True)
class LifecycleModel:
    name: str
    title: str
    stages: tuple[Stage, ...]
    side_stages: tuple[str, ...] = ()
    regress: tuple[RegressRule, ...] = ()
    description: str = ""
    # (stage, its flags) for each stage, funnel or side, that declares any; in stage order.
    stage_flags: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_positions", {s.name: i for i, s in enumerate(self.stages)})

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def flags_of(self, stage: str) -> tuple[str, ...]:
        return dict(self.stage_flags).get(stage, ())

    def flagged(self, flag: str) -> tuple[str, ...]:
        """The stages that declare ``flag``, in order."""
        return tuple(name for name, flags in self.stage_flags if flag in flags)

    def horizons(self) -> Horizons:
        """What time alone can change in the model's stage and regress rules."""
        found = NO_HORIZONS
        for rule in (*self.stages, *self.regress):
            found = found | rule.when.horizons()
        return found

    def position(self, stage: str | None) -> int | None:
        """Funnel index of a stage; None for side stages, unknown names and None."""
        return self._positions.get(stage) if stage is not None else None

    def _highest(
        self, facts: ContactFacts, now: datetime, above: int | None
    ) -> tuple[int, str] | None:
        """(index, reason) of the highest funnel stage above ``above`` whose condition holds."""
        ctx = Context(facts, now, self)
        lowest = -1 if above is None else above
        for i in range(len(self.stages) - 1, lowest, -1):
            why = self.stages[i].when._check(ctx)
            if why is not None:
                return i, why
        return None

    def _regress(self, facts: ContactFacts, now: datetime) -> Transition | None:
        current = facts.stage
        ctx = Context(facts, now, self)
        for rule in self.regress:
            if current in rule.from_stages and rule.to_stage != current:
                why = rule.when._check(ctx)
                if why is not None:
                    return Transition(
                        current, rule.to_stage, f"regress {current} -> {rule.to_stage}: {why}"
                    )
        return None

    def evaluate(self, facts: ContactFacts, now: datetime) -> Transition | None:
        """The one move to make now, or None. Never reads the clock."""
        require_aware(now)
        current = facts.stage
        if current not in self.side_stages:
            hit = self._highest(facts, now, self.position(current))
            if hit is not None:
                stage = self.stages[hit[0]].name
                return Transition(current, stage, f"stage {stage}: {hit[1]}")
        return self._regress(facts, now)

    def settle(self, facts: ContactFacts, now: datetime) -> list[Transition]:
        """Apply ``evaluate`` until no move is left (stops before revisiting a stage)."""
        moves: list[Transition] = []
        seen = {facts.stage}
        while (move := self.evaluate(facts, now)) is not None and move.to_stage not in seen:
            moves.append(move)
            seen.add(move.to_stage)
            facts = replace(facts, stage=move.to_stage)
        return moves


def _account_as_contact(account: AccountFacts) -> ContactFacts:
    """The account seen through the contact grammar: its events, attributes, score and stage."""
    return ContactFacts(
        contact_id=f"account:{account.account_id}",
        tenant_mode="b2b",
        stage=account.stage,
        score=account.score,
        attributes=account.attributes,
        events=account.events,
        account=account,
        created_at=account.created_at,
    )


def evaluate_account(
    model: LifecycleModel,
    account: AccountFacts,
    member_stages: Iterable[str | None],
    now: datetime,
    activity: Iterable[EventFact] | None = None,
) -> Transition | None:
    """The B2B account's move: up to the highest stage reached by a member or by its own facts.

    The account's business facts are evaluated with the model's stage conditions, the account
    standing in for a contact (its events, attributes, score, stage; ``account:`` conditions see
    it too), so an order paid on the account means at least the stage whose rule names orders.
    Forward when the facts or the members are ahead; otherwise the model's regress rules, seen
    with ``activity`` (all its members' events, when given) as the account's events: an account
    lapses when none of its members acted, not when it merely placed no new order. An account in
    a side stage leaves it only by a regress rule.
    """
    require_aware(now)
    pseudo = _account_as_contact(account)
    lapsing = pseudo if activity is None else replace(pseudo, events=tuple(activity))
    current = account.stage
    if current in model.side_stages:
        return model._regress(lapsing, now)
    above = model.position(current)
    stages = list(member_stages)
    reached = [p for s in stages if (p := model.position(s)) is not None]
    best_member = max(reached, default=None)
    # Only stages above the current one matter, and the account's facts win a tie with members
    # (they explain more than "a member is there"): check the facts from that floor upwards.
    floor = max(0 if above is None else above + 1, 0 if best_member is None else best_member)
    hit = model._highest(pseudo, now, floor - 1)
    if hit is not None:
        index, cause = hit[0], f"account facts: stage {model.stages[hit[0]].name}: {hit[1]}"
    elif best_member is not None and (above is None or best_member > above):
        name = model.stages[best_member].name
        count = sum(1 for p in reached if p == best_member)
        index, cause = best_member, f"members reached {name} ({count} of {len(stages)} members)"
    else:
        return model._regress(lapsing, now) if current is not None else None
    return Transition(current, model.stages[index].name, cause)
