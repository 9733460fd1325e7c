"""Executing a campaign run: claim it, respect quiet hours, plan its deliveries, send, record.

Any worker replica executes runs (``FOR UPDATE SKIP LOCKED`` plus a lease); a run whose worker
died is resumed when its lease passes. Deliveries are unique per (run, recipient), so a resumed
run plans nothing twice, and nothing is sent twice:

- a delivery is marked ``sending`` (committed) before its API call and ``sent`` after;
- on resume, a ``sending`` delivery of an API without an idempotency key (WeCom mass messages,
  OA customer-service messages) becomes ``unknown``: it may have gone out, so it is never
  resent; OA template and mass sends carry ``client_msg_id``/``clientmsgid`` derived from the
  delivery, so the platform drops a repeat and they are simply sent again.

Errors: busy, timeouts and WeCom's 45009 release the run to retry after a back-off (WeCom's
``retry_after`` for 45009); the OA's 45009 (daily quota) waits for the next day; token expiry is
handled inside the clients (refetch once); any other errcode fails those deliveries with it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import structlog
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.outreach import payloads
from services.outreach.audience import Scope
from services.outreach.clients import Clients
from services.outreach.model import CHANNELS, outreach_settings
from services.outreach.plan import Campaign, PlanError, plan
from services.outreach.policies import Decision, Recipient
from services.outreach.schedule import quiet_until, zone
from shared.db import columns
from shared.links import LinkSigner
from shared.wechat import RateLimited, WeComError, WeComUnavailable
from shared.wechat.oa import QuotaExhausted

log = structlog.get_logger("siyu.outreach")

DELIVERIES = Counter(
    "siyu_outreach_deliveries_total", "Deliveries by outcome", ["tenant", "channel", "status"]
)
RUNS = Counter("siyu_outreach_runs_total", "Campaign runs by outcome", ["tenant", "outcome"])


def count_from_zero(tenant_ids) -> None:
    """Create the failed and unknown delivery series at 0 (the worker calls this at start): the
    first such delivery of a process's life is then an increase the alerts see, not a series
    born at 1 (docs/monitoring.md)."""
    for tenant_id in tenant_ids:
        for channel in CHANNELS:
            for status in ("sent", "failed", "unknown"):
                DELIVERIES.labels(tenant_id, channel, status)


LEASE = timedelta(minutes=5)
PLAN_CHUNK = 5000
MAX_ATTEMPTS = 5
# Deliveries per API call. A group gets its own call so that its links name it (clicks are
# attributed to the group); customers of a 1:1 mass message share one call (and its links).
CHUNK = {"wecom_single": 10000, "oa_mass": 10000}
IDEMPOTENT = frozenset({"oa_template", "oa_mass"})  # the platform dedupes a resend
PLATFORM_NEVER_RETRY = frozenset({45047, 45015, 43004, 40003})


class RetryLater(Exception):
    def __init__(self, delay: timedelta, reason: str):
        super().__init__(reason)
        self.delay, self.reason = delay, reason


@dataclass
class Executor:
    pool: ConnectionPool
    clients: Clients
    signer: LinkSigner | None = None
    public_url: str = "http://127.0.0.1:8080"
    lease: timedelta = LEASE
    clock: Any = lambda: datetime.now(UTC)

    # --- claiming --------------------------------------------------------------------------

    def claim(self) -> dict[str, Any] | None:
        """One due run of an active campaign (or a running one whose worker died)."""
        now = self.clock()
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE campaign_runs r SET status = 'running', lease_until = %(lease)s, "
                "started_at = COALESCE(r.started_at, %(now)s) "
                "WHERE r.run_id = (SELECT q.run_id FROM campaign_runs q JOIN campaigns c "
                "  ON c.tenant_id = q.tenant_id AND c.campaign_id = q.campaign_id "
                "  WHERE c.status = 'active' AND ((q.status = 'pending' AND q.due_at <= %(now)s) "
                "     OR (q.status = 'running' AND q.lease_until < %(now)s)) "
                "  ORDER BY q.due_at, q.run_id LIMIT 1 FOR UPDATE OF q SKIP LOCKED) "
                "RETURNING r.*",
                {"now": now, "lease": now + self.lease},
            ).fetchone()

    def run_due(self, limit: int = 50) -> int:
        """Execute due runs until none is left (at most ``limit``); returns how many."""
        done = 0
        while done < limit:
            run = self.claim()
            if run is None:
                break
            self.execute(run)
            done += 1
        return done

    # --- one run ---------------------------------------------------------------------------

    def execute(self, run: dict[str, Any]) -> str:
        log_ = log.bind(tenant_id=run["tenant_id"], campaign_id=run["campaign_id"],
                        run_id=run["run_id"])  # fmt: skip
        with self.pool.connection() as conn:
            campaign_row = conn.execute(
                "SELECT * FROM campaigns WHERE tenant_id = %s AND campaign_id = %s",
                (run["tenant_id"], run["campaign_id"]),
            ).fetchone()
            tenant = conn.execute(
                "SELECT timezone, settings FROM tenants WHERE tenant_id = %s", (run["tenant_id"],)
            ).fetchone()
        campaign = Campaign.from_row(campaign_row)
        tz = tenant["timezone"] if tenant else "Asia/Shanghai"
        settings = outreach_settings(tenant["settings"] if tenant else None)
        now = self.clock()
        quiet = campaign.quiet_hours or settings["quiet_hours"]
        resume_at = quiet_until(quiet, tz, now)
        if resume_at is not None:
            self._release(run, resume_at, "quiet hours")
            log_.info("campaign_run_waits_for_quiet_hours", until=resume_at.isoformat())
            return "quiet"
        try:
            self._recover(run, campaign)
            if not (run["stats"] or {}).get("planned_at"):
                self._plan(run, campaign, now)
            self._send_all(run, campaign, tz)
        except RetryLater as retry:
            self._release(run, self.clock() + retry.delay, retry.reason)
            log_.warning("campaign_run_retry", reason=retry.reason, delay=str(retry.delay))
            RUNS.labels(run["tenant_id"], "retry").inc()
            return "retry"
        except PlanError as exc:
            self._finish(run, "failed", str(exc))
            log_.warning("campaign_run_failed", error=str(exc))
            RUNS.labels(run["tenant_id"], "failed").inc()
            return "failed"
        stats = self._finish(run, "done", None)
        log_.info("campaign_run_done", **{k: v for k, v in stats.items() if k != "excluded"})
        RUNS.labels(run["tenant_id"], "done").inc()
        return "done"

    def _release(self, run: dict[str, Any], at: datetime, why: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE campaign_runs SET status = 'pending', due_at = %s, lease_until = NULL, "
                "error = %s WHERE run_id = %s",
                (at, why, run["run_id"]),
            )

    def _recover(self, run: dict[str, Any], campaign: Campaign) -> None:
        """Deliveries left ``sending`` by a worker that died mid-call."""
        with self.pool.connection() as conn:
            if campaign.channel in IDEMPOTENT:
                conn.execute(
                    "UPDATE deliveries SET status = CASE WHEN recipient_id LIKE 'erased:%%' "
                    "THEN 'excluded' ELSE 'pending' END, reason = CASE WHEN recipient_id "
                    "LIKE 'erased:%%' THEN 'erased' ELSE reason END "
                    "WHERE run_id = %s AND status = 'sending'",
                    (run["run_id"],),
                )
            else:
                n = conn.execute(
                    "UPDATE deliveries SET status = 'unknown', reason = 'interrupted during the "
                    "API call: it may have gone out, so it is not sent again' "
                    "WHERE run_id = %s AND status = 'sending'",
                    (run["run_id"],),
                ).rowcount
                if n:
                    log.warning("deliveries_interrupted", run_id=run["run_id"], count=n)
                    DELIVERIES.labels(run["tenant_id"], campaign.channel, "unknown").inc(n)

    def _plan(self, run: dict[str, Any], campaign: Campaign, now: datetime) -> None:
        scope = None
        if run["subject_kind"]:
            scope = Scope(run["subject_kind"], run["subject_id"])
        with self.pool.connection() as conn, conn.transaction():
            decisions = plan(conn, campaign, now, scope)
            while chunk := list(islice(decisions, PLAN_CHUNK)):
                _insert_deliveries(conn, run, campaign.channel, chunk)
            conn.execute(
                "UPDATE campaign_runs SET stats = stats || %s WHERE run_id = %s",
                (Jsonb({"planned_at": now.isoformat()}), run["run_id"]),
            )

    # --- sending ---------------------------------------------------------------------------

    def _send_all(self, run: dict[str, Any], campaign: Campaign, tz: str) -> None:
        payloads_ = self._payloads(run, campaign)  # read once per run, not once per call
        renewed = self.clock()
        while True:
            batch = self._next_batch(run, campaign)
            if not batch:
                return
            self._send(run, campaign, batch, tz, payloads_.get(batch[0]["content_id"], {}))
            if self.clock() - renewed > self.lease / 3:  # renewed well before it can lapse
                renewed = self.clock()
                with self.pool.connection() as conn:
                    conn.execute(
                        "UPDATE campaign_runs SET lease_until = %s WHERE run_id = %s",
                        (renewed + self.lease, run["run_id"]),
                    )

    def _payloads(self, run: dict[str, Any], campaign: Campaign) -> dict[str, dict]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT content_id, payloads FROM content "
                "WHERE tenant_id = %s AND content_id = ANY(%s)",
                (run["tenant_id"], campaign.content_ids),
            ).fetchall()
        return {r["content_id"]: r["payloads"] for r in rows}

    def _next_batch(self, run: dict[str, Any], campaign: Campaign) -> list[dict[str, Any]]:
        """Pending deliveries that go in one API call (same content and sender as the first
        pending one), marked ``sending`` and committed, in one statement."""
        with self.pool.connection() as conn:
            # However a delivery of a person erased meanwhile got back to pending, it is
            # excluded, never attempted (its address is gone).
            conn.execute(
                "UPDATE deliveries SET status = 'excluded', reason = 'erased', "
                "next_attempt_at = NULL WHERE run_id = %s AND status = 'pending' "
                "AND recipient_id LIKE 'erased:%%'",
                (run["run_id"],),
            )
            return conn.execute(
                "WITH first AS (SELECT content_id, sender FROM deliveries "
                "  WHERE run_id = %(run)s AND status = 'pending' ORDER BY delivery_id LIMIT 1) "
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1 "
                "WHERE delivery_id IN (SELECT d.delivery_id FROM deliveries d, first f "
                "  WHERE d.run_id = %(run)s AND d.status = 'pending' "
                "  AND d.content_id IS NOT DISTINCT FROM f.content_id "
                "  AND d.sender IS NOT DISTINCT FROM f.sender "
                "  ORDER BY d.delivery_id LIMIT %(size)s) "
                "RETURNING *",
                {"run": run["run_id"], "size": CHUNK.get(campaign.channel, 1)},
            ).fetchall()

    def _send(self, run, campaign: Campaign, batch, tz: str, payloads_: dict[str, Any]) -> None:
        tenant_id = run["tenant_id"]
        try:
            outcome = self._call(run, campaign, batch, payloads_)
        except (RateLimited, WeComUnavailable, QuotaExhausted) as exc:
            self._back_to_pending(batch, exc)
            if isinstance(exc, QuotaExhausted):
                raise RetryLater(_until_tomorrow(self.clock(), tz), str(exc)) from None
            attempts = max(d["attempts"] for d in batch)
            delay = getattr(exc, "retry_after", None) or min(30 * 2**attempts, 1800)
            raise RetryLater(timedelta(seconds=delay), str(exc)) from None
        except WeComError as exc:
            outcome = {d["delivery_id"]: ("failed", exc.errcode, str(exc), None) for d in batch}
        except payloads.BadContent as exc:  # nothing of the batch went out; the run goes on
            outcome = {d["delivery_id"]: ("failed", None, str(exc), None) for d in batch}
        self._record(tenant_id, campaign.channel, batch, outcome)

    def _back_to_pending(self, batch: list[dict[str, Any]], exc: Exception) -> None:
        ids = [d["delivery_id"] for d in batch]
        with self.pool.connection() as conn:
            # A person erased while the call was in flight is not tried again.
            failed = conn.execute(
                "UPDATE deliveries SET status = CASE WHEN recipient_id LIKE 'erased:%%' "
                "THEN 'excluded' WHEN attempts >= %s THEN 'failed' ELSE 'pending' END, "
                "reason = CASE WHEN recipient_id LIKE 'erased:%%' THEN 'erased' ELSE %s END, "
                "errcode = %s WHERE delivery_id = ANY(%s) RETURNING status = 'failed' AS failed",
                (MAX_ATTEMPTS, str(exc)[:300], getattr(exc, "errcode", None), ids),
            ).fetchall()
        if n := sum(r["failed"] for r in failed):  # out of attempts: failed for good
            DELIVERIES.labels(batch[0]["tenant_id"], batch[0]["channel"], "failed").inc(n)

    def _call(self, run, campaign: Campaign, batch, payloads_: dict[str, Any]):
        """One API call for the batch: {delivery_id: (status, errcode, reason, msgid)}."""
        channel, tenant_id = campaign.channel, run["tenant_id"]
        client = (
            self.clients.wecom(tenant_id)
            if channel.startswith("wecom")
            else self.clients.oa(tenant_id)
        )
        key = "wecom" if channel.startswith("wecom") else channel
        payload = payloads_.get(key)
        if client is None or payload is None:
            why = "channel_unavailable" if client is None else f"content has no {key} payload"
            return {d["delivery_id"]: ("failed", None, why, None) for d in batch}

        def track(d, kind: str, value: str):
            return payloads.tracker(
                self.signer, self.public_url, tenant_id=tenant_id,
                campaign_id=campaign.campaign_id, content_id=d["content_id"],
                identity_kind=kind, identity_value=value,
                contact_id=d["recipient_id"] if d["recipient_kind"] == "contact" else None,
            )  # fmt: skip

        first = batch[0]
        if channel == "wecom_single":
            # One message for many customers: its links cannot name a person, so they stay as
            # written (clicks arrive through the page's own tracking, if any).
            body = {"chat_type": "single", "external_userid": [d["address"] for d in batch],
                    **payloads.build(payloads.wecom, payload, payloads.untracked)}  # fmt: skip
            return _mass_result(batch, client.add_msg_template(body), "address")
        if channel == "wecom_group":
            link = track(first, "chat_id", first["address"])
            body = {"chat_type": "group", "sender": first["sender"],
                    "chat_id_list": [d["address"] for d in batch],
                    **payloads.build(payloads.wecom, payload, link)}  # fmt: skip
            return _mass_result(batch, client.add_msg_template(body), "address")
        if channel == "oa_mass" and first["recipient_kind"] == "tag":
            body = payloads.build(payloads.oa_mass, payload, [])
            del body["touser"]
            body["filter"] = {"is_to_all": False, "tag_id": int(first["address"])}
            body["clientmsgid"] = f"siyu-{run['run_id']}-{first['delivery_id']}"
            result = _deduped(lambda: client.mass_sendall(body))
            return {first["delivery_id"]: ("sent", None, None, str(result.get("msg_id")))}
        if channel == "oa_mass":
            if len(batch) < 2:
                return {first["delivery_id"]: ("failed", None, "oa mass send needs 2+", None)}
            body = payloads.build(payloads.oa_mass, payload, [d["address"] for d in batch])
            body["clientmsgid"] = f"siyu-{run['run_id']}-{first['delivery_id']}"
            result = _deduped(lambda: client.mass_send(body))
            return {d["delivery_id"]: ("sent", None, None, str(result.get("msg_id")))
                    for d in batch}  # fmt: skip
        out = {}
        for d in batch:  # OA template / customer service: one call per person
            try:
                build = payloads.oa_template if channel == "oa_template" else payloads.oa_custom
                body = payloads.build(
                    build, payload, d["address"], track(d, "openid", d["address"])
                )
                if channel == "oa_template":
                    body["client_msg_id"] = f"siyu-{d['delivery_id']}"
                    result = client.send_template(body)
                else:
                    result = client.send_custom(body)
                out[d["delivery_id"]] = ("sent", None, None, str(result.get("msgid") or ""))
            except payloads.BadContent as exc:  # this person's message only
                out[d["delivery_id"]] = ("failed", None, str(exc), None)
            except WeComError as exc:
                if exc.retryable or isinstance(exc, QuotaExhausted):
                    raise
                out[d["delivery_id"]] = ("failed", exc.errcode, str(exc), None)
        return out

    def _record(self, tenant_id: str, channel: str, batch, outcome) -> None:
        """Each delivery's outcome (one statement for the batch) and the exposures it made."""
        now = self.clock()
        rows = [(d["delivery_id"], *outcome[d["delivery_id"]]) for d in batch]
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE deliveries d SET status = u.status, errcode = u.errcode, "
                "reason = u.reason, msgid = u.msgid, "
                "sent_at = CASE WHEN u.status = 'sent' THEN %s ELSE d.sent_at END "
                "FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], %s::text[]) "
                "AS u(id, status, errcode, reason, msgid) WHERE d.delivery_id = u.id",
                (now, *columns(rows)),
            )
            sent = [r[0] for r in rows if r[1] == "sent"]
            if sent:
                _expose(conn, tenant_id, sent, now)
        for status, n in collections.Counter(r[1] for r in rows).items():
            DELIVERIES.labels(tenant_id, channel, status).inc(n)

    def _finish(self, run: dict[str, Any], status: str, error: str | None) -> dict[str, Any]:
        with self.pool.connection() as conn, conn.transaction():
            stats = run_stats(conn, run["run_id"])
            conn.execute(
                "UPDATE campaign_runs SET status = %s, error = %s, finished_at = %s, "
                "lease_until = NULL, stats = stats || %s WHERE run_id = %s",
                (status, error, self.clock(), Jsonb(stats), run["run_id"]),
            )
        return stats


