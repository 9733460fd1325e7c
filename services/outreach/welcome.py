"""Welcome on add (docs/domain.md "Welcome on add"): when a customer adds a member, WeCom's add
callback carries a WelcomeCode valid for 20 s; outreach sends the welcome with it.

Its own consumer group (``siyu-outreach-welcome``, one thread of the outreach worker) reads the
signals topic (shared/signals.py: ingest writes an add's ids, code and state beside its
touchpoint; outreach never reads raw touchpoints), so a welcome never waits behind the segment's
lag or the projection. ``decode`` looks at the raw bytes first: only ``wecom.contact.added`` and
``wecom.contact.half_added`` signals are parsed (a half-add, 外部联系人免验证添加成员, may carry
the WelcomeCode: docs/platform.md "Welcome on add"), clicks and replies are skipped without a
JSON parse. ``decode`` (and ``add_of`` for a touchpoint handed in by tests) is the one place
that makes an ``Add``.

For each add (the adds of a batch in their own small thread pool; the batch waits no longer than
its window, so a slow WeCom does not hold the consumer):
1. count it for the channel code's daily cap, once per event id and once per (code, member,
   customer, tenant-local day), so a half-add and its full add count once (``welcome_adds``),
   with or without a WelcomeCode, and queue the code's tags on that row (``tag_status``
   pending): an add without a WelcomeCode, or whose welcome failed, still gets them;
2. claim the code: a ``welcomes`` row keyed by (tenant, welcome_code), committed before anything
   is called, so a redelivered or duplicated touchpoint sends nothing again. Everything after the
   claim is caught and ends in a final status; a row left ``claimed`` (the process died) is turned
   ``missed`` (``lost_after_claim``) by ``step`` after a minute: at most once, never doubled;
3. each call attempt is made only while the window (the callback's CreateTime, the envelope's
   ``occurred_at``, plus 20 s, less MARGIN for clock skew) lasts: the shared rate limiter's slot
   is taken only if its wait fits, the HTTP timeout is what remains, and a missed welcome is never
   sent late;
4. choose the content (services/outreach/welcome_choice.py) from the channel code whose state
   the add carries (or the tenant's ``default_welcome``); build text and at most 9 attachments
   with tracked links (services/outreach/payloads.py); an image is sent only by a media id the
   leader uploaded ahead (``refresh_media``): nothing is downloaded inside the 20 s;
5. 41051 ends it as ``already_sent``; 41096 and outages are retried with a short back-off inside
   the window only; 45009 (retry after 120 s) and any other error are ``failed``;
6. the tags queued in 1. are marked by the worker loop's ``step`` with back-off, never inside
   the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import channel_codes, media, metrics, payloads, store
from services.outreach.catalogue import tenant_catalogue
from services.outreach.model import outreach_settings
from services.outreach.payloads import BadContent
from services.outreach.policies import Item, Policy, Recipient, guard_of
from services.outreach.rate_limits import SharedRateLimiter, SlotTooLate, prepaid
from services.outreach.welcome_choice import choose
from shared import messages
from shared.envelope import Touchpoint
from shared.kafka.consumer import Decoded, Message, PoisonMessage
from shared.links import LinkSigner
from shared.privacy import identity_hash
from shared.tenants import TenantRegistry
from shared.wechat import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach.welcome")

GROUP = "siyu-outreach-welcome"
ADDED = "wecom.contact.added"
HALF_ADDED = "wecom.contact.half_added"  # treated as an add (it may carry the WelcomeCode)
ADDS = (ADDED, HALF_ADDED)
WINDOW = timedelta(seconds=20)  # WeCom accepts the code this long after the add callback
MARGIN = timedelta(seconds=1.5)  # our clock against WeCom's: no attempt starts in the last 1.5 s
ALREADY_SENT, BEING_SENT = 41051, 41096
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)  # 41096 and outages, while the window lasts
MIN_TIMEOUT_S = 0.5
MAX_ATTACHMENTS = 9
PARALLEL = 8  # adds of one batch sent at once: one slow retry must not make the others late
CHANNEL = "wecom_welcome"  # the policy's channel name (no caps or quotas apply to a welcome)
CLAIM_WAIT_S = 5.0  # a batch of adds past their window still waits for their claims this long
LOST_AFTER = timedelta(minutes=1)  # a claim older than this without an outcome was lost
RETENTION = timedelta(days=30)  # welcomes and counted add events (docs/privacy.md)
TAG_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
               timedelta(hours=2), timedelta(hours=6))  # fmt: skip
MEDIA_EVERY_S = 60.0  # the leader checks the welcomes' images this often
MEDIA_VALID = media.LIFETIME - timedelta(hours=1)  # a cached id a welcome may still use

_ADDS = tuple(f'"{t}"'.encode() for t in ADDS)


@dataclass(frozen=True)
class Add:
    """What the welcome needs of an add (``add_of``)."""

    tenant_id: str
    event_id: str
    occurred_at: datetime  # the callback's CreateTime
    received_at: datetime
    external_userid: str | None
    staff_userid: str | None
    state: str | None
    welcome_code: str | None


def relevant(value: bytes) -> bool:
    """A signal's JSON that may be an add (the others are skipped without parsing)."""
    return any(t in value for t in _ADDS)


