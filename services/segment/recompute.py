"""`siyu segment recompute --tenant ID [--workers N]`: re-derive every contact of a tenant on every
core, safely beside the consumer.

The tenant's contacts are split into N partitions by a hash of the contact id (N: the cores, or
``--workers``). One process per partition (spawned, each with its own pool) walks its partition
in keyset batches, one transaction each, skipping the rows the consumer has locked
(``segments.recompute``): every contact is derived once, by one process, at one shared clock.

The workers report each batch through a queue; this process shows one progress bar and is the
only one to drain the outbox (the profiles the workers queue), between their reports: the
workers spend their time deriving, and one drainer publishes each row once, in id order (the
outbox's advisory lock would keep several from doubling rows too, but not from idling on it).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import click
import structlog
from psycopg import Connection

from services.segment import store
from services.segment.derive import refresh_contacts
from services.segment.segments import recompute
from services.segment.topics import Topics
from shared.config import Settings
from shared.db import NO_TIMEOUTS, create_pool
from shared.errors import ConfigError, SiyuError, UnknownTenant
from shared.kafka.producer import create_producer
from shared.logging import configure_logging
from shared.outbox import drain
from shared.privacy import install_privacy_key
from shared.tenants import Tenant, load_tenants

log = structlog.get_logger("siyu.segment.recompute")

# What one batch of one worker does: (conn, tenant, locked rows, the recompute's clock, topics)
# -> contacts evaluated. A module-level function: it is handed to spawned processes by name.
Evaluate = Callable[[Connection, Tenant, list[dict], datetime, Topics], int]
DRAIN_BATCH = 200
POLL_S = 0.25  # how often the parent looks at its workers (and drains) without a report


class RecomputeFailed(SiyuError):
    code = "recompute_failed"


def derive_batch(conn: Connection, tenant: Tenant, rows: list[dict], now: datetime, topics: Topics):
    refresh_contacts(conn, tenant, rows, topics=topics, now=now, moved_by="recompute")
    return len(rows)


@dataclass(frozen=True)
class Walk:
    """One recompute: what every worker needs (picklable: sent to spawned processes)."""

    settings: Settings
    tenant: str
    schema: str = "segment"
    batch: int = 500
    workers: int = 1
    now: datetime | None = None  # the clock every contact is derived at; None: now
    evaluate: Evaluate = derive_batch


@dataclass(frozen=True)
class Recomputed:
    contacts: int
    startup_s: float  # starting the workers (spawn, imports, pools) until all are ready
    walk_s: float  # from then until the last batch


def default_workers() -> int:
    return os.cpu_count() or 1


def _tenant(settings: Settings, tenant_id: str) -> Tenant:
    found = load_tenants(settings.tenants_path).get(tenant_id)
    if found is None:
        raise UnknownTenant(f"unknown tenant {tenant_id!r} (not in {settings.tenants_path})")
    return found


def _walk_partition(walk: Walk, k: int, pool, tenant: Tenant, report: Callable[[int], None]):
    topics = Topics.with_prefix(walk.settings.kafka.topic_prefix)

    def evaluate(conn, tenant_, rows) -> int:
        return walk.evaluate(conn, tenant_, rows, walk.now, topics)

    return recompute(pool.connection, tenant, evaluate=evaluate, batch=walk.batch,
                     progress=report, partition=(k, walk.workers))  # fmt: skip


class _Stopped(Exception):
    """Another worker failed: this one stops after its batch (committed; nothing half done)."""


def _worker(walk: Walk, k: int, reports, go, stop) -> None:
    """One partition, in its own process: ("ready"), then ("batch", n)..., then ("done", n) or
    ("failed", why) on ``reports``."""
    settings = walk.settings
    install_privacy_key(settings.privacy_key)  # as siyu/cli.py does for every process
    configure_logging(settings.log_level, process=f"segment-recompute-{k}")
    try:
        tenant = _tenant(settings, walk.tenant)
        pool = create_pool(settings.require_database(), name=f"segment-recompute-{k}",
                           schema=walk.schema, timeouts=NO_TIMEOUTS, max_size=1)  # fmt: skip
    except Exception as exc:
        reports.put(("failed", k, f"{type(exc).__name__}: {exc}"))
        raise
    try:
        pool.wait()  # connected before it says it is ready
        reports.put(("ready", k, 0))
        while not go.wait(POLL_S) and not stop.is_set():
            pass
        if stop.is_set():  # another one failed to start
            return

        def report(n: int) -> None:
            reports.put(("batch", k, n))
            if stop.is_set():
                raise _Stopped

        reports.put(("done", k, _walk_partition(walk, k, pool, tenant, report)))
    except _Stopped:
        reports.put(("failed", k, "stopped"))
    except BaseException as exc:
        reports.put(("failed", k, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        pool.close()


def run(
    walk: Walk,
    *,
    pool=None,
    progress: Callable[[int], None] = lambda n: None,
    idle: Callable[[], None] = lambda: None,
) -> Recomputed:
    """Recompute ``walk``: in this process with one worker (``pool`` given: its own is used),
    else one spawned process per partition. ``progress(n)`` after every batch and ``idle()``
    while waiting run in this process (the progress bar, the outbox drain)."""
    if walk.workers < 1:
        raise ConfigError(f"workers must be at least 1 (got {walk.workers})")
    _tenant(walk.settings, walk.tenant)
    if walk.now is None:
        walk = replace(walk, now=datetime.now(UTC))
    if walk.workers == 1:
        own = pool is None
        if own:
            pool = create_pool(walk.settings.require_database(), name="segment-recompute",
                               schema=walk.schema, timeouts=NO_TIMEOUTS, max_size=1)  # fmt: skip
        try:
            t0 = time.perf_counter()
            done = _walk_partition(walk, 0, pool, _tenant(walk.settings, walk.tenant), progress)
            return Recomputed(done, 0.0, time.perf_counter() - t0)
        finally:
            if own:
                pool.close()
    return _run_processes(walk, progress, idle)


def _run_processes(walk: Walk, progress, idle) -> Recomputed:
    ctx = multiprocessing.get_context("spawn")  # no forked copy of this process's pools/threads
    reports, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    workers = [
        ctx.Process(target=_worker, args=(walk, k, reports, go, stop),
                    name=f"segment-recompute-{k}", daemon=True)
        for k in range(walk.workers)
    ]  # fmt: skip
    t0 = time.perf_counter()
    ready, done, failed = set(), {}, {}
    walk_started = None
    try:
        for w in workers:
            w.start()
        while len(done) < len(workers) and not failed:
            try:
                kind, k, value = reports.get(timeout=POLL_S)
            except queue.Empty:
                idle()
                for k, w in enumerate(workers):  # died without a word (killed, out of memory)
                    if w.exitcode not in (None, 0):
                        failed.setdefault(k, f"exited with code {w.exitcode}")
                continue
            if kind == "ready":
                ready.add(k)
                if len(ready) == len(workers):
                    walk_started = time.perf_counter()
                    go.set()
            elif kind == "batch":
                progress(value)
            elif kind == "done":
                done[k] = value
            else:
                failed[k] = value
        walk_ended = time.perf_counter()  # not the workers' exit below
    finally:
        if failed or len(done) < len(workers):  # a failure, or this process was interrupted
            stop.set()
        go.set()
        # Keep reading while they finish: a process does not exit before its reports are read,
        # and those that failed say why.
        deadline = time.monotonic() + 60
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            _last_words(reports, failed)
        _last_words(reports, failed, timeout=0)
        for w in workers:
            if w.is_alive():
                w.terminate()  # its open transaction rolls back
            if w.pid is not None:  # started
                w.join(10)
        reports.close()
    if failed:
        why = "; ".join(f"worker {k}: {v}" for k, v in sorted(failed.items()) if v != "stopped")
        raise RecomputeFailed(f"recompute of {walk.tenant} failed ({why}); contacts derived "
                              "so far are kept, run it again to finish")  # fmt: skip
    started = walk_started or t0
    return Recomputed(sum(done.values()), started - t0, walk_ended - started)


def _last_words(reports, failed: dict[int, str], timeout: float = POLL_S) -> None:
    try:
        kind, k, value = reports.get(timeout=timeout) if timeout else reports.get_nowait()
    except queue.Empty:
        return
    if kind == "failed" and value != "stopped":
        failed[k] = value


def main(
    settings: Settings,
    *,
    tenant: str,
    batch: int = 500,
    schema: str = "segment",
    workers: int | None = None,
) -> int:
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {workers})")
    _tenant(settings, tenant)
    settings.require_kafka()
    # An explicit long job: a tenant's whole recompute is not bound by the workers' limits.
    pool = create_pool(
        settings.require_database(),
        name="segment-recompute",
        schema=schema,
        timeouts=NO_TIMEOUTS,
    )
    producer = create_producer(settings.kafka, client_id="siyu-segment-recompute")

    def flush() -> None:
        while drain(pool, lambda: producer, batch=DRAIN_BATCH) == DRAIN_BATCH:
            pass

    walk = Walk(settings, tenant, schema=schema, batch=batch, workers=workers)
    try:
        with pool.connection() as conn:
            total = store.contact_count(conn, tenant)
        with click.progressbar(length=total, label=f"recompute {tenant} ({workers} workers)",
                               show_eta=True, show_pos=True, file=sys.stderr) as bar:  # fmt: skip

            def progress(n: int) -> None:
                bar.update(n)
                flush()

            result = run(walk, pool=pool, progress=progress, idle=flush)
        flush()  # the last batches' profiles
        with pool.connection() as conn:
            sizes = conn.execute(
                "SELECT s.segment_id, count(m.contact_id) AS n FROM segments s "
                "LEFT JOIN segment_members m USING (tenant_id, segment_id) "
                "WHERE s.tenant_id = %s GROUP BY 1 ORDER BY 1",
                (tenant,),
            ).fetchall()
    finally:
        producer.close()
        pool.close()
    log.info("recompute_done", tenant_id=tenant, contacts=result.contacts, workers=workers,
             startup_s=round(result.startup_s, 2), walk_s=round(result.walk_s, 2))  # fmt: skip
    click.echo(f"{result.contacts} contacts of {tenant} re-derived")
    for row in sizes:
        click.echo(f"  segment {row['segment_id']}: {row['n']} members")
    return 0
