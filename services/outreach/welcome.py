"""Welcome on add (docs/domain.md "Welcome on add"): when a customer adds a member, WeCom's add
callback carries a WelcomeCode valid for 20 s; outreach sends the welcome with it.

Its own consumer group (``siyu-outreach-welcome``, one thread of the outreach worker) reads the
touchpoints topic, so a welcome never waits behind the segment's lag or the projection. Decode
looks at the raw bytes first: only ``wecom.contact.added`` touchpoints with a ``welcome_code``
are parsed, everything else is skipped without a JSON parse (500 touchpoints/s of other traffic).

For each add (the adds of a batch in parallel, each its own short transactions):
1. claim the code: a ``welcomes`` row keyed by (tenant, welcome_code), committed before anything
   is called, so a redelivered or duplicated touchpoint sends nothing again (at most once: a
   crash between the claim and the call loses that welcome, it never doubles it);
2. past 20 s after the callback's CreateTime (the envelope's ``occurred_at``) it is ``missed``
   and never sent late;
3. choose the content (services/outreach/welcome_choice.py) from the channel code whose state
   the add carries (or the tenant's ``default_welcome``), by the contact's stage and role when
   outreach's audience knows it; build text and at most 9 attachments from its WeCom payload with
   tracked links (services/outreach/payloads.py) and call ``send_welcome_msg``;
4. 41051 (the welcome was already delivered) ends it as ``already_sent``; 41096 (another app is
   sending it) and outages are retried with a short back-off inside the window only; any other
   error is ``failed``, errcode and all;
5. mark the code's tags on the contact for the member (``mark_tag``), once, with the claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import channel_codes, metrics, payloads, store
from services.outreach.catalogue import tenant_catalogue
from services.outreach.model import outreach_settings
from services.outreach.policies import Item, Policy, Recipient, guard_of
from services.outreach.welcome_choice import choose
from shared.envelope import Touchpoint, decode_touchpoint
from shared.kafka.consumer import Decoded, Message, PoisonMessage
from shared.links import LinkSigner
from shared.tenants import TenantRegistry
from shared.wechat import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach.welcome")

GROUP = "siyu-outreach-welcome"
ADDED = "wecom.contact.added"
WINDOW = timedelta(seconds=20)  # WeCom accepts the code this long after the add callback
ALREADY_SENT, BEING_SENT = 41051, 41096
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)  # 41096 and outages, while the window lasts
MAX_ATTACHMENTS = 9
PARALLEL = 8  # adds of one batch sent at once: one slow retry must not make the others late
CHANNEL = "wecom_welcome"  # the policy's channel name (no caps or quotas apply to a welcome)

_ADDED = f'"type":"{ADDED}"'.encode()
_CODE = b'"welcome_code":"'


def relevant(value: bytes) -> bool:
    """A touchpoint's JSON (compact, as ingest writes it) that may be an add with a code."""
    return _ADDED in value and _CODE in value


def decode(message: Message) -> Touchpoint | None:
    if not relevant(message.value):
        return None
    try:
        tp = decode_touchpoint(message.value)
    except Exception as exc:  # the segment's DLQ keeps the same message: say it here too
        raise PoisonMessage(message, f"not a valid touchpoint: {exc}") from exc
    if tp.type != ADDED or not tp.attributes.get("welcome_code"):
        return None
    return tp


def _now() -> datetime:
    return datetime.now(UTC)


