"""A run's plan: every recipient with the content it gets or the reason it gets none.

One code path for ``POST /campaigns/<id>/preview`` (nothing stored) and the worker (deliveries
stored from it), so a preview shows exactly what a run would do at that moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection

from services.outreach import audience, budget, holdout, store
from services.outreach.catalogue import tenant_catalogue
from services.outreach.model import outreach_settings
from services.outreach.policies import Decision, Item, Policy, Recipient, decide, guard_of


class PlanError(Exception):
    """The campaign cannot run as defined (e.g. its content is gone): the run fails with it."""


@dataclass(frozen=True)
class Campaign:
    tenant_id: str
    campaign_id: str
    channel: str
    audience: dict[str, Any]
    content: dict[str, Any]
    trigger: dict[str, Any]
    quiet_hours: dict[str, str] | None
    allow_b2b_promotion: bool
    status: str
    holdout_percent: int = 0  # services/outreach/holdout.py

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Campaign:
        return cls(
            tenant_id=row["tenant_id"],
            campaign_id=row["campaign_id"],
            channel=row["channel"],
            audience=row["audience"],
            content=row["content"],
            trigger=row["trigger"],
            quiet_hours=row["quiet_hours"],
            allow_b2b_promotion=row["allow_b2b_promotion"],
            status=row["status"],
            holdout_percent=row.get("holdout_percent") or 0,
        )

    @property
    def series(self) -> bool:
        return bool(self.content.get("series"))

    @property
    def content_ids(self) -> list[str]:
        return list(self.content.get("series") or [self.content["item"]])


def tenant_settings(conn: Connection, tenant_id: str) -> dict[str, Any]:
    return outreach_settings(store.tenant_settings(conn, tenant_id))


def items(conn: Connection, campaign: Campaign) -> list[Item]:
    """The campaign's content in its order; archived items are skipped, missing ones refused."""
    ids = campaign.content_ids
    rows = {r["content_id"]: r for r in store.content_items(conn, campaign.tenant_id, ids)}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise PlanError(f"content not found: {', '.join(missing)}")
    found = [
        Item(
            i,
            rows[i]["promotional"],
            frozenset(rows[i]["stages"]),
            frozenset(rows[i]["roles"]),
            rows[i]["format"],
        )
        for i in ids
        if rows[i]["status"] == "active"
    ]
    if not found:
        raise PlanError("every content item of the campaign is archived")
    return found


def policy(conn: Connection, campaign: Campaign, now: datetime | None = None) -> Policy:
    """The tenant's caps and quotas, the platform budget's limit in the period holding ``now``
    (WeCom group sends), and the guard its model's stage flags make (the catalogue segment
    publishes; the tenant's default when the model flags no stage)."""
    settings = tenant_settings(conn, campaign.tenant_id)
    catalogue = tenant_catalogue(conn, campaign.tenant_id)
    return Policy(
        channel=campaign.channel,
        caps=settings["caps"],
        quotas=settings["quotas"],
        allow_b2b_promotion=campaign.allow_b2b_promotion,
        guard=guard_of(catalogue and catalogue.flags, settings["guard_unflagged_model"]),
        budget=(
            budget.limit(budget.mode_of(settings["quotas"]), now)
            if now is not None and campaign.channel in budget.CHANNELS else None
        ),
    )  # fmt: skip


def budget_period(conn: Connection, campaign: Campaign, now: datetime):
    """The platform budget's period holding ``now`` (None: the channel has no budget)."""
    if campaign.channel not in budget.CHANNELS:
        return None
    mode = budget.mode_of(tenant_settings(conn, campaign.tenant_id)["quotas"])
    return budget.period(mode, now)  # China time, as WeCom counts


def plan(
    conn: Connection, campaign: Campaign, now: datetime, scope: audience.Scope | None = None
) -> Iterator[tuple[Recipient, Decision]]:
    """Every recipient of a run at ``now`` with its decision, in recipient order (streamed)."""
    content = items(conn, campaign)
    rules = policy(conn, campaign, now)
    period = budget_period(conn, campaign, now)
    tag = campaign.audience.get("oa_tag_id")
    if tag is not None:
        tag_recipient = Recipient(kind="tag", id=str(tag), address=str(tag),
                                  mode=store.tenant_mode(conn, campaign.tenant_id))  # fmt: skip
        yield tag_recipient, decide(tag_recipient, content, rules, now, series=False)
        return
    if campaign.channel == "wecom_group":
        recipients = audience.groups(
            conn, campaign.tenant_id, campaign.campaign_id, campaign.audience, now, scope, period
        )
    else:
        recipients = audience.contacts(
            conn,
            campaign.tenant_id,
            campaign.campaign_id,
            campaign.audience,
            campaign.channel,
            now,
            scope,
            period,
        )
    for r in recipients:
        decision = decide(r, content, rules, now, series=campaign.series)
        # The holdout: contacts this run would send to, kept out (its control group).
        if (
            decision.send
            and r.kind == "contact"
            and holdout.held_out(
                campaign.tenant_id, campaign.campaign_id, r.id, campaign.holdout_percent
            )
        ):
            decision = Decision(decision.content_id, holdout.REASON)
        yield r, decision
