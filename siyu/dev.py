"""`siyu dev`: the whole stack on one machine, stopped cleanly by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from shared.config import Settings
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.lock import DevLock, DevStackInfo
from shared.devstack.postgres import EmbeddedPostgres, local_dsn
from shared.devstack.readiness import wait_ready
from shared.devstack.supervisor import ChildSpec, Supervisor
from shared.kafka.tansu import DEV_TIMINGS_ENV
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_all
from shared.privacy import DEV_PRIVACY_KEY, PRIVACY_KEY_ENV
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, check_secrets, load_tenants
from siyu.processes import PROCESSES, Process, by_name

# Fast consumer-group joins on the embedded broker (shared/kafka/tansu.py); production keeps
# Kafka's defaults.
DEV_KAFKA_ENV = DEV_TIMINGS_ENV
# The console user `siyu dev --demo` gives each demo tenant. Dev only, and printed at start, like
# the demo tenants' secrets: a deployment creates its users with `siyu user create`.
DEMO_LOGIN, DEMO_PASSWORD = "demo.admin", "siyu-demo-console"
# gunicorn boots its workers in about a second here; far more means a service is stuck.
READY_TIMEOUT_S = 60


@dataclass(frozen=True)
class DevOptions:
    home: Path
    pg_port: int = 5433
    kafka_port: int = 9092
    services: bool = True
    demo: bool = False
    ports: dict[str, int] = field(default_factory=dict)  # process name -> port override

    def port(self, process: Process) -> int | None:
        return self.ports.get(process.name, process.port)


class DevStack:
    def __init__(self, settings: Settings, options: DevOptions, out: TextIO | None = None):
        self.settings = settings
        self.options = options
        self.out = out or sys.stdout
        self.supervisor = Supervisor(out=self.out)
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.lock = DevLock(options.home)
        self._stop = threading.Event()

    def say(self, line: str) -> None:
        self.supervisor.say("dev", line)

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        # First of all, and outside the try: a refusal (StackRunning) must stop nothing, since
        # the PostgreSQL and broker in this home are the live owner's.
        self.lock.acquire(self._info())
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request_stop)
        started = time.monotonic()
        try:
            env = self._start_dependencies()
            if self._stop.is_set():
                return 0
            built = list(PROCESSES) if self.options.services else []
            for process in built:
                self.supervisor.start(self._child(process), env)
            if not self._ready(built):
                return 0 if self._stop.is_set() else 1
            self._announce(built, env, time.monotonic() - started)
            if self.options.demo and built:  # the simulators need ingest
                self._start_demo(env)
            return self._wait()
        finally:
            self._shutdown()

    def tenants_path(self) -> Path:
        """SIYU_TENANTS, else the demo tenants: `siyu dev` alone may fall back to them."""
        return (self.settings.tenants_path or DEMO_TENANTS_PATH).resolve()

    def _info(self) -> DevStackInfo:
        """What the lock file tells a second start, and the token commands, about this stack."""
        built = list(PROCESSES) if self.options.services else []
        return DevStackInfo(
            pid=os.getpid(),
            home=str(self.lock.home),
            started_at=time.strftime("%Y-%m-%d %H:%M:%S %z"),
            database_url=self.settings.database_url or local_dsn(self.options.pg_port),
            kafka_bootstrap=self.settings.kafka.bootstrap or f"127.0.0.1:{self.options.kafka_port}",
            urls={p.name: p.url(self.options.port(p)) for p in built},
            tenants=str(self.tenants_path()),
        )

    def _start_dependencies(self) -> dict[str, str]:
        home = self.options.home.resolve()
        env = dict(os.environ)
        dsn = self.settings.database_url
        if dsn is None:
            self.postgres = EmbeddedPostgres(home / "pg", port=self.options.pg_port)
            self.say(
                f"starting PostgreSQL on 127.0.0.1:{self.options.pg_port} (data in {home / 'pg'})"
            )
            dsn = self.postgres.start().dsn
        else:
            self.say("using SIYU_DATABASE_URL")
        bootstrap = self.settings.kafka.bootstrap
        if not bootstrap:
            self.broker = EmbeddedBroker(home, port=self.options.kafka_port)
            self.say(
                f"starting Kafka-protocol broker (Tansu) on 127.0.0.1:{self.options.kafka_port}"
            )
            bootstrap = self.broker.start().bootstrap
            self.say(
                "the embedded broker keeps messages in memory only: they are lost when it stops; "
                "set SIYU_KAFKA_BOOTSTRAP=host:port to use a real Kafka instead"
            )
        else:
            self.say("using SIYU_KAFKA_BOOTSTRAP")
        env.update({"SIYU_DATABASE_URL": dsn, "SIYU_KAFKA_BOOTSTRAP": bootstrap})
        for key, value in DEV_KAFKA_ENV.items():
            env.setdefault(key, value)

        applied = migrate_all(dsn)
        self.say(
            "migrations: "
            + ", ".join(
                f"{svc} +{len(v)}" if v else f"{svc} up to date" for svc, v in applied.items()
            )
        )
        kafka = Settings.from_env(env).kafka
        created = ensure_topics(kafka)
        self.say(
            f"topics: {len(created)} created" + (f" ({', '.join(created)})" if created else "")
        )

        # The one process that may fall back to the demo tenants (their secrets are public).
        tenants_path = self.tenants_path()
        if tenants_path == DEMO_TENANTS_PATH.resolve():
            for key, value in DEMO_SECRETS.items():
                env.setdefault(key, value)
        registry = load_tenants(tenants_path)
        check_secrets(registry, env)  # the children's environment: a missing secret stops here
        env["SIYU_TENANTS"] = str(tenants_path)
        env["SIYU_HOME"] = str(home)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("SIYU_LINK_SECRET", "siyu-dev-link-secret-not-for-production")
        env.setdefault("SIYU_CONSOLE_SECRET", "siyu-dev-console-secret-not-for-production")
        env.setdefault(PRIVACY_KEY_ENV, DEV_PRIVACY_KEY)
        # WeChat/WeCom API clients talk to the fake (`siyu fake-wechat`) unless told otherwise.
        fake = f"http://127.0.0.1:{self.options.port(by_name('fake-wechat'))}"
        env.setdefault("SIYU_WECOM_API_BASE", f"{fake}/wecom/cgi-bin/")
        env.setdefault("SIYU_WECHAT_API_BASE", f"{fake}/oa/cgi-bin/")
        env.setdefault("SIYU_MEDIA_ALLOW_PRIVATE", "1")  # the demo's images: the fake, over http
        self.say(
            f"tenants from {tenants_path}: "
            + ", ".join(f"{t.id} ({t.mode}, {t.lifecycle_model})" for t in registry)
        )
        return env

    def _child(self, process: Process) -> ChildSpec:
        argv = [sys.executable, "-m", "siyu.cli", *process.argv]
        port = self.options.port(process)
        if port is not None:
            argv += [process.port_flag, str(port)]
        return ChildSpec(process.name, argv, process.url(port))

    def _ready(self, built: list[Process]) -> bool:
        """Wait until every HTTP service answers /readyz: "ready" must mean requests succeed."""
        urls = {
            p.name: f"http://127.0.0.1:{self.options.port(p)}/readyz"
            for p in built
            if p.port_flag == "--port"  # HTTP servers; consumers only serve metrics
        }
        if urls:
            self.say(f"waiting for {', '.join(urls)} to accept requests")

        def failed() -> str | None:
            exited = self.supervisor.exited()
            return exited[0].spec.name if exited else None

        pending = wait_ready(urls, timeout=READY_TIMEOUT_S, stop=self._stop, failed=failed)
        if self._stop.is_set():
            return False
        for child in self.supervisor.exited():
            code = child.process.returncode
            self.say(f"{child.spec.name} exited with code {code} before it was ready; stopping")
            return False
        if pending:
            self.say(f"not ready after {READY_TIMEOUT_S}s: {', '.join(pending)}; stopping")
            return False
        return True

    def _announce(self, built: list[Process], env: dict[str, str], seconds: float) -> None:
        self.say(f"PostgreSQL  {env['SIYU_DATABASE_URL']}")
        self.say(f"Kafka       {env['SIYU_KAFKA_BOOTSTRAP']}")
        for process in built:
            url = process.url(self.options.port(process)) or "-"
            self.say(f"{process.name:<11} {url}  ({process.what})")
            if process.name == "api":
                console = url.removesuffix(process.path) + "/"
                who = (f"log in as {DEMO_LOGIN}, below" if self.options.demo
                       else "log in as a user of `siyu user create`")  # fmt: skip
                self.say(f"{'console':<11} {console}  ({who})")
        self.say(f"Siyu dev stack ready in {seconds:.1f}s; Ctrl-C stops everything")

    def _start_demo(self, env: dict[str, str]) -> None:
        """One simulator per demo tenant, each with its own business-event token, a console
        user per demo tenant (printed: a newcomer logs in at once) and the demo library."""
        from console.users import ensure_user
        from services.ingest.tokens import create_token

        port = self.options.port(by_name("ingest"))  # ready: run() waited for it
        api = by_name("api")
        api_url = api.url(self.options.port(api))
        settings = Settings.from_env(env)
        for tenant in load_tenants(env["SIYU_TENANTS"]):
            ensure_user(settings, tenant=tenant.id, login=DEMO_LOGIN, role="admin",
                        password=DEMO_PASSWORD, by="siyu dev --demo")  # fmt: skip
            self.say(f"console user of {tenant.id}: tenant {tenant.id}, login {DEMO_LOGIN}, "
                     f"password {DEMO_PASSWORD} (dev only)")  # fmt: skip
            self._seed_library(settings, tenant, api_url)
            token = create_token(env["SIYU_DATABASE_URL"], tenant.id, "siyu dev --demo")
            argv = [sys.executable, "-m", "siyu.cli", "simulate", "--tenant", tenant.id,
                    "--contacts", "300", "--rate", "5", "--duration", "86400", "--seed", "1",
                    "--url", f"http://127.0.0.1:{port}"]  # fmt: skip
            spec = ChildSpec(f"sim-{tenant.id}", argv, env={"SIYU_EVENTS_TOKEN": token})
            self.supervisor.start(spec, env)
        self.say("demo traffic: a simulator per tenant sends 5 requests/s to ingest")

    def _seed_library(self, settings: Settings, tenant, api_url: str) -> None:
        """The demo content, segments and campaigns (sandbox/console_demo.py), through the admin
        API with an admin token (segments are an admin's) that is revoked once they are in."""
        import requests

        from sandbox.console_demo import Api, SeedError, seed
        from services.outreach.tokens import create_token, revoke_token
        from shared.db import connect

        dsn = settings.require_database()
        with connect(dsn, settings.outreach_schema) as conn:
            row, token = create_token(conn, tenant_id=tenant.id, role="admin",
                                      name="siyu dev --demo")  # fmt: skip
        try:
            made = seed(Api(api_url, token), tenant.mode)
        except (SeedError, requests.RequestException) as exc:
            # The stack still runs; its console is only emptier.
            self.say(f"demo library of {tenant.id} not seeded: {exc}")
            return
        finally:
            with connect(dsn, settings.outreach_schema) as conn:
                revoke_token(conn, row["token_id"], tenant_id=tenant.id)
        self.say(f"demo library of {tenant.id}: {made['content']} content items, "
                 f"{made['segments']} segments, {made['campaigns']} campaigns added")  # fmt: skip

    def _wait(self) -> int:
        while not self._stop.wait(0.2):
            for child in self.supervisor.exited():
                self.say(f"{child.spec.name} exited with code {child.process.returncode}; stopping")
                return 1
        self.say("stopping")
        return 0

    def _shutdown(self) -> None:
        # Reverse order of start: services (they commit and flush), then broker, then Postgres.
        self.supervisor.stop_all()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self.lock.release()  # last: a next start may reap only once nothing of ours runs
        self.say("stopped")
