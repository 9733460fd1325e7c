"""`siyu outreach worker`: the audience projection, the scheduler (when leader), the senders.

Threads: the projection consumer (``siyu-outreach`` group on the profile, stage-change and
catalogue topics), the welcome-on-add consumer (``siyu-outreach-welcome``: welcome.py) and the
effects consumer (``siyu-outreach-effects`` on the signals topic: clicks and replies for the
effect report, effects.py), both watched (shared/watched.py: if one dies the worker is not
ready and exits non-zero), and the loop below; every replica sends
(runs are claimed with SKIP LOCKED and a lease), only the holder of the advisory lock schedules
and syncs WeCom groups.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import (
    backlog,
    budget_sync,
    channel_codes,
    effects,
    group_tasks,
    groups,
    lost_alerts,
    media,
    metrics,
    projection,
    results,
    runs,
    scheduler,
    tenant_deletion,
    welcome,
)
from services.outreach.clients import Clients
from shared.config import Settings
from shared.db import create_pool
from shared.health import BackgroundServer, create_ops_app, postgres_check
from shared.kafka.consumer import ConsumerRunner, DeadLetterQueue, create_consumer
from shared.kafka.dlq_limit import DlqLimit
from shared.kafka.producer import create_producer
from shared.kafka.topics import (
    CATALOGUE,
    ERASURES,
    OUTREACH_DLQ,
    PROFILES,
    SIGNALS,
    STAGE_CHANGES,
)
from shared.links import LinkSigner
from shared.tenants import TenantRegistry, load_tenants
from shared.watched import Watched
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

GROUP = "siyu-outreach"
TICK_S = 1.0
GROUP_SYNC_S = 300.0
POLL_RESULTS_S = 30.0
BACKLOG_S = 30.0  # the delivery gauges (backlog.py): a scrape interval or two


def build_runner(settings: Settings, pool: ConnectionPool, *, group: str = GROUP):
    kafka = settings.kafka
    producer = create_producer(kafka, client_id="siyu-outreach")
    return ConsumerRunner(
        create_consumer(kafka, group_id=group, client_id="siyu-outreach"),
        topics=[
            kafka.topic(PROFILES),
            kafka.topic(STAGE_CHANGES),
            kafka.topic(CATALOGUE),
            kafka.topic(ERASURES),
        ],
        group=group,
        decode=projection.decode,
        process=projection.make_process(pool),
        dlq=DeadLetterQueue(producer, kafka.topic(OUTREACH_DLQ), group=group),
        dlq_limit=DlqLimit.of(kafka),
        max_batch=kafka.max_batch,
    )


def build_welcome_runner(settings: Settings, welcomer: welcome.Welcomer, *,
                         group: str = welcome.GROUP):  # fmt: skip
    """The welcome-on-add consumer (services/outreach/welcome.py): its own group on the signals
    topic (shared/signals.py), small fetches so an add waits behind no backlog of the others'."""
    kafka = settings.kafka
    producer = create_producer(kafka, client_id="siyu-outreach-welcome")
    return ConsumerRunner(
        create_consumer(
            kafka,
            group_id=group,
            client_id="siyu-outreach-welcome",
            fetch_max_wait_ms=min(kafka.fetch_max_wait_ms, 100),
        ),
        topics=[kafka.topic(SIGNALS)],
        group=group,
        decode=welcome.decode,
        process=welcome.process_of(welcomer),
        dlq=DeadLetterQueue(producer, kafka.topic(OUTREACH_DLQ), group=group),
        dlq_limit=DlqLimit.of(kafka),
        max_batch=kafka.max_batch,
        poll_timeout_ms=100,
    )


def link_signer(tenants: TenantRegistry, secret: str) -> LinkSigner | None:
    return LinkSigner(secret, tenants) if len(secret) >= 16 else None