def add_of(tp: Touchpoint) -> Add | None:
    """A touchpoint as the welcome sees it (tests and the benchmark hand touchpoints in)."""
    attrs = tp.attributes
    if tp.type not in ADDS or not (attrs.get("welcome_code") or attrs.get("state")):
        return None
    return Add(tp.tenant_id, tp.event_id, tp.occurred_at, tp.received_at,
               tp.identity.external_userid, tp.identity.staff_userid,
               attrs.get("state") or None, attrs.get("welcome_code") or None)  # fmt: skip


def decode(message: Message) -> Add | None:
    """The one decoding of the consumer's messages: a ``signal/1`` of siyu.signals.v1
    (shared/signals.py; outreach never reads the raw touchpoints, docs/security.md)."""
    if not relevant(message.value):
        return None
    try:
        signal = messages.decode(messages.SIGNAL, message.value)
    except Exception as exc:  # not JSON, not UTF-8 or not the contract: the DLQ says why
        raise PoisonMessage(message, f"not a valid signal: {str(exc)[:300]}") from exc
    attrs, who = signal["attributes"], signal["identity"]
    if signal["type"] not in ADDS or not (attrs.get("welcome_code") or attrs.get("state")):
        return None
    return Add(signal["tenant_id"], signal["event_id"], signal["occurred_at"],
               signal["received_at"], who.get("external_userid"), who.get("staff_userid"),
               attrs.get("state") or None, attrs.get("welcome_code") or None)  # fmt: skip


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

    def process(self, batch: list[Decoded[Add | None]]) -> None:
        adds = [d.payload for d in batch if d.payload is not None]
        if not adds:
            return
        futures = [self._threads.submit(self.handle, a) for a in adds]
        # The batch waits until its last window has passed (and the outcome is written), no
        # longer: an add still waiting on WeCom then ends on its own thread or is swept.
        until = max(a.occurred_at for a in adds) + WINDOW + timedelta(seconds=5)
        wait_s = max(CLAIM_WAIT_S, (until - self.clock()).total_seconds())  # old adds: claims
        done, left = wait_futures(futures, timeout=wait_s)
        if left:
            log.warning("welcome_batch_window_passed", waiting=len(left))
        for future in done:
            future.result()  # the claim's database outage raises: the runner retries the batch

    # --- one add --------------------------------------------------------------------------

    def handle(self, add: Add | Touchpoint) -> str:
        """Count, claim, choose, send, record; returns the status (``duplicate``: claimed
        before, ``counted``: an add without a WelcomeCode)."""
        if isinstance(add, Touchpoint):
            found = add_of(add)
            if found is None:
                return "skipped"
            add = found
        lag = (add.received_at - add.occurred_at).total_seconds()
        metrics.WELCOME_CALLBACK_LAG.labels(add.tenant_id).observe(max(lag, 0.0))
        with self.pool.connection() as conn:  # committed before WeCom is called
            _count(conn, add)
            if not add.welcome_code:
                return "counted"
            claimed = conn.execute(
                "INSERT INTO welcomes (tenant_id, welcome_code, event_id, external_userid, "
                "identity_hash, staff_userid, state, callback_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (add.tenant_id, add.welcome_code, add.event_id, add.external_userid or "",
                 _hash(add), add.staff_userid, add.state, add.occurred_at),
            ).rowcount  # fmt: skip
            if not claimed:
                return "duplicate"
        try:  # claimed: whatever happens now ends in a status, never a lost welcome
            outcome = self._welcome(add)
        except Exception as exc:
            log.exception("welcome_failed", tenant_id=add.tenant_id)
            outcome = {"status": "failed", "error": f"internal error: {type(exc).__name__}"}
        self._record(add, outcome)
        return outcome["status"]

    def _welcome(self, add: Add) -> dict[str, Any]:
        with self.pool.connection() as conn:
            channel_code = self._code(conn, add.tenant_id, add.state)
            outcome = self._prepare(conn, add, channel_code)
        if channel_code:
            outcome["code_id"] = channel_code["code_id"]
        if "body" in outcome:  # no transaction is open while WeCom answers
            body, client = outcome.pop("body"), outcome.pop("client")
            outcome.update(self._send(client, body, add.occurred_at + WINDOW))
        return outcome

    def _code(self, conn, tenant_id: str, state: str | None) -> dict[str, Any] | None:
        if not state:
            return None
        return conn.execute(
            "SELECT code_id, welcome_content FROM channel_codes WHERE tenant_id = %s "
            "AND state = %s AND kind = 'contact' AND status = 'active'",
            (tenant_id, state),
        ).fetchone()

    def _prepare(self, conn, add: Add, channel_code: dict | None) -> dict[str, Any]:
        """The outcome when nothing is to be sent, else the ``body`` and ``client`` to send."""
        if not add.external_userid:
            return {"status": "failed", "error": "no external_userid on the add"}
        if self.clock() > add.occurred_at + WINDOW - MARGIN:
            return {"status": "missed", "reason": "received_after_window"}
        tenant_id, ext = add.tenant_id, add.external_userid
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
            # No code carries an audited override: a B2B contact never gets a promotion in its
            # welcome (the campaign's allow_b2b_promotion is an admin's choice per campaign).
            allow_b2b_promotion=False,
            guard=guard_of(catalogue and catalogue.flags, settings["guard_unflagged_model"]),
        )  # fmt: skip
        # A known contact without a stage is as unknown as a new one (it may be comparing).
        known = contact is not None and bool(contact["stage"])
        choice = choose(items, r, policy, known=known)
        base = {"contact_id": contact["contact_id"] if contact else None}
        if choice.content_id is None:
            return {**base, "status": "no_content", "reason": choice.reason}
        try:
            payload = rows[choice.content_id]["payloads"]["wecom"]
            body, left_out = self._body(conn, add, payload, choice.content_id, channel_code,
                                        base["contact_id"])  # fmt: skip
        except BadContent as exc:
            return {**base, "content_id": choice.content_id, "status": "failed", "error": str(exc)}
        base["content_id"] = choice.content_id
        if left_out:
            base["reason"] = left_out
        if not body.get("text") and not body.get("attachments"):
            return {**base, "status": "failed", "reason": left_out or "empty_welcome"}
        return {**base, "body": body, "client": client}

    def _body(self, conn, add: Add, payload: dict, content_id: str, channel_code, contact_id):
        """The welcome's body, and why an attachment was left out (None: none was)."""
        track = payloads.tracker(
            self.signer, self.public_url, tenant_id=add.tenant_id,
            campaign_id=f"welcome:{channel_code['code_id'] if channel_code else 'default'}",
            content_id=content_id, identity_kind="external_userid",
            identity_value=add.external_userid, contact_id=contact_id,
        )  # fmt: skip
        body = payloads.build(payloads.wecom, payload, track)
        left_out = None
        if body.get("attachments"):
            kept = []
            for attachment in body["attachments"][:MAX_ATTACHMENTS]:
                url = _image_url(attachment)
                if url is None:
                    kept.append(attachment)
                elif (media_id := _cached_media(conn, add.tenant_id, url, self.clock())) is None:
                    left_out = "image_not_ready"  # the leader has not uploaded it (yet)
                else:
                    kept.append({"msgtype": "image", "image": {"media_id": media_id}})
            body["attachments"] = kept
            if not kept:
                del body["attachments"]
        return {"welcome_code": add.welcome_code, **body}, left_out

    def _send(self, client, body: dict, deadline: datetime) -> dict[str, Any]:
        """Call attempts while ``deadline`` (less MARGIN) lasts: each one checked right before
        it, its rate-limiter slot taken only if it fits, its HTTP timeout what remains."""
        cutoff = deadline - MARGIN
        attempts, done = 0, {}
        while True:
            remaining = (cutoff - self.clock()).total_seconds()
            if remaining <= 0:
                why = "retries_outlasted_window" if attempts else "window_passed_before_call"
                return {**done, "attempts": attempts, "status": "missed", "reason": why}
            try:
                took = _slot(client, remaining)
            except SlotTooLate:
                return {**done, "attempts": attempts, "status": "missed",
                        "reason": "rate_limited_past_window"}  # fmt: skip
            remaining = (cutoff - self.clock()).total_seconds()
            if remaining <= 0:
                return {**done, "attempts": attempts, "status": "missed",
                        "reason": "window_passed_in_rate_limiter"}  # fmt: skip
            attempts += 1
            called_at = self.clock()  # after the limiter: the latency is the call's
            done = {"attempts": attempts, "called_at": called_at}
            try:
                with prepaid() if took else nullcontext():
                    client.send_welcome_msg(body, timeout=max(remaining, MIN_TIMEOUT_S))
                return {**done, "status": "sent"}
            except RateLimited as exc:  # retry after 120 s: past any window
                return {**done, "status": "failed", "errcode": exc.errcode,
                        "reason": "rate_limited", "error": str(exc)[:500]}  # fmt: skip
            except WeComError as exc:
                done.update(errcode=exc.errcode, error=str(exc)[:500])
                if exc.errcode == ALREADY_SENT:
                    return {**done, "status": "already_sent"}
                if not (exc.errcode == BEING_SENT or isinstance(exc, WeComUnavailable)):
                    late = self.clock() > deadline  # WeCom got it after the window
                    return {**done, "status": "failed",
                            "reason": "reached_wecom_after_window" if late else None}  # fmt: skip
            delay = BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
            if self.clock() + timedelta(seconds=delay) >= cutoff:
                return {**done, "status": "missed", "reason": "retries_outlasted_window"}
            self.sleep(delay)

    def _record(self, add: Add, outcome: dict) -> None:
        called_at = outcome.get("called_at")
        latency = (called_at - add.occurred_at).total_seconds() if called_at else None
        status = outcome["status"]
        for attempt in range(3):  # a database blip; past these the sweeper says lost_after_claim
            try:
                with self.pool.connection() as conn:
                    conn.execute(
                        "UPDATE welcomes SET status = %s, reason = %s, errcode = %s, error = %s, "
                        "attempts = %s, called_at = %s, latency_ms = %s, code_id = %s, "
                        "contact_id = %s, content_id = %s "
                        "WHERE tenant_id = %s AND welcome_code = %s",
                        (status, outcome.get("reason"), outcome.get("errcode"),
                         outcome.get("error"), outcome.get("attempts", 0), called_at,
                         None if latency is None else round(latency * 1000),
                         outcome.get("code_id"), outcome.get("contact_id"),
                         outcome.get("content_id"), add.tenant_id, add.welcome_code),
                    )  # fmt: skip
                break
            except Exception:
                if attempt == 2:
                    log.exception("welcome_record_failed", tenant_id=add.tenant_id)
                    return
                self.sleep(0.5)
        metrics.WELCOMES.labels(add.tenant_id, status).inc()
        if latency is not None:
            metrics.WELCOME_LATENCY.labels(add.tenant_id).observe(max(latency, 0.0))
        log.info("welcome", tenant_id=add.tenant_id, status=status, errcode=outcome.get("errcode"),
                 reason=outcome.get("reason"), latency_s=latency,
                 code_id=outcome.get("code_id"))  # fmt: skip