def _deduped(send) -> dict[str, Any]:
    """An OA mass send; 45065 (clientmsgid exists) means an earlier attempt went out."""
    try:
        return send()
    except WeComError as exc:
        if exc.errcode != 45065:
            raise
        return {"msg_id": "sent-before"}


def _until_tomorrow(now: datetime, tz: str) -> timedelta:
    local = now.astimezone(zone(tz))
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=5, second=0, microsecond=0)
    return tomorrow - local


def _mass_result(batch, result: dict[str, Any], key: str):
    failed = set(result.get("fail_list") or [])
    msgid = result.get("msgid") or None
    return {
        d["delivery_id"]: (
            ("failed", None, "refused by the platform (fail_list)", None)
            if d[key] in failed
            else ("sent", None, None, msgid)
        )
        for d in batch
    }


def _insert_deliveries(conn, run, channel: str, chunk: list[tuple[Recipient, Decision]]) -> None:
    rows = [
        (r.kind, r.id, r.address, r.sender, d.content_id,
         "pending" if d.send else "excluded", d.reason,
         len(r.members) if r.kind == "group" else 0 if r.kind == "tag" else 1)
        for r, d in chunk
    ]  # fmt: skip
    kinds, ids, addresses, senders, contents, statuses, reasons, reached = columns(rows)
    conn.execute(
        "INSERT INTO deliveries (tenant_id, run_id, campaign_id, recipient_kind, recipient_id, "
        "channel, address, sender, content_id, status, reason, reached) "
        "SELECT %s, %s, %s, k, i, %s, a, s, c, st, re, n FROM unnest(%s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[]) "
        "AS u(k, i, a, s, c, st, re, n) "
        "ON CONFLICT (tenant_id, run_id, recipient_kind, recipient_id) DO NOTHING",
        (run["tenant_id"], run["run_id"], run["campaign_id"], channel,
         kinds, ids, addresses, senders, contents, statuses, reasons, reached),
    )  # fmt: skip