class Welcomer:
    """The process step of the welcome consumer (and of tests and the benchmark, directly)."""

    def __init__(self, pool: ConnectionPool, clients, tenants: TenantRegistry,
                 signer: LinkSigner | None, public_url: str, *,
                 clock: Callable[[], datetime] = _now,
                 sleep: Callable[[float], None] = time.sleep):  # fmt: skip
        self.pool, self.clients, self.tenants = pool, clients, tenants
        self.signer, self.public_url = signer, public_url
        self.clock, self.sleep = clock, sleep
        self._threads = ThreadPoolExecutor(PARALLEL, thread_name_prefix="welcome")

    def process(self, batch: list[Decoded[Touchpoint | None]]) -> None:
        adds = [d.payload for d in batch if d.payload is not None]
        if len(adds) == 1:
            self.handle(adds[0])
        elif adds:
            for future in [self._threads.submit(self.handle, tp) for tp in adds]:
                future.result()  # a database outage raises here: the runner retries the batch

    # --- one add --------------------------------------------------------------------------

    def handle(self, tp: Touchpoint) -> str:
        """Claim, choose, send, record; returns the status (``duplicate``: claimed before)."""
        tenant_id, attrs = tp.tenant_id, tp.attributes
        code, state = attrs["welcome_code"], attrs.get("state") or None
        ext, staff = tp.identity.external_userid, tp.identity.staff_userid
        at = tp.occurred_at  # the callback's CreateTime
        with self.pool.connection() as conn:  # committed before WeCom is called
            claimed = conn.execute(
                "INSERT INTO welcomes (tenant_id, welcome_code, event_id, external_userid, "
                "staff_userid, state, callback_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (tenant_id, code, tp.event_id, ext, staff, state, at),
            ).rowcount
            if not claimed:
                return "duplicate"
            # The add, counted once (the claim's transaction) for the code's per-staff daily cap;
            # the leader's next tick takes a capped member out of the config (apply_caps), so
            # no WeCom call holds this transaction or the welcome.
            if state and staff:
                channel_codes.record_add(conn, tenant_id, state, staff, at)
        with self.pool.connection() as conn:
            channel_code = self._code(conn, tenant_id, state)
            outcome = self._prepare(conn, tp, channel_code)
        if "body" in outcome:  # no transaction is open while WeCom answers
            body, client = outcome.pop("body"), outcome.pop("client")
            outcome.update(self._send(client, body, at + WINDOW))
        if channel_code and channel_code["tags"] and ext and staff:
            outcome.update(self._mark_tags(tenant_id, staff, ext, channel_code["tags"]))
        self._record(tp, code, channel_code, outcome)
        return outcome["status"]

    def _code(self, conn, tenant_id: str, state: str | None) -> dict[str, Any] | None:
        if not state:
            return None
        return conn.execute(
            "SELECT code_id, tags, welcome_content FROM channel_codes WHERE tenant_id = %s "
            "AND state = %s AND kind = 'contact' AND status = 'active'",
            (tenant_id, state),
        ).fetchone()

    def _prepare(self, conn, tp: Touchpoint, channel_code: dict | None) -> dict[str, Any]:
        """The outcome when nothing is to be sent, else the ``body`` and ``client`` to send."""
        if not tp.identity.external_userid:
            return {"status": "failed", "error": "no external_userid on the add"}
        if self.clock() > tp.occurred_at + WINDOW:
            return {"status": "missed", "reason": "received_after_window"}
        tenant_id, ext = tp.tenant_id, tp.identity.external_userid
        client = self.clients.wecom(tenant_id)
        if client is None:
            return {"status": "failed", "error": "channel_unavailable: no WeCom client"}
        settings = outreach_settings(store.tenant_settings(conn, tenant_id))
        ids = list(channel_code["welcome_content"]) if channel_code else settings["default_welcome"]
        contact = conn.execute(
            "SELECT contact_id, mode, stage, account_stage, role FROM audience "
            "WHERE tenant_id = %s AND external_userids @> ARRAY[%s] "
            "ORDER BY updated_at DESC LIMIT 1",
            (tenant_id, ext),
        ).fetchone()
        r = _recipient(contact, ext, store.tenant_mode(conn, tenant_id))
        rows = {
            row["content_id"]: row
            for row in conn.execute(
                "SELECT content_id, format, promotional, stages, roles, payloads FROM content "
                "WHERE tenant_id = %s AND content_id = ANY(%s) AND status = 'active'",
                (tenant_id, ids),
            )
        }
        items = [
            _item(rows[i]) for i in ids if i in rows and (rows[i]["payloads"] or {}).get("wecom")
        ]
        catalogue = tenant_catalogue(conn, tenant_id)
        policy = Policy(
            channel=CHANNEL, caps={}, quotas={},
            # The code's content is chosen for its channel: a B2B contact may get a promotion
            # unless the guard's evaluating stages (or an unflagged model) refuse it.
            allow_b2b_promotion=True,
            guard=guard_of(catalogue and catalogue.flags, settings["guard_unflagged_model"]),
        )  # fmt: skip
        choice = choose(items, r, policy, known=contact is not None)
        base = {"contact_id": contact["contact_id"] if contact else None}
        if choice.content_id is None:
            return {**base, "status": "no_content", "reason": choice.reason}
        try:
            body = self._body(tp, rows[choice.content_id]["payloads"]["wecom"], choice.content_id,
                              channel_code, base["contact_id"])  # fmt: skip
        except payloads.BadContent as exc:
            return {**base, "content_id": choice.content_id, "status": "failed", "error": str(exc)}
        return {**base, "content_id": choice.content_id, "body": body, "client": client}

    def _body(self, tp: Touchpoint, payload: dict, content_id: str, channel_code, contact_id):
        track = payloads.tracker(
            self.signer, self.public_url, tenant_id=tp.tenant_id,
            campaign_id=f"welcome:{channel_code['code_id'] if channel_code else 'default'}",
            content_id=content_id, identity_kind="external_userid",
            identity_value=tp.identity.external_userid, contact_id=contact_id,
        )  # fmt: skip
        body = payloads.build(payloads.wecom, payload, track)
        if body.get("attachments"):
            body["attachments"] = body["attachments"][:MAX_ATTACHMENTS]
        return {"welcome_code": tp.attributes["welcome_code"], **body}

    def _send(self, client, body: dict, deadline: datetime) -> dict[str, Any]:
        attempts = 0
        while True:
            attempts += 1
            called_at = self.clock()
            done = {"attempts": attempts, "called_at": called_at}
            try:
                client.send_welcome_msg(body)
                return {**done, "status": "sent"}
            except WeComError as exc:
                done.update(errcode=exc.errcode, error=str(exc)[:500])
                if exc.errcode == ALREADY_SENT:
                    return {**done, "status": "already_sent"}
                again = exc.errcode == BEING_SENT or isinstance(exc, WeComUnavailable | RateLimited)
                if not again:
                    return {**done, "status": "failed"}
            delay = BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
            if self.clock() + timedelta(seconds=delay) >= deadline:
                return {**done, "status": "missed", "reason": "retries_outlasted_window"}
            self.sleep(delay)

    def _mark_tags(self, tenant_id: str, staff: str, ext: str, tags: list[str]) -> dict:
        client = self.clients.wecom(tenant_id)
        if client is None:
            return {"tag_status": "failed"}
        for attempt in (1, 2):  # one retry of an outage; a refusal is recorded as it is
            try:
                client.mark_tag(staff, ext, list(tags))
                metrics.WELCOME_TAGS.labels(tenant_id, "marked").inc()
                return {"tag_status": "marked"}
            except WeComError as exc:
                if attempt == 1 and isinstance(exc, WeComUnavailable | RateLimited):
                    continue
                log.warning("welcome_mark_tag_failed", tenant_id=tenant_id, errcode=exc.errcode)
                metrics.WELCOME_TAGS.labels(tenant_id, "failed").inc()
                return {"tag_status": "failed", "tag_errcode": exc.errcode}
        return {"tag_status": "failed"}  # pragma: no cover

    def _record(self, tp: Touchpoint, code: str, channel_code, outcome: dict) -> None:
        called_at = outcome.get("called_at")
        latency = (called_at - tp.occurred_at).total_seconds() if called_at else None
        status = outcome["status"]
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE welcomes SET status = %s, reason = %s, errcode = %s, error = %s, "
                "attempts = %s, called_at = %s, latency_ms = %s, code_id = %s, contact_id = %s, "
                "content_id = %s, tags = %s, tag_status = %s, tag_errcode = %s "
                "WHERE tenant_id = %s AND welcome_code = %s",
                (status, outcome.get("reason"), outcome.get("errcode"), outcome.get("error"),
                 outcome.get("attempts", 0), called_at,
                 None if latency is None else round(latency * 1000),
                 channel_code["code_id"] if channel_code else None, outcome.get("contact_id"),
                 outcome.get("content_id"), list(channel_code["tags"]) if channel_code else [],
                 outcome.get("tag_status"), outcome.get("tag_errcode"), tp.tenant_id, code),
            )  # fmt: skip
        metrics.WELCOMES.labels(tp.tenant_id, status).inc()
        if latency is not None:
            metrics.WELCOME_LATENCY.labels(tp.tenant_id).observe(max(latency, 0.0))
        log.info("welcome", tenant_id=tp.tenant_id, status=status, errcode=outcome.get("errcode"),
                 latency_s=latency, code_id=channel_code and channel_code["code_id"])  # fmt: skip


def _recipient(contact: dict | None, ext: str, tenant_mode: str | None) -> Recipient:
    if contact is None:  # new to outreach: the tenant's mode, no stage or role
        return Recipient(kind="contact", id=f"ext:{ext}", address=ext, mode=tenant_mode)
    return Recipient(kind="contact", id=contact["contact_id"], address=ext, mode=contact["mode"],
                     stage=contact["stage"], account_stage=contact["account_stage"],
                     role=contact["role"])  # fmt: skip


def _item(row: dict[str, Any]) -> Item:
    return Item(row["content_id"], row["promotional"], frozenset(row["stages"] or ()),
                frozenset(row["roles"] or ()), row["format"])  # fmt: skip


def process_of(welcomer: Welcomer) -> Callable[[list[Decoded[Touchpoint | None]]], None]:
    return welcomer.process