def _count(conn, add: Add) -> None:
    """The add, counted once for the code's per-staff daily cap (with or without a WelcomeCode):
    once per event id and once per (state, member, customer, tenant-local day), so a half-add
    and its full add count once; the leader's next tick takes a capped member out of the config
    (apply_caps). The same row queues the code's tags for the worker loop (``mark_tags_due``)."""
    if not (add.state and add.staff_userid):
        return
    code = conn.execute(
        "SELECT tags FROM channel_codes WHERE tenant_id = %s AND state = %s "
        "AND kind = 'contact' AND status = 'active'",
        (add.tenant_id, add.state),
    ).fetchone()
    tags = list(code["tags"] or ()) if code and add.external_userid else []
    first = conn.execute(
        "INSERT INTO welcome_adds (tenant_id, event_id, state, staff_userid, external_userid, "
        "identity_hash, day, tags, tag_status, tag_next_at) "
        "SELECT %s, %s, %s, %s, %s, %s, "
        "(SELECT (%s::timestamptz AT TIME ZONE timezone)::date FROM tenants WHERE tenant_id = %s), "
        "%s, CASE WHEN %s THEN 'pending' END, CASE WHEN %s THEN clock_timestamp() END "
        "ON CONFLICT DO NOTHING",
        (add.tenant_id, add.event_id, add.state, add.staff_userid, add.external_userid,
         _hash(add), add.occurred_at, add.tenant_id, tags, bool(tags), bool(tags)),
    ).rowcount  # fmt: skip
    if first:
        channel_codes.record_add(conn, add.tenant_id, add.state, add.staff_userid,
                                 add.occurred_at)  # fmt: skip
    elif tags:
        # The full add after its half-add (another event, the same add): tags the half-added
        # customer could not take are tried again now that the customer is the member's.
        conn.execute(
            "UPDATE welcome_adds SET tag_status = 'pending', tag_attempts = 0, "
            "tag_errcode = NULL, tag_next_at = clock_timestamp() WHERE tenant_id = %s "
            "AND state = %s AND staff_userid = %s AND external_userid = %s "
            "AND tag_status = 'failed' AND event_id <> %s",
            (add.tenant_id, add.state, add.staff_userid, add.external_userid, add.event_id),
        )


