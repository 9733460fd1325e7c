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

Group joins go the same way (docs/domain.md "Channel codes"): applying
``wecom.chat.member_joined``, the consumer queues each joined external member with its chat in
``chat_join_queue`` (``enqueue_join``); the Enricher calls ``externalcontact/groupchat/get``
and, when the member's ``member_list`` entry has a ``state`` (they joined through a join code),
publishes a ``wecom.chat.member_enriched`` touchpoint (chat_id, state, join_time, join_scene),
which services/segment/sources.py takes as channel evidence at the join time.

The enriched touchpoints carry everything the state needs, so a replay of the topic rebuilds the
same state without calling WeCom; their event ids hash the request they answer and the content,
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
from psycopg import Connection, sql
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
JOINED = "wecom.chat.member_joined"
MEMBER_ENRICHED = "wecom.chat.member_enriched"

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


def enqueue_join(
    conn: Connection,
    tenant_id: str,
    chat_id: str,
    external_userid: str,
    requested_at: datetime,
    *,
    delay: timedelta = ENQUEUE_DELAY,
) -> None:
    """Queue a group join for its member's ``groupchat/get`` entry; a newer join revives it."""
    conn.execute(
        "INSERT INTO chat_join_queue AS q "
        "(tenant_id, chat_id, external_userid, requested_at, attempts, next_attempt_at) "
        "VALUES (%s, %s, %s, %s, 0, now() + %s) "
        "ON CONFLICT (tenant_id, chat_id, external_userid) DO UPDATE SET "
        "requested_at = EXCLUDED.requested_at, attempts = 0, "
        "next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL "
        "WHERE EXCLUDED.requested_at > q.requested_at",
        (tenant_id, chat_id, external_userid, requested_at, delay),
    )