def _expose(conn, tenant_id: str, delivery_ids: list[int], at: datetime) -> None:
    """Exposures of sent deliveries: the contact, or the group and each known member."""
    conn.execute(
        "INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at) "
        "SELECT tenant_id, recipient_kind, recipient_id, channel, delivery_id, %s "
        "FROM deliveries WHERE delivery_id = ANY(%s) AND recipient_kind <> 'tag' "
        "ON CONFLICT DO NOTHING",
        (at, delivery_ids),
    )
    conn.execute(
        "INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at) "
        "SELECT DISTINCT d.tenant_id, 'contact', a.contact_id, d.channel, d.delivery_id, %s "
        "FROM deliveries d "
        "JOIN groups g ON g.tenant_id = d.tenant_id AND g.chat_id = d.recipient_id "
        "JOIN audience a ON a.tenant_id = d.tenant_id AND a.external_userids && g.members "
        "WHERE d.delivery_id = ANY(%s) AND d.recipient_kind = 'group' ON CONFLICT DO NOTHING",
        (at, delivery_ids),
    )


def run_stats(conn, run_id: int) -> dict[str, Any]:
    """Counts of a run's deliveries by status and exclusion reason, and the distinct people its
    sent deliveries reached (group members counted once across groups, with or without a
    profile)."""
    by_status = {
        r["status"]: r["count"]
        for r in conn.execute(
            "SELECT status, count(*) FROM deliveries WHERE run_id = %s GROUP BY status",
            (run_id,),
        ).fetchall()
    }
    excluded = {
        r["reason"]: r["count"]
        for r in conn.execute(
            "SELECT reason, count(*) FROM deliveries WHERE run_id = %s AND status = 'excluded' "
            "GROUP BY reason ORDER BY reason",
            (run_id,),
        ).fetchall()
    }
    # People: contacts sent to, and every customer member of the groups sent to (a person in
    # two groups counts once).
    reached = conn.execute(
        "SELECT count(DISTINCT who) AS n FROM ("
        "  SELECT d.recipient_id AS who FROM deliveries d WHERE d.run_id = %(run)s "
        "  AND d.recipient_kind = 'contact' AND d.status IN ('sent', 'delivered') "
        "  UNION ALL "
        "  SELECT 'ext:' || m FROM deliveries d JOIN groups g "
        "  ON g.tenant_id = d.tenant_id AND g.chat_id = d.recipient_id, unnest(g.members) AS m "
        "  WHERE d.run_id = %(run)s AND d.recipient_kind = 'group' "
        "  AND d.status IN ('sent', 'delivered')) people",
        {"run": run_id},
    ).fetchone()["n"]
    return {"by_status": by_status, "excluded": excluded, "people_reached": reached}