def _hash(add: Add) -> str | None:
    if not add.external_userid:
        return None
    return identity_hash(add.tenant_id, "external_userid", add.external_userid)


def _slot(client, remaining_s: float) -> bool:
    """Take the corp's shared rate-limiter slot only if its wait fits the window (SlotTooLate
    if not); False when the client has no shared limiter (it then waits as it always does)."""
    limiter = getattr(client, "limiter", None)
    if not isinstance(limiter, SharedRateLimiter):
        return False
    limiter.acquire_within(remaining_s - MIN_TIMEOUT_S)
    return True


def _image_url(attachment: dict[str, Any]) -> str | None:
    if attachment.get("msgtype") != "image":
        return None
    image = attachment.get("image") or {}
    return None if image.get("media_id") or image.get("pic_url") else image.get("url")


def _cached_media(conn, tenant_id: str, url: str, now: datetime) -> str | None:
    row = conn.execute(
        "SELECT media_id, uploaded_at FROM wecom_media WHERE tenant_id = %s AND source_url = %s",
        (tenant_id, url),
    ).fetchone()
    return row["media_id"] if row and now - row["uploaded_at"] < MEDIA_VALID else None


def _recipient(contact: dict | None, ext: str, tenant_mode: str | None) -> Recipient:
    if contact is None:  # new to outreach: the tenant's mode, no stage or role
        return Recipient(kind="contact", id=f"ext:{ext}", address=ext, mode=tenant_mode)
    return Recipient(kind="contact", id=contact["contact_id"], address=ext, mode=contact["mode"],
                     stage=contact["stage"], account_stage=contact["account_stage"],
                     role=contact["role"])  # fmt: skip


