"""What a campaign's audience did afterwards, the outcomes the effect report counts (docs/domain.md
"Effect report"), stored in outreach's own tables (services share no tables).

- Stage advances, from ``siyu.stage-changes.v1`` (the projection's consumer calls
  ``record_advances``): a contact's change to a stage further along the funnel than the one it
  left, in the order of the tenant's model as its catalogue names it (side stages and moves back
  are not advances; a change of another model than the catalogue's, or before any catalogue,
  cannot be judged and is skipped). Keyed by (contact, stage, time): redelivery stores it once.
- Clicks (``link.clicked``: the tracked link names campaign, content and contact) and replies
  (``oa.message`` from an openid the audience knows), from ``siyu.signals.v1`` (shared/signals.py:
  ids and a few whitelisted attributes, never the message's text; outreach does not read the
  touchpoints) in a consumer group of their own (``siyu-outreach-effects``, a thread of the
  outreach worker), so a backlog here delays no other consumer. One row per event id:
  redelivery and replays store it once. A signal that cannot be read goes to the outreach
  dead letters (docs/domain.md "Effect report"). A reply from someone the audience does not know
  yet is not counted: nothing names its contact.

Erasure and tenant purges (docs/privacy.md): a row is stored only for a contact still in the
audience of a tenant not deleted. The erasure deletes the audience row with the person's
advances and events (services/outreach/erasure.py), so a redelivery or a replay of either topic
from the earliest offset (a new group, a reset) does not bring an erased person or a purged
tenant back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from psycopg import Connection
from psycopg_pool import ConnectionPool

from shared import messages
from shared.config import Settings
from shared.kafka.consumer import (
    ConsumerRunner,
    DeadLetterQueue,
    Message,
    PoisonMessage,
    create_consumer,
)
from shared.kafka.dlq_limit import DlqLimit
from shared.kafka.producer import create_producer
from shared.kafka.topics import OUTREACH_DLQ, SIGNALS

log = structlog.get_logger("siyu.outreach")

GROUP = "siyu-outreach-effects"
KINDS = {"link.clicked": "click", "oa.message": "reply"}


def live(conn: Connection, tenant: str, contact: str) -> bool:
    """Whether ``contact`` is in the audience of ``tenant`` and the tenant is not deleted: an
    erased person, a merged-away contact or a purged tenant's rows are never stored again."""
    return (
        conn.execute(
            "SELECT 1 FROM audience a WHERE a.tenant_id = %s AND a.contact_id = %s "
            "AND NOT EXISTS (SELECT 1 FROM deleted_tenants d WHERE d.tenant_id = a.tenant_id)",
            (tenant, contact),
        ).fetchone()
        is not None
    )


# --- stage advances ---------------------------------------------------------------------------


def advance(stages: list[str], from_stage: str | None, to_stage: str) -> bool:
    """Whether moving ``from_stage`` -> ``to_stage`` goes forward in the funnel ``stages``
    (in order; side stages are not in it). A first staging (no from stage) is not an advance."""
    if from_stage not in stages or to_stage not in stages:
        return False
    return stages.index(to_stage) > stages.index(from_stage)


def record_advances(conn: Connection, changes: Iterable[dict[str, Any]]) -> int:
    """Store the contacts' advances among ``changes`` (stage-change messages); return how many
    were new."""
    funnels: dict[str, tuple[str, list[str]] | None] = {}
    stored = 0
    for c in changes:
        if c["subject"] != "contact":
            continue
        tenant = c["tenant_id"]
        if tenant not in funnels:
            row = conn.execute(
                "SELECT model, stages FROM catalogue WHERE tenant_id = %s", (tenant,)
            ).fetchone()
            funnels[tenant] = (row["model"], list(row["stages"])) if row else None
        funnel = funnels[tenant]
        if funnel is None or funnel[0] != c["model"]:
            log.info("stage_change_not_judged", tenant_id=tenant, model=c["model"])
            continue
        if not advance(funnel[1], c["from_stage"], c["to_stage"]):
            continue
        if not live(conn, tenant, c["subject_id"]):  # erased, merged away, or tenant purged
            continue
        stored += conn.execute(
            "INSERT INTO stage_advances (tenant_id, contact_id, to_stage, changed_at, from_stage, "
            "model) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (tenant, c["subject_id"], c["to_stage"], c["changed_at"], c["from_stage"], c["model"]),
        ).rowcount
    return stored


# --- clicks and replies -----------------------------------------------------------------------


def decode(message: Message) -> dict[str, Any] | None:
    """A click or a reply as a row; None for the signals this consumer does not count (an add's
    welcome code); an unreadable signal goes to the dead letters."""
    try:
        signal = messages.decode(messages.SIGNAL, message.value)
    except Exception as exc:  # not JSON, not UTF-8 or not the contract: the DLQ says why
        raise PoisonMessage(message, f"not a valid signal: {str(exc)[:300]}") from exc
    if signal["type"] not in KINDS:
        return None
    attributes = signal["attributes"]
    click = signal["type"] == "link.clicked"
    return {
        "tenant_id": signal["tenant_id"],
        "event_id": signal["event_id"],
        "kind": KINDS[signal["type"]],
        "contact_id": attributes.get("contact_id") if click else None,
        "openid": signal["identity"]["openid"],
        "campaign_id": attributes.get("campaign_id"),
        "content_id": attributes.get("content_id"),
        "at": signal["occurred_at"],
    }


def record_events(conn: Connection, events: Iterable[dict[str, Any]]) -> int:
    """Store clicks naming a contact and replies from a known openid; return how many were new."""
    stored = 0
    for e in events:
        contact = e["contact_id"]
        if e["kind"] == "reply":
            row = conn.execute(
                "SELECT contact_id FROM audience WHERE tenant_id = %s AND openids @> ARRAY[%s] "
                "LIMIT 1",
                (e["tenant_id"], e["openid"]),
            ).fetchone() if e["openid"] else None  # fmt: skip
            contact = row["contact_id"] if row else None
        if not contact or not live(conn, e["tenant_id"], contact):
            continue
        stored += conn.execute(
            "INSERT INTO effect_events (tenant_id, event_id, kind, contact_id, campaign_id, "
            "content_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (e["tenant_id"], e["event_id"], e["kind"], contact,
             e["campaign_id"] if e["kind"] == "click" else None,
             e["content_id"] if e["kind"] == "click" else None, e["at"]),
        ).rowcount  # fmt: skip
    return stored


def make_process(pool: ConnectionPool):
    def process(batch) -> None:
        events = [d.payload for d in batch if d.payload is not None]
        if not events:
            return
        with pool.connection() as conn, conn.transaction():
            record_events(conn, events)

    return process


def build_runner(settings: Settings, pool: ConnectionPool, *, group: str = GROUP):
    """The consumer of clicks and replies (its own group on the signals topic)."""
    kafka = settings.kafka
    producer = create_producer(kafka, client_id="siyu-outreach-effects")
    return ConsumerRunner(
        create_consumer(kafka, group_id=group, client_id="siyu-outreach-effects"),
        topics=[kafka.topic(SIGNALS)],
        group=group,
        decode=decode,
        process=make_process(pool),
        dlq=DeadLetterQueue(producer, kafka.topic(OUTREACH_DLQ), group=group),
        dlq_limit=DlqLimit.of(kafka),
        max_batch=kafka.max_batch,
    )
