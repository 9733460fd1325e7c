"""Background jobs of the admin API: work too big for a request (a lifecycle dry run or a
campaign preview over all of a tenant's contacts) is queued in the service's ``jobs`` table
(segment migration 0008, outreach 0006) and answered 202 with a URL to poll; threads of the
admin API process run it (docs/architecture.md, "Background jobs").

- One queued or running job per tenant and kind (a unique partial index): a second request is
  refused with a 409 naming the job in progress (``Busy``).
- Bounded: a process runs at most ``threads`` jobs at once, and all processes together at most
  ``max_running`` of a table (counted under an advisory lock when a job is claimed), oldest
  first: with one job per tenant and kind, a tenant never holds more than one slot per kind.
- Nothing is lost: the queue is the table. A running job heartbeats; one whose heartbeat is
  older than ``stale_after`` (its process died) is queued again, or failed after
  ``MAX_ATTEMPTS``. Its old runner, if it was only slow, can no longer write its result; the
  same holds for a job an erasure queued again (shared/job_results.py): a result computed
  before the erasure is never stored.
- Results expire ``ttl`` after the job finished (deleted by the runners).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Histogram
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.config import JobSettings

log = structlog.get_logger("siyu.jobs")

JOBS_DONE = Counter(
    "siyu_api_jobs_total", "Background jobs of the admin API finished", ["kind", "outcome"]
)
JOB_SECONDS = Histogram(
    "siyu_api_job_seconds", "Background job run time", ["kind"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)  # fmt: skip

EXTENSION = "siyu.jobs"  # the app's Runner, woken when a job is queued
MAX_ATTEMPTS = 2
STATUSES = ("queued", "running", "done", "failed")
COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("job_id", "tenant_id", "kind", "subject", "params", "status", "progress",
                         "result", "error", "attempts", "created_at", "started_at", "heartbeat_at",
                         "finished_at", "expires_at"))
)  # fmt: skip
ACTIVE = sql.SQL("status IN ('queued', 'running')")

Progress = Callable[[float], None]


class Busy(Exception):
    """The tenant has a job of this kind queued or running already."""

    def __init__(self, job: dict):
        super().__init__(job["job_id"])
        self.job = job


class JobFailed(Exception):
    """A job's input turned out unusable: its message is the job's error, shown to the caller."""


@dataclass(frozen=True)
class JobKind:
    """``run(conn, job, progress)`` returns the result (JSON-able; datetimes become ISO
    strings). ``conn`` is one transaction whose search_path is the schema of ``service``, then
    outreach's; ``progress(fraction)`` is cheap, call it as often as convenient."""

    name: str
    service: str
    run: Callable[[psycopg.Connection, dict, Progress], dict]


def _dumps(value: Any) -> str:
    def default(v: Any) -> str:
        if isinstance(v, datetime | date):
            return v.isoformat()
        raise TypeError(f"{type(v).__name__} is not JSON")

    return json.dumps(value, default=default, ensure_ascii=False)


# --- the table -----------------------------------------------------------------------------------


def submit(conn, *, tenant: str, kind: str, subject: str, params: dict, created_by: str | None,
           ttl: timedelta) -> dict:  # fmt: skip
    """Queue a job (in ``conn``'s transaction); ``Busy`` if the tenant has one of this kind."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO jobs (job_id, tenant_id, kind, subject, params, created_by, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp() + %s) "
            "ON CONFLICT (tenant_id, kind) WHERE {} DO NOTHING RETURNING {}"
        ).format(ACTIVE, COLUMNS),
        ("job_" + secrets.token_hex(8), tenant, kind, subject, Jsonb(params, dumps=_dumps),
         created_by, ttl),
    ).fetchone()  # fmt: skip
    if row is not None:
        return row
    active = conn.execute(
        sql.SQL("SELECT {} FROM jobs WHERE tenant_id = %s AND kind = %s AND {}").format(
            COLUMNS, ACTIVE
        ),
        (tenant, kind),
    ).fetchone()
    if active is None:  # it finished between the two statements: queue this one
        return submit(conn, tenant=tenant, kind=kind, subject=subject, params=params,
                      created_by=created_by, ttl=ttl)  # fmt: skip
    raise Busy(active)


def get(conn, *, tenant: str, kind: str, subject: str, job_id: str) -> dict | None:
    """A job of the tenant, of this kind and about this subject (else None: not found)."""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM jobs WHERE job_id = %s AND tenant_id = %s AND kind = %s "
            "AND subject = %s"
        ).format(COLUMNS),
        (job_id, tenant, kind, subject),
    ).fetchone()


def claim(conn, kinds: list[str], max_running: int) -> dict | None:
    """The oldest queued job of ``kinds``, now running, unless ``max_running`` jobs of the
    table run already (in ``conn``'s transaction, which the caller commits at once)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.jobs'))")
    running = conn.execute("SELECT count(*) AS n FROM jobs WHERE status = 'running'").fetchone()
    if running["n"] >= max_running:
        return None
    return conn.execute(
        sql.SQL(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, "
            "started_at = clock_timestamp(), heartbeat_at = clock_timestamp(), error = NULL "
            "WHERE job_id = (SELECT job_id FROM jobs WHERE status = 'queued' AND kind = ANY(%s) "
            "                ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING {}"
        ).format(COLUMNS),
        (kinds,),
    ).fetchone()