def _item(row: dict[str, Any]) -> Item:
    return Item(row["content_id"], row["promotional"], frozenset(row["stages"] or ()),
                frozenset(row["roles"] or ()), row["format"])  # fmt: skip


def process_of(welcomer: Welcomer) -> Callable[[list[Decoded[Add | None]]], None]:
    return welcomer.process


# --- the worker loop's part (leader only): lost claims, tags, images, retention ---------------

_last: dict[str, float] = {}


def step(pool: ConnectionPool, clients, tenants: TenantRegistry, now: datetime, *,
         fetch: media.Fetch = media.fetch) -> None:  # fmt: skip
    """One pass of the welcome's upkeep (one call in the outreach worker's loop)."""
    sweep_lost(pool)
    mark_tags_due(pool, clients, now)
    if time.monotonic() - _last.get("media", -1e9) > MEDIA_EVERY_S:
        refresh_media(pool, clients, tenants, now, fetch)
        prune(pool)
        _last["media"] = time.monotonic()


def sweep_lost(pool: ConnectionPool) -> int:
    """A claim left without an outcome (its process died mid-welcome) is ``missed``."""
    with pool.connection() as conn:
        rows = conn.execute(
            "UPDATE welcomes SET status = 'missed', reason = 'lost_after_claim' "
            "WHERE status = 'claimed' AND created_at < clock_timestamp() - %s "
            "RETURNING tenant_id",
            (LOST_AFTER,),
        ).fetchall()
    for row in rows:
        metrics.WELCOMES.labels(row["tenant_id"], "missed").inc()
        metrics.WELCOMES_LOST.labels(row["tenant_id"]).inc()
    if rows:
        log.warning("welcomes_lost_after_claim", count=len(rows))
    return len(rows)


