"""Process settings from the environment: every ``SIYU_*`` variable is read here, in
``Settings.from_env`` (Kafka's into shared/kafka/settings.py, rates by shared/limits.py, from the
mapping it is given), and handed to the code that needs it. tests/unit/shared/test_settings_env.py
keeps it that way. The tenants file is shared/tenants.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

from shared.errors import ConfigError
from shared.kafka.security import security_from_env
from shared.kafka.settings import KafkaSettings
from shared.limits import DEFAULT_LIMITS, Limits, limits_from_env


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r}: expected a non-negative integer")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r}: expected a positive number")
    return value


def _env_schema(env: Mapping[str, str], name: str, default: str) -> str:
    schema = env.get(name) or default
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ConfigError(f"{name}={schema!r}: not a schema name")
    return schema


# Per kind of process: (statement ms, idle-in-transaction ms) by default, environment prefix.
# The API answers people waiting on a page; workers batch, so they get ten times as long.
TIMEOUT_DEFAULTS = {
    "api": (30_000, 60_000, "SIYU_API_DB_"),
    "worker": (300_000, 600_000, "SIYU_WORKER_DB_"),
}


@dataclass(frozen=True)
class DbTimeouts:
    """Server-side limits of a pooled connection, in milliseconds (0: none; shared/db.py)."""

    statement_ms: int
    idle_in_transaction_ms: int

    @classmethod
    def defaults(cls, kind: str) -> DbTimeouts:
        statement, idle, _prefix = TIMEOUT_DEFAULTS[kind]
        return cls(statement, idle)

    @classmethod
    def from_env(cls, kind: str, env: Mapping[str, str]) -> DbTimeouts:
        """From ``<prefix>STATEMENT_TIMEOUT_MS`` and ``<prefix>IDLE_IN_TRANSACTION_TIMEOUT_MS``
        of ``env`` (the mapping ``Settings.from_env`` reads)."""
        statement, idle, prefix = TIMEOUT_DEFAULTS[kind]
        values = []
        for key, default in (("STATEMENT_TIMEOUT_MS", statement),
                             ("IDLE_IN_TRANSACTION_TIMEOUT_MS", idle)):  # fmt: skip
            raw = env.get(prefix + key, "").strip()
            try:
                value = int(raw) if raw else default
            except ValueError:
                value = -1
            if value < 0:
                raise ConfigError(f"{prefix}{key}={raw!r}: expected milliseconds (0: no limit)")
            values.append(value)
        return cls(*values)

    def options(self) -> str:
        return (
            f"-c statement_timeout={self.statement_ms} "
            f"-c idle_in_transaction_session_timeout={self.idle_in_transaction_ms}"
        )


@dataclass(frozen=True)
class JobSettings:
    """The admin API's background jobs (shared/jobs.py); here, not there, because shared.jobs
    imports prometheus_client, which must wait for shared/serving.py's metrics folder."""

    threads: int = 2
    max_running: int = 4
    stale_after: timedelta = timedelta(seconds=60)
    heartbeat: timedelta = timedelta(seconds=5)
    ttl: timedelta = timedelta(hours=24)
    poll_s: float = 1.0
    statement_timeout: str = "10min"  # a job's statements: longer than a request's

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobSettings:
        return cls(
            threads=_env_int(env, "SIYU_API_JOB_THREADS", 2),
            max_running=_env_int(env, "SIYU_API_JOBS_MAX_RUNNING", 4),
            ttl=timedelta(hours=_env_float(env, "SIYU_API_JOB_TTL_H", 24.0)),
        )


@dataclass(frozen=True)
class SandboxSettings:
    """The dev stand-ins' options (sandbox/): the fake WeChat API's world, and the token
    `siyu simulate` sends business events with (None: it sends none)."""

    fake_wechat_seed: int = 1
    fake_wechat_contacts: int = 300
    fake_wechat_token_ttl: int | None = None  # None: FakeConfig's (7200 s)
    events_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxSettings:
        return cls(
            fake_wechat_seed=_env_int(env, "SIYU_FAKE_WECHAT_SEED", 1),
            fake_wechat_contacts=_env_int(env, "SIYU_FAKE_WECHAT_CONTACTS", 300),
            fake_wechat_token_ttl=_env_int(env, "SIYU_FAKE_WECHAT_TOKEN_TTL", None),
            events_token=env.get("SIYU_EVENTS_TOKEN") or None,
        )