def heartbeat(conn, job: dict, progress: float) -> None:
    conn.execute(
        "UPDATE jobs SET heartbeat_at = clock_timestamp(), progress = %s "
        "WHERE job_id = %s AND status = 'running' AND attempts = %s",
        (round(progress, 4), job["job_id"], job["attempts"]),
    )


def finish(conn, job: dict, *, result: dict | None, error: str | None, ttl: timedelta) -> bool:
    """Record the outcome; False if the job is no longer this runner's (it was requeued)."""
    row = conn.execute(
        "UPDATE jobs SET status = %s, result = %s, error = %s, "
        "progress = CASE WHEN %s::text IS NULL THEN 1 ELSE progress END, "
        "finished_at = clock_timestamp(), expires_at = clock_timestamp() + %s "
        "WHERE job_id = %s AND status = 'running' AND attempts = %s RETURNING job_id",
        ("failed" if error else "done", Jsonb(result, dumps=_dumps) if result is not None else None,
         error, error, ttl, job["job_id"], job["attempts"]),
    ).fetchone()  # fmt: skip
    return row is not None


def recover(conn, stale_after: timedelta, ttl: timedelta) -> list[dict]:
    """Jobs whose runner stopped heartbeating (its process died): queued again, or failed once
    they had ``MAX_ATTEMPTS``."""
    return conn.execute(
        "UPDATE jobs SET "
        "status = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'queued' END, "
        "error = CASE WHEN attempts >= %(max)s "
        "             THEN 'interrupted: the process running it stopped' END, "
        "finished_at = CASE WHEN attempts >= %(max)s THEN clock_timestamp() END, "
        "expires_at = clock_timestamp() + %(ttl)s "
        "WHERE status = 'running' AND heartbeat_at < clock_timestamp() - %(stale)s "
        "RETURNING job_id, tenant_id, kind, status",
        {"max": MAX_ATTEMPTS, "ttl": ttl, "stale": stale_after},
    ).fetchall()


def expire(conn) -> int:
    """Delete jobs past their expiry (a queued one too: nobody polls it any more)."""
    return conn.execute(
        "DELETE FROM jobs WHERE expires_at < clock_timestamp() AND status <> 'running'"
    ).rowcount


# --- the runner ----------------------------------------------------------------------------------