class Loop:
    """Scheduling, group sync and the group tasks' cancellations and reminders (leader only);
    sending, send-result polling (claimed per message) and the delivery gauges (every replica:
    each one's scrape says the same)."""

    def __init__(self, settings: Settings, pool: ConnectionPool, tenants: TenantRegistry,
                 clients: Clients, schema: str):  # fmt: skip
        self.pool, self.tenants, self.clients = pool, tenants, clients
        self.console_url = settings.console_url
        self.leadership = scheduler.Leadership(settings.require_database(), schema)
        # A run whose worker died is taken over when its lease passes (SIYU_OUTREACH_LEASE_S).
        lease = timedelta(seconds=settings.outreach_lease_s)
        self.executor = runs.Executor(
            pool,
            clients,
            link_signer(tenants, settings.link_secret),
            settings.public_url,
            lease,
            allow_private_media=settings.media_allow_private,
        )
        self._stop = threading.Event()
        self._synced_at = 0.0
        self._polled_at = 0.0
        self._counted_at = 0.0
        self.last_tick: float | None = None
        self.clock = lambda: datetime.now(UTC)

    def tick(self) -> None:
        now = self.clock()
        if self.leadership.held():
            scheduler.materialise(self.pool, now)  # one short transaction per campaign
            if time.monotonic() - self._synced_at > GROUP_SYNC_S:
                self.sync_groups(now)
            tenant_deletion.purge_pending(self.pool)  # deleted tenants, a few batches a tick
            # Each step on its own: one failing (a bug, a database error) must not stall the
            # others, nor the sends below; each is retried on the next tick.
            for name, step in (
                # the members' own group sends, for the platform's budget
                ("budget_poll", lambda: budget_sync.poll_due(self.pool, self.clients,
                                                             self.tenants, now)),
                # pending codes, daily caps, day rollover
                ("channel_codes", lambda: channel_codes.step(self.pool, self.clients, now)),
                # cancellations, reminders, pruning
                ("group_tasks", lambda: group_tasks.step(self.pool, self.clients, now)),
                # lost claims, tags, images uploaded ahead
                ("welcome", lambda: welcome.step(
                    self.pool, self.clients, self.tenants, now,
                    fetch=media.fetcher(self.executor.allow_private_media))),
            ):  # fmt: skip
                try:
                    step()
                except Exception:
                    log.exception("outreach_step_failed", step=name)
        self.executor.run_due()
        lost_alerts.send_due(self.pool, self.clients, self.tenants, self.console_url)
        if time.monotonic() - self._polled_at > POLL_RESULTS_S:
            results.poll_results(self.pool, self.clients, now)  # claimed: every replica polls
            self._polled_at = time.monotonic()
        if time.monotonic() - self._counted_at > BACKLOG_S:
            backlog.refresh(self.pool)
            self._counted_at = time.monotonic()
        self.last_tick = time.monotonic()

    def sync_groups(self, now: datetime) -> None:
        for tenant in self.tenants:
            client = self.clients.wecom(tenant.id)
            if client is None:
                continue
            try:
                groups.sync_groups(self.pool, tenant.id, client, now)
            except WeComError as exc:
                log.warning("wecom_groups_sync_failed", tenant_id=tenant.id, error=str(exc))
        self._synced_at = time.monotonic()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick must not stop the sender; the next one retries
                log.exception("outreach_tick_failed")
            self._stop.wait(TICK_S)
        self.leadership.release()

    def stop(self) -> None:
        self._stop.set()


def main(settings: Settings, *, metrics_port: int, metrics_host: str = "127.0.0.1") -> int:
    tenants = load_tenants(settings.tenants_path)
    settings.require_kafka()
    schema = settings.outreach_schema
    pool = create_pool(
        settings.require_database(), name="outreach", schema=schema, timeouts=settings.worker_db
    )
    runner = build_runner(settings, pool)
    clients = Clients(settings, tenants, pool=pool)
    signer = link_signer(tenants, settings.link_secret)
    # Welcomes have a small pool of their own: campaign sends never hold their connections.
    welcome_pool = create_pool(settings.require_database(), name="outreach-welcome",
                               schema=schema, timeouts=settings.worker_db, max_size=4)  # fmt: skip
    welcomer = welcome.Welcomer(welcome_pool, clients, tenants, signer, settings.public_url)
    welcome_runner = build_welcome_runner(settings, welcomer)
    # Rate limits per corp/app shared with every other worker, through the database.
    loop = Loop(settings, pool, tenants, clients, schema)
    metrics.count_from_zero(t.id for t in tenants)

    def ticking() -> None:
        if loop.last_tick is not None and time.monotonic() - loop.last_tick > 120:
            raise RuntimeError("the outreach loop has not completed a tick in 120 s")

    # Consumers beside the main one: each watched; one dying stops the worker (exit 1).
    outcomes = effects.build_runner(settings, pool)
    side = [
        Watched("outreach-effects", outcomes.run, stop=outcomes.stop, on_death=runner.stop),
        Watched("outreach-welcome", welcome_runner.run, stop=welcome_runner.stop,
                on_death=runner.stop),
    ]  # fmt: skip
    checks = {"postgres": postgres_check(pool), "loop": ticking}
    checks.update({w.name: w.check for w in side})
    ops = create_ops_app(__name__, checks)
    server = BackgroundServer(ops, metrics_host, metrics_port).start()
    runner.install_signal_handlers()
    thread = threading.Thread(target=loop.run, name="outreach-loop", daemon=True)
    thread.start()
    for watched in side:
        watched.start()
    log.info("outreach_worker_starting", metrics_port=server.port)
    try:
        runner.run()  # returns on SIGTERM/SIGINT, or when a watched consumer died
    finally:
        loop.stop()
        for watched in side:
            watched.stop()
        thread.join(30)
        server.stop()
        pool.close()
        welcome_pool.close()
    dead = [w.name for w in side if w.died]
    if dead:
        log.error("outreach_worker_stopping_after_a_death", threads=dead)
        return 1
    return 0
