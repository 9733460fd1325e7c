"""Who may receive what, decided per recipient at send time (pure: facts in, a reason out).

Every exclusion has a reason, recorded on the delivery and counted in previews. The checks run
in a fixed order and the first that fails is the reason:

1. the campaign's own exclusion rules (``excluded:<rule>``);
2. reach: the channel address exists and the person is still there (``no_wecom_id``,
   ``no_openid``, ``deleted_contact``, ``unsubscribed``, ``group_dismissed``);
   an OA tag (mass send by tag) is the platform's to resolve: only the guard applies to it
   (``no_discount_unknown_audience`` for a B2B tenant's promotion);
3. content: something in the item or series fits (``series_finished``, ``no_fitting_content``),
   and a channel that carries notices only gets a notice (``not_a_notice``: an OA template
   campaign active since before that rule, whose item is marketing; services/outreach/notices.py);
4. the B2B no-discount guard: promotional content never reaches a B2B buyer (or a group with
   one) whose stage or account stage the tenant's lifecycle model flags ``evaluating``
   (``no_discount_comparing``; the stages are the catalogue's, never names written here: see
   ``guard_of``), nor, when the model flags no stage at all and the tenant's default says so,
   any B2B contact (``no_discount_unflagged_model``), nor by default any B2B contact
   (``no_discount_b2b``; an admin override lifts this one only);
5. frequency caps of the tenant, counting every exposure on every channel, group sends
   included (``cap_day``, ``cap_week``; groups: ``group_cap_day``, ``group_cap_week``);
6. platform quotas (docs/platform.md): ``platform_budget`` (WeCom group sends: the corp's
   budget per customer or customer group for the period, services/outreach/budget.py),
   ``outside_cs_window``, ``quota_oa_custom``, ``quota_oa_mass_month``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.outreach import notices
from shared.vocabulary import EVALUATING

# The tenant's default for a model whose stages declare no flags (outreach setting
# ``guard_unflagged_model``; or a list of the stage names to treat as evaluating).
BLOCK_ALL_B2B_PROMOTIONS = "block_all_b2b_promotions"
ALLOW = "allow"
UNFLAGGED_DEFAULTS = (BLOCK_ALL_B2B_PROMOTIONS, ALLOW)


@dataclass(frozen=True)
class Recipient:
    kind: str  # contact | group | tag (an OA user tag: the platform picks its followers)
    id: str
    address: str | None  # external_userid, openid or chat_id
    mode: str | None = None
    stage: str | None = None
    account_stage: str | None = None
    role: str | None = None
    oa_follower: bool | None = None
    wecom_contact: bool | None = None
    oa_last_message_at: datetime | None = None
    dismissed: bool = False  # groups
    excluded_by: tuple[str, ...] = ()
    exposures_day: int = 0
    exposures_week: int = 0
    quota_used: int = 0  # this channel's platform quota, in its window
    budget_used: int = 0  # WeCom group sends it received in the budget's period
    received: frozenset[str] = frozenset()  # content ids this campaign already sent it
    # Groups: the members' facts that matter to the guard.
    members: Sequence[Recipient] = field(default_factory=tuple)
    sender: str | None = None  # groups: the owner


@dataclass(frozen=True)
class Item:
    content_id: str
    promotional: bool
    stages: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    format: str | None = None  # None: unknown, so not a notice

    @property
    def notice(self) -> bool:
        return self.format is not None and notices.is_notice(self.format, self.promotional)

    def fits(self, r: Recipient) -> bool:
        if r.kind == "group":
            return True  # a group mixes stages and roles: the series order decides
        stage_ok = not self.stages or bool({r.stage, r.account_stage} & self.stages)
        return stage_ok and (not self.roles or r.role in self.roles)


@dataclass(frozen=True)
class Guard:
    """The stages in which a B2B buyer is still evaluating (promotions never reach it)."""

    evaluating: frozenset[str] = frozenset()
    every_stage: bool = False  # an unflagged model under "block_all_b2b_promotions"


def guard_of(flags: Mapping[str, Sequence[str]] | None, unflagged: str | Sequence[str]) -> Guard:
    """The guard for a tenant's model: the stages its catalogue flags ``evaluating``.

    ``flags`` is the catalogue's ``{stage: flags}`` (None: no catalogue, or one from before
    stages had flags). A model that flags any stage has said what its stages mean, even with no
    evaluating stage (AARRR); one that flags none is guarded by the tenant's default
    ``unflagged``: every B2B promotion blocked, none (``allow``), or the stages listed. Flags not
    known yet block every B2B promotion whatever the default: the model may be AISCEAS, whose
    evaluating stages an ``allow`` must not open (segment republishes every catalogue at start).
    """
    if flags is None:
        return Guard(every_stage=True)
    if any(flags.values()):
        return Guard(frozenset(stage for stage, f in flags.items() if EVALUATING in f))
    if unflagged == BLOCK_ALL_B2B_PROMOTIONS:
        return Guard(every_stage=True)
    if unflagged == ALLOW:
        return Guard()
    return Guard(frozenset(unflagged))


@dataclass(frozen=True)
class Policy:
    channel: str
    caps: dict[str, int]
    quotas: dict[str, int]
    allow_b2b_promotion: bool = False
    guard: Guard = Guard(every_stage=True)  # none known: the safe default
    budget: int | None = None  # WeCom group sends one recipient may get in the period


@dataclass(frozen=True)
class Decision:
    content_id: str | None
    reason: str | None  # None: send

    @property
    def send(self) -> bool:
        return self.reason is None


def pick(items: Sequence[Item], r: Recipient, *, series: bool) -> tuple[Item | None, str | None]:
    """The item this recipient gets: the campaign's one item, or the first item of the series
    it has not received that fits its stage and role."""
    if not series:
        return items[0], None
    unseen = [i for i in items if i.content_id not in r.received]
    if not unseen:
        return None, "series_finished"
    for item in unseen:
        if item.fits(r):
            return item, None
    return None, "no_fitting_content"


def _unreachable(r: Recipient, channel: str) -> str | None:
    if r.kind == "tag":
        return None
    if r.kind == "group":
        return "group_dismissed" if r.dismissed else None
    if channel == "wecom_single":
        if not r.address:
            return "no_wecom_id"
        return "deleted_contact" if r.wecom_contact is False else None
    if not r.address:
        return "no_openid"
    return "unsubscribed" if r.oa_follower is False else None


def _evaluating(r: Recipient, guard: Guard) -> bool:
    return r.mode == "b2b" and bool({r.stage, r.account_stage} & guard.evaluating)


def _guard(r: Recipient, policy: Policy) -> str | None:
    if r.kind == "tag" and r.mode == "b2b":
        # Who follows under the tag is the platform's to know: a buyer still comparing may be
        # among them, which no override may allow.
        return "no_discount_unknown_audience"
    people = list(r.members) if r.kind == "group" else [r]
    if any(_evaluating(p, policy.guard) for p in people):
        return "no_discount_comparing"
    if policy.guard.every_stage and any(p.mode == "b2b" for p in people):
        # The model does not say which stages are still comparing: no override may allow it.
        return "no_discount_unflagged_model"
    if not policy.allow_b2b_promotion and any(p.mode == "b2b" for p in people):
        return "no_discount_b2b"
    return None


def promotion_refused(r: Recipient, policy: Policy) -> str | None:
    """Why promotional content may not reach ``r`` (the guard of step 4), or None; welcomes on
    add (services/outreach/welcome_choice.py) apply it to the content they choose."""
    return _guard(r, policy)


def _capped(r: Recipient, caps: dict[str, int]) -> str | None:
    prefix = "group_" if r.kind == "group" else ""
    kind = "group" if r.kind == "group" else "contact"
    if r.exposures_day >= caps[f"{kind}_per_day"]:
        return f"{prefix}cap_day"
    if r.exposures_week >= caps[f"{kind}_per_week"]:
        return f"{prefix}cap_week"
    return None


def _quota(r: Recipient, policy: Policy, now: datetime) -> str | None:
    q = policy.quotas
    if policy.budget is not None and r.budget_used >= policy.budget:
        return "platform_budget"
    if policy.channel == "oa_custom":
        window = timedelta(hours=q["oa_custom_window_hours"])
        if r.oa_last_message_at is None or now - r.oa_last_message_at > window:
            return "outside_cs_window"
        if r.quota_used >= q["oa_custom_per_window"]:
            return "quota_oa_custom"
    if policy.channel == "oa_mass" and r.quota_used >= q["oa_mass_per_month"]:
        return "quota_oa_mass_month"
    return None


def decide(
    r: Recipient, items: Sequence[Item], policy: Policy, now: datetime, *, series: bool
) -> Decision:
    if r.excluded_by:
        return Decision(None, f"excluded:{r.excluded_by[0]}")
    reason = _unreachable(r, policy.channel)
    if reason:
        return Decision(None, reason)
    item, reason = pick(items, r, series=series)
    if item is None:
        return Decision(None, reason)
    if policy.channel in notices.NOTICE_ONLY_CHANNELS and not item.notice:
        return Decision(item.content_id, "not_a_notice")
    if item.promotional:
        reason = _guard(r, policy)
        if reason:
            return Decision(item.content_id, reason)
    if r.kind == "tag":
        return Decision(item.content_id, None)  # caps and quotas are per person: the platform's
    reason = _capped(r, policy.caps) or _quota(r, policy, now)
    return Decision(item.content_id, reason)


class Tally:
    """Counts for previews and run stats, kept as decisions stream by: recipients, to send,
    excluded by reason, people reached (a group reaches its members; distinct people across
    groups)."""

    def __init__(self) -> None:
        self.recipients = 0
        self.sending = 0
        self.excluded: dict[str, int] = {}
        self.reached: set[str] = set()

    def add(self, r: Recipient, d: Decision) -> None:
        self.recipients += 1
        if not d.send:
            self.excluded[d.reason] = self.excluded.get(d.reason, 0) + 1
            return
        self.sending += 1
        if r.kind == "group":  # members by external_userid: known or not, each once
            self.reached.update(f"ext:{m.address}" for m in r.members)
        elif r.kind == "tag":
            pass  # the platform's count arrives as MASSSENDJOBFINISH, through ingest
        else:
            self.reached.add(r.id)

    def result(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "to_send": self.sending,
            "excluded": dict(sorted(self.excluded.items())),
            "people_reached": len(self.reached),
        }