def join_satisfied(
    conn: Connection, tenant_id: str, chat_id: str, external_userid: str, fetched_at: datetime
) -> None:
    """A member's group detail fetched at ``fetched_at`` answers every join queued before."""
    conn.execute(
        "DELETE FROM chat_join_queue WHERE tenant_id = %s AND chat_id = %s "
        "AND external_userid = %s AND requested_at <= %s",
        (tenant_id, chat_id, external_userid, fetched_at),
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


def member_touchpoint(
    tenant_id: str,
    chat_id: str,
    external_userid: str,
    group_chat: dict[str, Any],
    *,
    fetched_at: datetime,
    answers: datetime,
) -> Touchpoint | None:
    """The ``wecom.chat.member_enriched`` touchpoint of a member's entry in a ``groupchat/get``
    answer, or None when the entry has no ``state`` (not a join through a join code) or the
    member is no longer in the group. Its id hashes the request and the content, as
    ``enriched_touchpoint``'s does."""
    entry = next(
        (m for m in group_chat.get("member_list") or [] if m.get("userid") == external_userid),
        None,
    )
    state = (entry or {}).get("state") or None
    if entry is None or state is None:
        return None
    attributes: dict[str, Any] = {
        "chat_id": chat_id,
        "state": state,
        "join_time": entry.get("join_time"),
        "join_scene": entry.get("join_scene"),
    }
    identity = Identity(external_userid=external_userid)
    content = json.dumps(
        {"identity": asdict(identity), "attributes": attributes, "answers": answers.isoformat()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
    return Touchpoint(
        event_id=make_event_id(
            tenant_id, "wecom", f"member_enriched|{chat_id}|{external_userid}|{digest}"
        ),
        tenant_id=tenant_id,
        source="wecom",
        type=MEMBER_ENRICHED,
        occurred_at=fetched_at,
        received_at=min(answers, fetched_at),  # as enriched_touchpoint (docs/privacy.md)
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
    chat_id: str | None = None  # a group join (chat_join_queue), else a contact

    def row(self) -> tuple[sql.Identifier, sql.Composed, tuple]:
        """The claim's queue table, and the WHERE clause and parameters naming its row."""
        keys = {"tenant_id": self.tenant_id, "chat_id": self.chat_id}
        if self.chat_id is None:
            del keys["chat_id"]
        keys |= {"external_userid": self.external_userid, "requested_at": self.requested_at}
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in keys)
        table = "enrichment_queue" if self.chat_id is None else "chat_join_queue"
        return sql.Identifier(table), where, tuple(keys.values())


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
        groups: dict[tuple[str, str], dict] = {}  # one groupchat/get per chat and run
        outcomes = []
        for claim in claims:
            paused = self._paused_until.get(claim.tenant_id)
            if self._stop.is_set() or (paused is not None and paused > datetime.now(UTC)):
                outcomes.append(self._release(claim, paused))
                continue
            outcomes.append(self._enrich(claim, groups))
        return outcomes

    # --- one row -------------------------------------------------------------------------------

    def _fetch(self, claim: Claim, groups: dict[tuple[str, str], dict]) -> Touchpoint | None:
        client = self.clients[claim.tenant_id]
        if claim.chat_id is None:
            detail = client.get_external_contact(claim.external_userid)
            return enriched_touchpoint(
                claim.tenant_id,
                claim.external_userid,
                detail,
                fetched_at=datetime.now(UTC),
                answers=claim.requested_at,
            )
        key = (claim.tenant_id, claim.chat_id)
        if key not in groups:
            groups[key] = client.get_group_chat(claim.chat_id)
        return member_touchpoint(
            claim.tenant_id,
            claim.chat_id,
            claim.external_userid,
            groups[key],
            fetched_at=datetime.now(UTC),
            answers=claim.requested_at,
        )

    def _enrich(self, claim: Claim, groups: dict[tuple[str, str], dict] | None = None) -> Outcome:
        try:
            tp = self._fetch(claim, {} if groups is None else groups)
            if tp is not None:  # a member without a state: nothing to tell, the row is done
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
        table, where, params = claim.row()
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(table, where), params)
        log.info(
            "wecom_contact_enriched" if claim.chat_id is None else "wecom_chat_member_enriched",
            tenant_id=claim.tenant_id,
            external_userid=claim.external_userid,
            chat_id=claim.chat_id,
            event_id=tp.event_id if tp is not None else None,
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
        table, where, params = claim.row()
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET attempts = greatest(0, attempts - 1), "
                    "next_attempt_at = greatest(now(), %s) WHERE {}"
                ).format(table, where),
                (until, *params),
            )
        return Outcome(claim, "released")

    def _update(self, claim: Claim, delay: timedelta | None, error: str) -> None:
        # Guarded by requested_at: a newer request queued meanwhile keeps its own schedule.
        table, where, params = claim.row()
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET last_error = %s, "
                    "next_attempt_at = CASE WHEN %s::interval IS NULL THEN NULL "
                    "ELSE now() + %s::interval END WHERE {}"
                ).format(table, where),
                (error[:500], delay, delay, *params),
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
            joins = conn.execute(
                "WITH due AS ("
                "  SELECT tenant_id, chat_id, external_userid FROM chat_join_queue"
                "  WHERE tenant_id = ANY(%s) AND next_attempt_at <= now()"
                "  ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED"
                ") UPDATE chat_join_queue q SET attempts = q.attempts + 1, "
                "next_attempt_at = now() + %s "
                "FROM due WHERE q.tenant_id = due.tenant_id AND q.chat_id = due.chat_id "
                "AND q.external_userid = due.external_userid "
                "RETURNING q.tenant_id, q.chat_id, q.external_userid, q.requested_at, q.attempts",
                (tenants, max(0, self.batch - len(rows)), self.lease),
            ).fetchall()
        contacts = [
            Claim(r["tenant_id"], r["external_userid"], r["requested_at"], r["attempts"])
            for r in sorted(rows, key=lambda r: (r["tenant_id"], r["external_userid"]))
        ]
        joins = sorted(joins, key=lambda r: (r["tenant_id"], r["chat_id"], r["external_userid"]))
        return contacts + [
            Claim(
                r["tenant_id"], r["external_userid"], r["requested_at"], r["attempts"], r["chat_id"]
            )
            for r in joins
        ]

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = create_producer(self.kafka, client_id="siyu-segment-enricher")
        return self._producer