def mark_tags_due(pool: ConnectionPool, clients, now: datetime, *, limit: int = 50) -> None:
    """The code's tags on new contacts (``welcome_adds``, ``tag_status`` pending: one row per
    add, welcome or not), outages and 45009 retried with back-off (TAG_BACKOFF), a refusal kept
    as failed with its errcode."""
    with pool.connection() as conn:
        due = conn.execute(
            "SELECT tenant_id, event_id, staff_userid, external_userid, tags, tag_attempts "
            "FROM welcome_adds WHERE tag_status = 'pending' AND tag_next_at <= %s "
            "ORDER BY tag_next_at LIMIT %s",
            (now, limit),
        ).fetchall()
    for row in due:
        tenant_id, attempts = row["tenant_id"], row["tag_attempts"] + 1
        client = clients.wecom(tenant_id)
        status, errcode, next_at = "failed", None, None
        if client is not None:
            try:
                client.mark_tag(row["staff_userid"], row["external_userid"], list(row["tags"]))
                status = "marked"
            except WeComError as exc:
                errcode = exc.errcode
                if isinstance(exc, WeComUnavailable | RateLimited) and attempts <= len(TAG_BACKOFF):
                    status = "pending"
                    wait = TAG_BACKOFF[attempts - 1]
                    if isinstance(exc, RateLimited):
                        wait = max(wait, timedelta(seconds=exc.retry_after or 0))
                    next_at = now + wait
                else:
                    log.warning("welcome_mark_tag_failed", tenant_id=tenant_id, errcode=errcode)
        with pool.connection() as conn:
            conn.execute(
                "UPDATE welcome_adds SET tag_status = %s, tag_errcode = %s, tag_attempts = %s, "
                "tag_next_at = %s WHERE tenant_id = %s AND event_id = %s",
                (status, errcode, attempts, next_at, tenant_id, row["event_id"]),
            )
        if status != "pending":
            metrics.WELCOME_TAGS.labels(tenant_id, status).inc()


def refresh_media(pool: ConnectionPool, clients, tenants: TenantRegistry, now: datetime,
                  fetch: media.Fetch = media.fetch) -> None:  # fmt: skip
    """Keep a valid media id for every image of every active contact code's welcome content and
    the default welcome (services/outreach/media.py uploads what is missing or getting old), so
    a welcome finds its images ready and never downloads one inside its 20 s."""
    for tenant in tenants:
        client = clients.wecom(tenant.id)
        if client is None:
            continue
        with pool.connection() as conn:
            ids = {
                i
                for row in conn.execute(
                    "SELECT welcome_content FROM channel_codes WHERE tenant_id = %s "
                    "AND kind = 'contact' AND status = 'active'",
                    (tenant.id,),
                )
                for i in row["welcome_content"] or ()
            }
            ids |= set(outreach_settings(store.tenant_settings(conn, tenant.id))["default_welcome"])
            rows = conn.execute(
                "SELECT content_id, payloads FROM content WHERE tenant_id = %s "
                "AND content_id = ANY(%s) AND status = 'active'",
                (tenant.id, sorted(ids)),
            ).fetchall()
        for row in rows:
            try:
                media.fresh(pool, client, tenant.id, row["payloads"] or {}, now, fetch)
            except (BadContent, WeComError) as exc:
                log.warning("welcome_media_not_ready", tenant_id=tenant.id,
                            content_id=row["content_id"], error=str(exc)[:200])  # fmt: skip


def prune(pool: ConnectionPool) -> None:
    """Welcomes and counted add events older than RETENTION (docs/privacy.md)."""
    with pool.connection() as conn:
        conn.execute("DELETE FROM welcomes WHERE created_at < clock_timestamp() - %s", (RETENTION,))
        conn.execute(
            "DELETE FROM welcome_adds WHERE created_at < clock_timestamp() - %s", (RETENTION,)
        )


def forget(conn, tenant_id: str, hashes: set[str]) -> None:
    """An erased person's welcomes and counted adds, found by keyed hash (an unknown contact's
    row has no contact_id; docs/privacy.md)."""
    if hashes:
        for query in (
            "DELETE FROM welcomes WHERE tenant_id = %s AND identity_hash = ANY(%s)",
            "DELETE FROM welcome_adds WHERE tenant_id = %s AND identity_hash = ANY(%s)",
        ):
            conn.execute(query, (tenant_id, sorted(hashes)))