def _db_api_role(env: Mapping[str, str]) -> str | None:
    role = env.get("SIYU_DB_API_ROLE") or None
    if role is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ConfigError(f"SIYU_DB_API_ROLE={role!r}: not a role name (lower case, digits, _)")
    return role


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_WECHAT_API_BASE = "https://api.weixin.qq.com/cgi-bin/"
DEFAULT_WECOM_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    kafka: KafkaSettings
    tenants_path: Path | None  # None: SIYU_TENANTS unset, and load_tenants refuses
    log_level: str = "INFO"
    home: Path = Path(".siyu")
    # WeCom server API (shared/wechat/wecom.py): base URL (the fake server in dev) and req/s.
    wecom_api_base: str = DEFAULT_WECOM_API_BASE
    wecom_rate: float = 5.0
    # Official Account server API base (the fake server in dev).
    wechat_api_base: str = DEFAULT_WECHAT_API_BASE
    # Where ingest is reachable from the internet: tracked links point at <public_url>/r/<token>.
    public_url: str = "http://127.0.0.1:8080"
    # Where staff open the console (the admin API's root): lost-customer alerts link to
    # <console_url>/contacts/<id> (docs/domain.md "Lost customers").
    console_url: str = "http://127.0.0.1:8090"
    # Every tenant's request rates unless its `limits:` says otherwise (SIYU_LIMIT_*).
    limits: Limits = DEFAULT_LIMITS
    # The schemas of the admin tables (outreach's) and of ingest's tokens; tests use private ones.
    outreach_schema: str = "outreach"
    ingest_schema: str = "ingest"
    # The deployment secret tracked links are signed with (shared/links.py); "" unset.
    link_secret: str = field(default="", repr=False)
    # The outreach worker takes over a run whose worker died when its lease passes.
    outreach_lease_s: float = 300.0
    # segment's WeCom contact enrichment thread (SIYU_WECOM_ENRICH=0 turns it off).
    wecom_enrich: bool = True
    # Seconds between two runs of segment's time tick (services/segment/tick.py).
    segment_tick_s: float = 30.0
    # The key of the identities' keyed hashes (shared/privacy.py; "" unset): each process
    # installs it at start (siyu/cli.py).
    privacy_key: str = field(default="", repr=False)
    # The admin API's database role, granted its privileges by migrations (None: it shares the
    # migrating role, as in `siyu dev` and the tests).
    db_api_role: str | None = None
    # Statement and idle-in-transaction limits of pooled connections (shared/db.py).
    api_db: DbTimeouts = field(default_factory=partial(DbTimeouts.defaults, "api"))
    worker_db: DbTimeouts = field(default_factory=partial(DbTimeouts.defaults, "worker"))
    jobs: JobSettings = JobSettings()
    sandbox: SandboxSettings = SandboxSettings()
    # The key the console's session cookies are signed with ("" unset: the console refuses
    # logins), and whether they are sent over HTTPS only even when the request looks like HTTP
    # (a TLS proxy that does not say so); docs/console.md "Sessions".
    console_secret: str = field(default="", repr=False)
    console_secure_cookie: bool = False
    # How many reverse proxies in front of the admin API append to X-Forwarded-For/-Proto: the
    # client address the login throttle counts and HTTPS for the cookie come from them
    # (docs/console.md "Login throttling"); 0 trusts no header, a client could forge them.
    trusted_proxies: int = 0
    # Content images downloaded from private addresses and over http too (dev and tests: their
    # image server is http on 127.0.0.1); never in production (services/outreach/media.py).
    media_allow_private: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        level = env.get("SIYU_LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"SIYU_LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
        kafka = KafkaSettings(
            bootstrap=env.get("SIYU_KAFKA_BOOTSTRAP") or "",
            topic_prefix=env.get("SIYU_TOPIC_PREFIX", ""),
            partitions=max(1, _env_int(env, "SIYU_KAFKA_PARTITIONS", 6)),
            replication=max(1, _env_int(env, "SIYU_KAFKA_REPLICATION", 1)),
            session_timeout_ms=_env_int(env, "SIYU_KAFKA_SESSION_TIMEOUT_MS", 45000),
            heartbeat_interval_ms=_env_int(env, "SIYU_KAFKA_HEARTBEAT_INTERVAL_MS", 3000),
            max_poll_interval_ms=_env_int(env, "SIYU_KAFKA_MAX_POLL_INTERVAL_MS", 300000),
            fetch_max_wait_ms=_env_int(env, "SIYU_KAFKA_FETCH_MAX_WAIT_MS", 500),
            max_batch=max(1, _env_int(env, "SIYU_KAFKA_MAX_BATCH", 2000)),
            # 1 (a ratio never exceeded) and 0 turn the checks off.
            dlq_max_ratio=min(1.0, _env_float(env, "SIYU_DLQ_MAX_RATIO", 0.5)),
            dlq_max_consecutive=_env_int(env, "SIYU_DLQ_MAX_CONSECUTIVE", 100) or None,
            dlq_window=max(1, _env_int(env, "SIYU_DLQ_WINDOW", 1000)),
            security=security_from_env(env),
        )
        return cls(
            database_url=env.get("SIYU_DATABASE_URL") or None,
            kafka=kafka,
            tenants_path=Path(env["SIYU_TENANTS"]) if env.get("SIYU_TENANTS") else None,
            log_level=level,
            home=Path(env.get("SIYU_HOME", ".siyu")),
            wecom_api_base=env.get("SIYU_WECOM_API_BASE") or DEFAULT_WECOM_API_BASE,
            wecom_rate=_env_float(env, "SIYU_WECOM_RATE", 5.0),
            wechat_api_base=env.get("SIYU_WECHAT_API_BASE") or DEFAULT_WECHAT_API_BASE,
            public_url=(env.get("SIYU_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            console_url=(env.get("SIYU_CONSOLE_URL") or "http://127.0.0.1:8090").rstrip("/"),
            limits=limits_from_env(env),
            outreach_schema=_env_schema(env, "SIYU_OUTREACH_SCHEMA", "outreach"),
            ingest_schema=_env_schema(env, "SIYU_INGEST_SCHEMA", "ingest"),
            link_secret=env.get("SIYU_LINK_SECRET", ""),
            outreach_lease_s=_env_float(env, "SIYU_OUTREACH_LEASE_S", 300.0),
            wecom_enrich=env.get("SIYU_WECOM_ENRICH", "1") != "0",
            segment_tick_s=_env_float(env, "SIYU_SEGMENT_TICK_S", 30.0),
            privacy_key=env.get("SIYU_PRIVACY_KEY", ""),
            db_api_role=_db_api_role(env),
            api_db=DbTimeouts.from_env("api", env),
            worker_db=DbTimeouts.from_env("worker", env),
            jobs=JobSettings.from_env(env),
            sandbox=SandboxSettings.from_env(env),
            console_secret=env.get("SIYU_CONSOLE_SECRET", ""),
            console_secure_cookie=env.get("SIYU_CONSOLE_SECURE_COOKIE", "0") == "1",
            trusted_proxies=_env_int(env, "SIYU_TRUSTED_PROXIES", 0),
            media_allow_private=env.get("SIYU_MEDIA_ALLOW_PRIVATE", "0") == "1",
        )

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError("SIYU_DATABASE_URL is not set (siyu dev sets it for its children)")
        return self.database_url

    def require_kafka(self) -> str:
        if not self.kafka.bootstrap:
            raise ConfigError("SIYU_KAFKA_BOOTSTRAP is not set (siyu dev sets it for its children)")
        return self.kafka.bootstrap
