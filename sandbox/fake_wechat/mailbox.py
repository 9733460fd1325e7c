"""What the fake's sending APIs accepted (sandbox/fake_wechat/sending.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

DAY = 86400
MONTH = 30 * DAY


@dataclass
class Sent:
    """One accepted send: a WeCom mass-message task, a WeCom app message to staff (kind "app",
    ``targets`` the userids) or an OA message."""

    msgid: str
    api: str  # wecom | oa
    kind: str  # wecom: single | group; oa: template | custom | mass
    tenant_id: str
    owner: str  # corp_id or app_id
    at: float
    body: dict[str, Any]
    # WeCom: sender userid -> targets (external_userid or chat_id) -> status when confirmed.
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)  # OA: openids reached; app: userids
    # WeCom group sends: who created it and how (0 the corp, through the API or the admin;
    # 1 a member's own, sandbox/fake_wechat/budget.py), as get_groupmsg_list_v2 lists them.
    creator: str | None = None
    create_type: int = 0
    # WeCom tasks (sandbox/fake_wechat/group_tasks.py): members who confirmed (``/_fake``) or
    # were cancelled, by time; the reminders sent.
    confirmed: dict[str, float] = field(default_factory=dict)
    cancelled: dict[str, float] = field(default_factory=dict)
    reminds: list[float] = field(default_factory=list)
    # (userid, target) whose status 1 still waits on the budget, decided when the member sends
    # (sandbox/fake_wechat/budget.py settle): 1, or 3 past the limit.
    unsettled: set[tuple[str, str]] = field(default_factory=set)

    def summary(self, now: float, confirm_delay: float) -> dict[str, Any]:
        out = {
            "msgid": self.msgid,
            "api": self.api,
            "kind": self.kind,
            "tenant": self.tenant_id,
            "at": self.at,
            "body": self.body,
        }
        if self.api == "wecom" and self.kind != "app":  # app messages need no confirmation
            out["confirmed"] = now >= self.at + confirm_delay
            out["tasks"] = self.tasks
        else:
            out["targets"] = self.targets
        return out


@dataclass
class Mailbox:
    sent: list[Sent] = field(default_factory=list)
    by_id: dict[str, Sent] = field(default_factory=dict)
    dedupe: dict[tuple[str, str], str] = field(default_factory=dict)  # (owner, key) -> msgid
    received: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # per person
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    unsettled: list[Sent] = field(default_factory=list)  # group sends with targets unsettled

    def add(self, sent: Sent) -> Sent:
        self.sent.append(sent)
        self.by_id[sent.msgid] = sent
        if sent.unsettled:
            self.unsettled.append(sent)
        return sent

    def times(self, owner: str, person: str, since: float) -> int:
        stamps = self.received.setdefault((owner, person), [])
        stamps[:] = [t for t in stamps if t > since - MONTH]  # keep a month, no more
        return sum(1 for t in stamps if t > since)

    def stamp(self, owner: str, person: str, at: float) -> None:
        self.received.setdefault((owner, person), []).append(at)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter):010d}"