# --- WeCom send results ----------------------------------------------------------------------


def poll_results(pool: ConnectionPool, clients: Clients, *, limit: int = 50) -> int:
    """Ask WeCom how sent mass messages fared (members confirm them, customers may be gone):
    ``delivered``, or ``failed`` with the platform's reason. Returns deliveries updated."""
    with pool.connection() as conn:
        msgs = conn.execute(
            "SELECT tenant_id, msgid, min(channel) AS channel FROM deliveries "
            "WHERE status = 'sent' AND channel LIKE 'wecom%%' AND msgid IS NOT NULL "
            "AND sent_at > now() - interval '3 days' GROUP BY tenant_id, msgid LIMIT %s",
            (limit,),
        ).fetchall()
    updated = 0
    for m in msgs:
        client = clients.wecom(m["tenant_id"])
        if client is None:
            continue
        try:
            tasks = client.get_groupmsg_task(m["msgid"])
            results = [
                r
                for t in tasks
                if t.get("status") == 2
                for r in client.get_groupmsg_send_result(m["msgid"], t["userid"])
            ]
        except WeComError as exc:
            log.warning("wecom_send_result_unavailable", tenant_id=m["tenant_id"], error=str(exc))
            continue
        known = [(r.get("chat_id") or r.get("external_userid"), *SEND_RESULT[r.get("status")])
                 for r in results if r.get("status") in SEND_RESULT]  # fmt: skip
        if not known:
            continue
        with pool.connection() as conn:  # one statement per message
            rows = conn.execute(
                "UPDATE deliveries d SET status = u.status, reason = u.reason "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(address, status, reason) "
                "WHERE d.tenant_id = %s AND d.msgid = %s AND d.address = u.address "
                "AND d.status = 'sent' RETURNING d.channel, d.status",
                (*columns(known), m["tenant_id"], m["msgid"]),
            ).fetchall()
        updated += len(rows)
        # What WeCom reports later is an outcome too: delivered, or failed after all.
        for (channel, status), n in collections.Counter(
            (r["channel"], r["status"]) for r in rows
        ).items():
            DELIVERIES.labels(m["tenant_id"], channel, status).inc(n)
    return updated


SEND_RESULT = {
    1: ("delivered", None),
    2: ("failed", "not a friend any more (WeCom send result 2)"),
    3: ("failed", "received another mass message already (WeCom send result 3)"),
}