@dataclass
class Runner:
    """Runs the queued jobs of ``kinds`` on ``threads`` daemon threads of this process."""

    pool: ConnectionPool
    schema_for: Callable[[str], str]
    kinds: dict[str, JobKind]
    settings: JobSettings = field(default_factory=JobSettings)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _running: dict[str, tuple[str, dict, list[float]]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _housekept: float = field(default=0.0, init=False)
    _turn: int = field(default=0, init=False)  # the service whose queue is looked at first

    def start(self) -> Runner:
        if not self.kinds:
            return self
        for i in range(self.settings.threads):
            self._spawn(self._loop, f"siyu-jobs-{i}")
        self._spawn(self._beat, "siyu-jobs-heartbeat")
        return self

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def drain(self) -> int:
        """Run queued jobs in the calling thread until none is left (tests, ``siyu`` tools)."""
        ran = 0
        while self.run_one():
            ran += 1
        return ran

    @contextmanager
    def connection(self, service: str) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            schemas = [self.schema_for(service), self.schema_for("outreach")]
            conn.execute(
                sql.SQL("SET LOCAL search_path TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(s) for s in dict.fromkeys(schemas))
                )
            )
            yield conn

    def _services(self) -> dict[str, list[str]]:
        by_service: dict[str, list[str]] = {}
        for kind in self.kinds.values():
            by_service.setdefault(kind.service, []).append(kind.name)
        return by_service

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except PoolClosed:
                return
            except (PoolTimeout, psycopg.OperationalError) as exc:
                log.warning("jobs_unavailable", error=str(exc)[:200])
                ran = False
            except Exception:  # one bad round must not stop the runner
                log.exception("jobs_round_failed")
                ran = False
            if not ran:
                self._wake.wait(self.settings.poll_s)
                self._wake.clear()

    def run_one(self) -> bool:
        """Claim and run one queued job, if any (and housekeeping now and then)."""
        self._housekeeping()
        # The services take turns at being looked at first, so a steady stream of one's jobs
        # (lifecycle dry runs) cannot starve another's (campaign previews).
        services = list(self._services().items())
        with self._lock:
            first = self._turn % len(services) if services else 0
            self._turn = first + 1
        for service, names in services[first:] + services[:first]:
            with self.connection(service) as conn:
                job = claim(conn, names, self.settings.max_running)
            if job is not None:
                self._execute(service, job)
                return True
        return False

    def _housekeeping(self) -> None:
        if time.monotonic() - self._housekept < self.settings.stale_after.total_seconds() / 4:
            return
        self._housekept = time.monotonic()
        for service in self._services():
            with self.connection(service) as conn:
                for job in recover(conn, self.settings.stale_after, self.settings.ttl):
                    log.warning("job_interrupted", job_id=job["job_id"], kind=job["kind"],
                                tenant_id=job["tenant_id"], now=job["status"])  # fmt: skip
                expire(conn)

    def _execute(self, service: str, job: dict) -> None:
        kind = self.kinds[job["kind"]]
        fraction = [0.0]
        with self._lock:
            self._running[job["job_id"]] = (service, job, fraction)
        log.info("job_started", job_id=job["job_id"], kind=kind.name, tenant_id=job["tenant_id"])
        result, error = None, None
        started = time.perf_counter()
        try:
            with self.connection(service) as conn:
                conn.execute(  # SET, not set_config(): a job may still SET TRANSACTION
                    sql.SQL("SET LOCAL statement_timeout = {}").format(
                        sql.Literal(self.settings.statement_timeout)
                    )
                )
                result = kind.run(conn, job, lambda f: fraction.__setitem__(0, f))
        except JobFailed as exc:
            error = str(exc)
        except Exception:
            log.exception("job_failed", job_id=job["job_id"], kind=kind.name)
            error = "the job failed (an internal error; the API's log has it)"
        finally:
            with self._lock:
                self._running.pop(job["job_id"], None)
        with self.connection(service) as conn:
            mine = finish(conn, job, result=result, error=error, ttl=self.settings.ttl)
        JOB_SECONDS.labels(kind=kind.name).observe(time.perf_counter() - started)
        outcome = ("failed" if error else "done") if mine else "superseded"
        JOBS_DONE.labels(kind=kind.name, outcome=outcome).inc()
        log.info("job_finished", job_id=job["job_id"], kind=kind.name, tenant_id=job["tenant_id"],
                 failed=bool(error), recorded=mine)  # fmt: skip

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat.total_seconds()):
            if self.pool.closed:
                return
            with self._lock:
                running = list(self._running.values())
            for service, job, fraction in running:
                try:
                    with self.connection(service) as conn:
                        heartbeat(conn, job, fraction[0])
                except PoolClosed:
                    return
                except Exception as exc:
                    log.warning("job_heartbeat_failed", job_id=job["job_id"], error=str(exc)[:200])


def wake() -> None:
    """Tell this process's runner a job was queued (inside a request of the admin API)."""
    from flask import current_app

    runner = current_app.extensions.get(EXTENSION)
    if runner is not None:
        runner.wake()
