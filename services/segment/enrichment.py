"""WeCom contact enrichment: external contacts' detail (name, position, corp name, unionid,
follow-user tags) from ``externalcontact/get``, without ever making the consumer wait on WeCom.

1. The consumer, applying ``wecom.contact.added`` / ``half_added`` / ``edited``, queues the
   external_userid in ``enrichment_queue`` in the same transaction (``enqueue``).
2. The ``Enricher`` (a thread of ``siyu segment consume``; ``SIYU_WECOM_ENRICH=0`` turns it off)
   claims due rows (``FOR UPDATE SKIP LOCKED``, in a short transaction that holds no lock during
   the API call), calls the shared WeCom client of the tenant's corp and publishes the detail as a
   ``wecom.contact.enriched`` touchpoint on ``siyu.touchpoints.v1`` (acks=all), then deletes the
   row. Rate limits, busy answers, timeouts and broker outages reschedule the row with back-off;
   permanent errors (84061 "not an external contact"...) are recorded in ``last_error`` and the
   row is given up after ``max_attempts`` (``next_attempt_at`` NULL; a newer trigger revives it).
3. The consumer applies ``wecom.contact.enriched`` like any touchpoint (identities, profile,
   tags; see services/segment/apply.py) and drops queue rows the detail satisfies (requested
   before it was fetched). It never queues on an enriched touchpoint: no loop.

The enriched touchpoint carries everything the state needs, so a replay of the topic rebuilds the
same state without calling WeCom; its event id hashes the request it answers and the content,
so the same answer fetched twice for one request dedupes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from kafka import KafkaProducer
from psycopg import Connection
from psycopg_pool import ConnectionPool

from shared.envelope import Identity, Touchpoint, make_event_id
from shared.errors import ConfigError, DeliveryError
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOUCHPOINTS
from shared.tenants import Tenant, TenantRegistry
from shared.wechat.wecom import RateLimited, WeComClient, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.segment.enrichment")

TRIGGERS = frozenset({"wecom.contact.added", "wecom.contact.half_added", "wecom.contact.edited"})
ENRICHED = "wecom.contact.enriched"

# A fresh request waits a little: WeCom's detail can lag its event, and during a replay the
# enriched touchpoint that follows in the topic usually satisfies the request first.
ENQUEUE_DELAY = timedelta(seconds=2)
# Errors about the corp's credentials or access, not about the contact: retried like outages.
CORP_ERRORS = frozenset({40001, 40013, 40014, 40091, 42001, 48002, 60020})


# --- the queue (called by the consumer, inside its batch transaction) -------------------------


def enqueue(
    conn: Connection,
    tenant_id: str,
    external_userid: str,
    requested_at: datetime,
    *,
    delay: timedelta = ENQUEUE_DELAY,
) -> None:
    """Queue a contact for enrichment; a newer request revives a row that gave up."""
    conn.execute(
        "INSERT INTO enrichment_queue AS q "
        "(tenant_id, external_userid, requested_at, attempts, next_attempt_at) "
        "VALUES (%s, %s, %s, 0, now() + %s) "
        "ON CONFLICT (tenant_id, external_userid) DO UPDATE SET "
        "requested_at = EXCLUDED.requested_at, attempts = 0, "
        "next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL "
        "WHERE EXCLUDED.requested_at > q.requested_at",
        (tenant_id, external_userid, requested_at, delay),
    )


def satisfied(conn: Connection, tenant_id: str, external_userid: str, fetched_at: datetime):
    """An enriched touchpoint fetched at ``fetched_at`` answers every request made before."""
    conn.execute(
        "DELETE FROM enrichment_queue "
        "WHERE tenant_id = %s AND external_userid = %s AND requested_at <= %s",
        (tenant_id, external_userid, fetched_at),
    )


# --- the touchpoint -----------------------------------------------------------------------------


def tag_name(tag: dict[str, Any]) -> str | None:
    """``<group_name>:<tag_name>`` (so "角色" / "技术" reads as the role tag "角色:技术");
    personal tags without a group keep their bare name."""
    name = str(tag.get("tag_name") or "").strip()
    group = str(tag.get("group_name") or "").strip()
    if not name:
        return None
    return f"{group}:{name}" if group else name


def _follow_user(raw: dict[str, Any]) -> dict[str, Any]:
    # Not copied: remark, remark_mobiles and description, a member's notes about the person
    # (their name, phone...): personal data the segment state does not use, which would stay
    # readable on the touchpoints topic after an erasure (docs/privacy.md).
    tags = sorted({t for t in (tag_name(x) for x in raw.get("tags") or []) if t})
    return {
        "userid": raw.get("userid"),
        "createtime": raw.get("createtime"),
        "add_way": raw.get("add_way"),
        "state": raw.get("state") or None,
        "tags": tags,
    }


def enriched_touchpoint(
    tenant_id: str,
    external_userid: str,
    detail: dict[str, Any],
    *,
    fetched_at: datetime,
    answers: datetime,
) -> Touchpoint:
    """The ``wecom.contact.enriched`` touchpoint of an ``externalcontact/get`` answer to the
    request queued at ``answers``. Its id hashes the request and the content: the same answer
    fetched twice for one request (a crash between publish and dequeue) is one event, while a
    detail that changes back (A, B, then A again) is three, so the latest still wins."""
    contact = detail.get("external_contact") or {}
    follow_users = sorted(
        (_follow_user(f) for f in detail.get("follow_user") or [] if f.get("userid")),
        key=lambda f: (f["createtime"] or 0, f["userid"]),
    )
    kind = contact.get("type")
    corp_name = (contact.get("corp_name") or "").strip() or None
    attributes: dict[str, Any] = {
        "name": (contact.get("name") or "").strip() or None,
        "position": (contact.get("position") or "").strip() or None,
        "corp_name": corp_name,
        "type": kind,
        "tags": sorted({t for f in follow_users for t in f["tags"]}),
        "follow_users": follow_users,
    }
    if kind == 2 and corp_name:
        attributes["company"] = corp_name  # the B2B account (apply._account reads "company")
    identity = Identity(
        external_userid=contact.get("external_userid") or external_userid,
        unionid=contact.get("unionid") or None,
        staff_userid=follow_users[0]["userid"] if follow_users else None,
    )
    content = json.dumps(
        {"identity": asdict(identity), "attributes": attributes, "answers": answers.isoformat()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
    return Touchpoint(
        event_id=make_event_id(tenant_id, "wecom", f"enriched|{identity.external_userid}|{digest}"),
        tenant_id=tenant_id,
        source="wecom",
        type=ENRICHED,
        occurred_at=fetched_at,
        # When the request it answers was made: an answer fetched after its person was erased
        # answers a request from before, and is dropped like a replay (docs/privacy.md).
        received_at=min(answers, fetched_at),
        identity=identity,
        attributes=attributes,
    )


# --- the worker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    tenant_id: str
    external_userid: str
    requested_at: datetime
    attempts: int


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    status: str  # enriched | retry | gave_up | released
    error: str | None = None


def backoff(attempts: int, *, base: float = 30.0, cap: float = 3600.0) -> float:
    """Seconds before the next try after ``attempts`` tries: 30 s, 1 min, 2 min... up to 1 h."""
    return min(cap, base * 2 ** max(0, attempts - 1))


class Enricher:
    """Claims due queue rows, fetches the detail, publishes it; one thread, many tenants."""

    def __init__(
        self,
        pool: ConnectionPool,
        tenants: TenantRegistry,
        kafka: KafkaSettings,
        *,
        api_base: str | None = None,
        rate: float | None = None,
        client_factory: Callable[[Tenant, str], WeComClient] | None = None,
        producer: KafkaProducer | None = None,
        batch: int = 10,
        interval: float = 1.0,
        max_attempts: int = 5,
        lease: timedelta = timedelta(minutes=2),
        backoff: Callable[[int], float] = backoff,
    ):
        self.pool = pool
        self.kafka = kafka
        self.topic = kafka.topic(TOUCHPOINTS)
        self.batch = batch
        self.interval = interval
        self.max_attempts = max_attempts
        self.lease = lease
        self.backoff = backoff
        self._producer = producer
        self._own_producer = producer is None
        factory = client_factory or (
            lambda tenant, secret: WeComClient(
                tenant.wecom.corp_id, secret, api_base=api_base, rate=rate, tenant=tenant.id
            )
        )
        self.clients: dict[str, WeComClient] = {}
        for tenant in tenants:
            if tenant.wecom is None or tenant.wecom.secret is None:
                reason = "no wecom corp" if tenant.wecom is None else "no wecom secret"
                log.warning("wecom_enrichment_skipped", tenant_id=tenant.id, reason=reason)
                continue
            try:
                secret = tenant.wecom.secret.reveal()
            except ConfigError as exc:
                log.warning("wecom_enrichment_skipped", tenant_id=tenant.id, reason=str(exc))
                continue
            self.clients[tenant.id] = factory(tenant, secret)
        self._paused_until: dict[str, datetime] = {}  # tenant -> end of a rate-limit pause
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- running -------------------------------------------------------------------------------

    def start(self) -> Enricher:
        self._thread = threading.Thread(target=self._loop, name="wecom-enricher", daemon=True)
        self._thread.start()
        log.info("wecom_enricher_started", tenants=sorted(self.clients))
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_producer and self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = len(self.run_once())
            except Exception:  # Postgres away, a bug: log, wait, try again
                log.exception("wecom_enricher_failed")
                done = 0
            if done == 0:
                self._stop.wait(self.interval)

    def run_once(self) -> list[Outcome]:
        """Claim up to ``batch`` due rows and process them; the outcome of each."""
        now = datetime.now(UTC)
        tenants = [t for t in self.clients if self._paused_until.get(t, now) <= now]
        if not tenants:
            return []
        claims = self._claim(tenants)
        outcomes = []
        for claim in claims:
            paused = self._paused_until.get(claim.tenant_id)
            if self._stop.is_set() or (paused is not None and paused > datetime.now(UTC)):
                outcomes.append(self._release(claim, paused))
                continue
            outcomes.append(self._enrich(claim))
        return outcomes

    # --- one row -------------------------------------------------------------------------------

    def _enrich(self, claim: Claim) -> Outcome:
        client = self.clients[claim.tenant_id]
        try:
            detail = client.get_external_contact(claim.external_userid)
            tp = enriched_touchpoint(
                claim.tenant_id,
                claim.external_userid,
                detail,
                fetched_at=datetime.now(UTC),
                answers=claim.requested_at,
            )
            publish(self._get_producer(), [Record(self.topic, tp.key, tp.to_json())])
        except RateLimited as exc:
            delay = max(exc.retry_after, self.backoff(claim.attempts))
            self._paused_until[claim.tenant_id] = datetime.now(UTC) + timedelta(seconds=delay)
            return self._retry(claim, delay, str(exc))
        except WeComUnavailable as exc:
            return self._retry(claim, self.backoff(claim.attempts), str(exc))
        except WeComError as exc:
            if exc.errcode in CORP_ERRORS:  # the corp's credentials, not this contact
                return self._retry(claim, self.backoff(claim.attempts), str(exc))
            return self._failed(claim, str(exc))
        except DeliveryError as exc:
            return self._retry(claim, self.backoff(claim.attempts), f"broker: {exc}")
        except Exception as exc:  # a bug or an unexpected answer: counts against max_attempts
            log.exception("wecom_enrichment_error", tenant_id=claim.tenant_id)
            return self._failed(claim, f"{type(exc).__name__}: {exc}"[:500])
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "DELETE FROM enrichment_queue "
                "WHERE tenant_id = %s AND external_userid = %s AND requested_at = %s",
                (claim.tenant_id, claim.external_userid, claim.requested_at),
            )
        log.info(
            "wecom_contact_enriched",
            tenant_id=claim.tenant_id,
            external_userid=claim.external_userid,
            event_id=tp.event_id,
        )
        return Outcome(claim, "enriched")

    def _failed(self, claim: Claim, error: str) -> Outcome:
        if claim.attempts < self.max_attempts:
            return self._retry(claim, self.backoff(claim.attempts), error)
        self._update(claim, None, error)
        log.warning(
            "wecom_enrichment_gave_up",
            tenant_id=claim.tenant_id,
            external_userid=claim.external_userid,
            attempts=claim.attempts,
            error=error,
        )
        return Outcome(claim, "gave_up", error)

    def _retry(self, claim: Claim, delay: float, error: str) -> Outcome:
        self._update(claim, timedelta(seconds=delay), error)
        log.info(
            "wecom_enrichment_rescheduled",
            tenant_id=claim.tenant_id,
            external_userid=claim.external_userid,
            attempts=claim.attempts,
            delay_s=round(delay, 1),
            error=error,
        )
        return Outcome(claim, "retry", error)

    def _release(self, claim: Claim, until: datetime | None) -> Outcome:
        """Hand a claimed row back untried (stopping, or its corp is rate-limited)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE enrichment_queue SET attempts = greatest(0, attempts - 1), "
                "next_attempt_at = greatest(now(), %s) "
                "WHERE tenant_id = %s AND external_userid = %s AND requested_at = %s",
                (until, claim.tenant_id, claim.external_userid, claim.requested_at),
            )
        return Outcome(claim, "released")

    def _update(self, claim: Claim, delay: timedelta | None, error: str) -> None:
        # Guarded by requested_at: a newer request queued meanwhile keeps its own schedule.
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE enrichment_queue SET last_error = %s, "
                "next_attempt_at = CASE WHEN %s::interval IS NULL THEN NULL "
                "ELSE now() + %s::interval END "
                "WHERE tenant_id = %s AND external_userid = %s AND requested_at = %s",
                (
                    error[:500],
                    delay,
                    delay,
                    claim.tenant_id,
                    claim.external_userid,
                    claim.requested_at,
                ),
            )

    def _claim(self, tenants: list[str]) -> list[Claim]:
        """Take due rows in a short transaction: a lease (next_attempt_at in the future) keeps
        other workers off while we call WeCom without holding any lock."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "WITH due AS ("
                "  SELECT tenant_id, external_userid FROM enrichment_queue"
                "  WHERE tenant_id = ANY(%s) AND next_attempt_at <= now()"
                "  ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED"
                ") UPDATE enrichment_queue q SET attempts = q.attempts + 1, "
                "next_attempt_at = now() + %s "
                "FROM due WHERE q.tenant_id = due.tenant_id "
                "AND q.external_userid = due.external_userid "
                "RETURNING q.tenant_id, q.external_userid, q.requested_at, q.attempts",
                (tenants, self.batch, self.lease),
            ).fetchall()
        return [
            Claim(r["tenant_id"], r["external_userid"], r["requested_at"], r["attempts"])
            for r in sorted(rows, key=lambda r: (r["tenant_id"], r["external_userid"]))
        ]

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = create_producer(self.kafka, client_id="siyu-segment-enricher")
        return self._producer
