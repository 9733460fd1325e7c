"""Executing a campaign run: claim it, respect quiet hours, plan its deliveries, send, record.

The run lifecycle lives here; how each channel sends is senders.py (a table channel ->
sender), the statements are store.py, WeCom's later send results are results.py.

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
from psycopg_pool import ConnectionPool

from services.outreach import budget, media, payloads, senders, store
from services.outreach.audience import Scope
from services.outreach.clients import Clients
from services.outreach.metrics import DELIVERIES, RUNS
from services.outreach.model import outreach_settings
from services.outreach.plan import Campaign, PlanError, plan
from services.outreach.policies import Decision, Recipient
from services.outreach.schedule import quiet_until, zone
from shared.links import LinkSigner
from shared.wechat import RateLimited, WeComError, WeComUnavailable
from shared.wechat.oa import QuotaExhausted

log = structlog.get_logger("siyu.outreach")

LEASE = timedelta(minutes=5)
PLAN_CHUNK = 5000
MAX_ATTEMPTS = 5


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
    # Images from private addresses and over http (SIYU_MEDIA_ALLOW_PRIVATE: dev and tests).
    allow_private_media: bool = False

    # --- claiming --------------------------------------------------------------------------

    def claim(self) -> dict[str, Any] | None:
        """One due run of an active campaign (or a running one whose worker died)."""
        now = self.clock()
        with self.pool.connection() as conn, conn.transaction():
            return store.claim_run(conn, now, now + self.lease)

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
            campaign_row, tenant = store.campaign_and_tenant(
                conn, run["tenant_id"], run["campaign_id"]
            )
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
            store.release_run(conn, run["run_id"], at, why)

    def _recover(self, run: dict[str, Any], campaign: Campaign) -> None:
        """Deliveries left ``sending`` by a worker that died mid-call."""
        with self.pool.connection() as conn:
            if senders.SENDERS[campaign.channel].idempotent:
                store.resend_interrupted(conn, run["run_id"])
            else:
                n = store.give_up_interrupted(conn, run["run_id"])
                if n:
                    log.warning("deliveries_interrupted", run_id=run["run_id"], count=n)
                    DELIVERIES.labels(run["tenant_id"], campaign.channel, "unknown").inc(n)

    def _plan(self, run: dict[str, Any], campaign: Campaign, now: datetime) -> None:
        scope = None
        if run["subject_kind"]:
            scope = Scope(run["subject_kind"], run["subject_id"])
        with self.pool.connection() as conn, conn.transaction():
            if campaign.channel in budget.CHANNELS:  # one plan per tenant at a time
                budget.lock_for_plan(conn, run["tenant_id"])
            decisions = plan(conn, campaign, now, scope)
            while chunk := list(islice(decisions, PLAN_CHUNK)):
                store.insert_deliveries(conn, run, campaign.channel, _delivery_rows(chunk))
            store.mark_planned(conn, run["run_id"], now)

    # --- sending ---------------------------------------------------------------------------

    def _send_all(self, run: dict[str, Any], campaign: Campaign, tz: str) -> None:
        with self.pool.connection() as conn:  # read once per run, not once per call
            payloads_ = store.content_payloads(conn, run["tenant_id"], campaign.content_ids)
        size = senders.SENDERS[campaign.channel].chunk
        renewed = self.clock()
        refused: dict[str, payloads.BadContent] = {}  # images that could not be had: not again
        while True:
            # Temporary media first, while nothing is marked sending: a slow image server
            # cannot keep deliveries in flight past the lease (services/outreach/media.py).
            ready = self._media(run, campaign, payloads_, refused)
            with self.pool.connection() as conn:  # marked sending and committed before the call
                batch = store.next_batch(conn, run["run_id"], size)
            if not batch:
                return
            self._send(run, campaign, batch, tz, ready.get(batch[0]["content_id"], {}))
            if self.clock() - renewed > self.lease / 3:  # renewed well before it can lapse
                renewed = self.clock()
                with self.pool.connection() as conn:
                    store.renew_lease(conn, run["run_id"], renewed + self.lease)

    def _media(self, run, campaign: Campaign, payloads_: dict[str, Any],
               refused: dict[str, payloads.BadContent]) -> dict[str, Any]:  # fmt: skip
        """Each content's payloads with temporary media valid for the next batch (an image that
        cannot be had: its BadContent, failing the batches that would carry it, and kept in
        ``refused`` so the run does not download it again)."""
        if campaign.channel not in budget.CHANNELS:
            return payloads_
        tenant_id, ready = run["tenant_id"], dict(refused)
        client, get = self.clients.wecom(tenant_id), media.fetcher(self.allow_private_media)
        for content_id, p in payloads_.items():
            if content_id in refused:
                continue
            try:
                ready[content_id] = media.fresh(self.pool, client, tenant_id, p, self.clock(), get)
            except payloads.BadContent as exc:
                ready[content_id] = refused[content_id] = exc
            except (RateLimited, WeComUnavailable) as exc:  # nothing marked sending yet
                delay = getattr(exc, "retry_after", None) or 60
                raise RetryLater(timedelta(seconds=delay), str(exc)) from None
            except WeComError as exc:  # media/upload refused it: that content's batches fail
                ready[content_id] = refused[content_id] = payloads.BadContent(
                    f"media/upload: {exc}"
                )
        return ready

    def _send(self, run, campaign: Campaign, batch, tz: str, payloads_) -> None:
        tenant_id = run["tenant_id"]
        try:
            if isinstance(payloads_, payloads.BadContent):
                raise payloads_
            outcome = senders.send(self.clients, self.signer, self.public_url, run, campaign,
                                   batch, payloads_)  # fmt: skip
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
            n = store.back_to_pending(
                conn, ids, MAX_ATTEMPTS, str(exc)[:300], getattr(exc, "errcode", None)
            )
        if n:  # out of attempts: failed for good
            DELIVERIES.labels(batch[0]["tenant_id"], batch[0]["channel"], "failed").inc(n)

    def _record(self, tenant_id: str, channel: str, batch, outcome) -> None:
        """Each delivery's outcome (one statement for the batch) and the exposures it made."""
        now = self.clock()
        rows = [(d["delivery_id"], *outcome[d["delivery_id"]]) for d in batch]
        with self.pool.connection() as conn, conn.transaction():
            store.record_outcomes(conn, now, rows)
            sent = [r[0] for r in rows if r[1] == "sent"]
            if sent:
                store.expose(conn, sent, now)
                budget.record_own(conn, sent, now)  # the platform budget they consumed
        for status, n in collections.Counter(r[1] for r in rows).items():
            DELIVERIES.labels(tenant_id, channel, status).inc(n)

    def _finish(self, run: dict[str, Any], status: str, error: str | None) -> dict[str, Any]:
        with self.pool.connection() as conn, conn.transaction():
            stats = store.run_stats(conn, run["run_id"])
            store.finish_run(conn, run["run_id"], status, error, self.clock(), stats)
        return stats


def _until_tomorrow(now: datetime, tz: str) -> timedelta:
    local = now.astimezone(zone(tz))
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=5, second=0, microsecond=0)
    return tomorrow - local


def _delivery_rows(chunk: list[tuple[Recipient, Decision]]) -> list[tuple]:
    return [
        (r.kind, r.id, r.address, r.sender, d.content_id,
         "pending" if d.send else "excluded", d.reason,
         len(r.members) if r.kind == "group" else 0 if r.kind == "tag" else 1)
        for r, d in chunk
    ]  # fmt: skip
