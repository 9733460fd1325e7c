"""The `siyu` command: one entry point for every process (docs/architecture.md, "Processes")."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click

from shared.config import Settings
from shared.errors import SiyuError
from shared.logging import configure_logging
from shared.privacy import DEV_PRIVACY_KEY, install_privacy_key, require_privacy_key
from shared.tenants import load_tenants
from siyu.processes import (
    CONTACT_ERASE,
    INGEST_TOKEN_CREATE,
    SEGMENT_RECOMPUTE,
    SIMULATE,
    TOKEN_CREATE,
    USER_CREATE,
    Process,
    by_name,
)


def _settings() -> Settings:
    """The process's settings (every SIYU_* variable), its privacy key installed."""
    try:
        settings = Settings.from_env()
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    install_privacy_key(settings.privacy_key)
    return settings


def _run_process(
    process: Process | str,
    entry: Callable[..., int | None],
    settings: Settings | None = None,
    **kwargs,
) -> None:
    """Hand over to a service's own entry point, ``entry(settings, **kwargs)`` (its ``main``).

    Each command imports its entry point when it runs: `siyu --help` loads no service, and a
    server's ``main`` prepares the Prometheus folder before anything imports prometheus_client.
    """
    if isinstance(process, str):
        process = by_name(process)
    settings = settings or _settings()
    if process.personal:
        try:
            require_privacy_key(settings.privacy_key)
        except SiyuError as exc:
            raise click.ClickException(str(exc)) from None
    install_privacy_key(settings.privacy_key)
    configure_logging(settings.log_level, process=process.name)
    try:
        code = entry(settings, **kwargs)
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="siyu")
def main() -> None:
    """Siyu (私域): private-domain and community operations on WeChat and WeCom.

    Configuration comes from the environment: SIYU_DATABASE_URL, SIYU_KAFKA_BOOTSTRAP,
    SIYU_TENANTS (tenants YAML), SIYU_LOG_LEVEL and more: docs/operations.md, "Configuration".
    """


# --- dev ----------------------------------------------------------------------------------------


@main.command()
@click.option("--home", type=click.Path(path_type=Path), default=None, help="State folder [.siyu].")
@click.option(
    "--pg-port", type=int, default=5433, show_default=True, help="Embedded PostgreSQL port."
)
@click.option(
    "--kafka-port", type=int, default=9092, show_default=True, help="Embedded broker port."
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="NAME=PORT",
    help="Port of a service, e.g. --port ingest=18080 (repeatable).",
)
@click.option("--no-services", is_flag=True, help="Start only PostgreSQL and the broker.")
@click.option("--demo", is_flag=True, help="Also run the traffic simulator against ingest.")
def dev(
    home: Path | None,
    pg_port: int,
    kafka_port: int,
    ports: tuple[str, ...],
    no_services: bool,
    demo: bool,
) -> None:
    """Run the whole stack locally: embedded PostgreSQL and broker, migrations, topics, services.

    Unless SIYU_DATABASE_URL / SIYU_KAFKA_BOOTSTRAP are set, PostgreSQL (127.0.0.1:5433) and a
    Kafka-protocol broker (127.0.0.1:9092) are started with their data in .siyu/. Ctrl-C stops
    everything cleanly.
    """
    from siyu.dev import DevOptions, DevStack

    settings = _settings()
    configure_logging(settings.log_level, process="dev")
    options = DevOptions(
        home=home or settings.home,
        pg_port=pg_port,
        kafka_port=kafka_port,
        services=not no_services,
        demo=demo,
        ports=_parse_ports(ports),
    )
    try:
        code = DevStack(settings, options).run()
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


def _parse_ports(values: tuple[str, ...]) -> dict[str, int]:
    from siyu.processes import PROCESSES

    names = {p.name for p in PROCESSES}
    ports: dict[str, int] = {}
    for value in values:
        name, _, port = value.partition("=")
        if name not in names or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.BadParameter(
                f"{value!r}: expected NAME=PORT with NAME one of {', '.join(sorted(names))}",
                param_hint="--port",
            )
        ports[name] = int(port)
    return ports


# --- services -----------------------------------------------------------------------------------


@main.group()
def ingest() -> None:
    """Webhook and business-event intake (port 8080)."""


@ingest.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Server worker processes.")
def ingest_serve(host: str, port: int, workers: int) -> None:
    """Serve OA/WeCom webhooks, POST /api/v1/events and tracked links."""
    from services.ingest.server import main as serve

    _run_process("ingest", serve, host=host, port=port, workers=workers)


@ingest.command("erasures")
@click.option("--metrics-port", type=int, default=9103, show_default=True)
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of /healthz, /readyz, /metrics (0.0.0.0 in a container).")  # fmt: skip
def ingest_erasures(metrics_port: int, metrics_host: str) -> None:
    """Consume siyu.erasures.v1: destroy erased people's keys and queued events."""
    from services.ingest.erasures import main as consume

    _run_process("ingest-erasures", consume, metrics_port=metrics_port, metrics_host=metrics_host)


@ingest.group("token")
def ingest_token() -> None:
    """Bearer tokens of the business-event API (POST /api/v1/events)."""


EXPIRES_HELP = "When the token stops working: 30d, 12h, 90m, 2w or an ISO date (UTC) [never]."


@ingest_token.command("create")
@click.option("--tenant", required=True, help="Tenant id from the tenants file.")
@click.option("--name", default=None, help="Who or what the token is for (e.g. crm).")
@click.option("--expires", default=None, help=EXPIRES_HELP)
def ingest_token_create(tenant: str, name: str | None, expires: str | None) -> None:
    """Create a token for one tenant; printed once, stored as a SHA-256 hash.

    Without SIYU_DATABASE_URL, the database of the `siyu dev` running in SIYU_HOME [.siyu].
    """
    from services.ingest.tokens import main as tokens

    _run_process(
        INGEST_TOKEN_CREATE,
        tokens,
        _settings_for_tokens(),
        tenant=tenant,
        name=name,
        expires=expires,
    )


@ingest_token.command("list")
@click.option("--tenant", default=None, help="Only this tenant's tokens [all].")
def ingest_token_list(tenant: str | None) -> None:
    """List tokens: id, tenant, status, name, expiry, last use (never the token)."""
    from services.ingest.tokens import main as tokens

    process = replace(INGEST_TOKEN_CREATE, argv=("ingest", "token", "list"))
    _run_process(process, tokens, _settings_for_tokens(), action="list", tenant=tenant)


@ingest_token.command("revoke")
@click.argument("token_id")
@click.option("--tenant", default=None, help="Refuse unless the token belongs to this tenant.")
def ingest_token_revoke(token_id: str, tenant: str | None) -> None:
    """Revoke a token by its id (evt_...): refused at once by every ingest process."""
    from services.ingest.tokens import main as tokens

    process = replace(INGEST_TOKEN_CREATE, argv=("ingest", "token", "revoke"))
    _run_process(
        process, tokens, _settings_for_tokens(), action="revoke", tenant=tenant, token_id=token_id
    )


@main.group()
def segment() -> None:
    """Identities, accounts, roles, stages, scores and segments."""


@segment.command("consume")
@click.option("--metrics-port", type=int, default=9101, show_default=True)
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of /healthz, /readyz, /metrics (0.0.0.0 in a container).")  # fmt: skip
def segment_consume(metrics_port: int, metrics_host: str) -> None:
    """Consume siyu.touchpoints.v1 in the segment consumer group."""
    from services.segment.consumer import main as consume

    _run_process("segment", consume, metrics_port=metrics_port, metrics_host=metrics_host)


@segment.command("recompute")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--batch", type=int, default=500, show_default=True, help="Contacts per transaction.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes, each re-deriving its share of the contacts [default: the cores].",
)
def segment_recompute(tenant: str, batch: int, workers: int | None) -> None:
    """Re-derive every contact of a tenant (stages, scores, segments) on every core; safe while
    consuming."""
    from services.segment.recompute import main as recompute

    _run_process(SEGMENT_RECOMPUTE, recompute, tenant=tenant, batch=batch, workers=workers)


@main.group()
def contact() -> None:
    """People (contacts) of a tenant."""


@contact.command("erase")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--contact", "contact_id", required=True, help="Contact id (c_...).")
@click.option("--reason", required=True, help="Why (audited), e.g. the request's ticket.")
def contact_erase(tenant: str, contact_id: str, reason: str) -> None:
    """Erase a person from every service (PIPL art. 47; docs/privacy.md); audited.

    Without SIYU_DATABASE_URL, the database of the `siyu dev` running in SIYU_HOME [.siyu].
    """
    import getpass

    from services.segment.erasure import main as erase

    actor = f"cli:{getpass.getuser()}"
    _run_process(CONTACT_ERASE, erase, _settings_for_tokens(), tenant=tenant, contact=contact_id,
                 reason=reason, actor=actor)  # fmt: skip


@main.group()
def outreach() -> None:
    """Campaign scheduling and delivery."""


@outreach.command("worker")
@click.option("--metrics-port", type=int, default=9102, show_default=True)
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of /healthz, /readyz, /metrics (0.0.0.0 in a container).")  # fmt: skip
def outreach_worker(metrics_port: int, metrics_host: str) -> None:
    """Run the scheduler (one active leader) and the senders."""
    from services.outreach.worker import main as work

    _run_process("outreach", work, metrics_port=metrics_port, metrics_host=metrics_host)


@main.group()
def api() -> None:
    """The admin API (segment and outreach routes)."""


@api.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
def api_serve(host: str, port: int, workers: int) -> None:
    """Serve /api/v1 for ops staff."""
    from siyu.api import main as serve

    _run_process("api", serve, host=host, port=port, workers=workers)


@main.command("fake-wechat")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option("--seed", type=int, default=None, help="People of `siyu simulate --seed` [1].")
@click.option("--contacts", type=int, default=None, help="As `siyu simulate --contacts` [300].")
@click.option("--token-ttl", type=int, default=None, help="Access token lifetime, s [7200].")
def fake_wechat(
    host: str, port: int, seed: int | None, contacts: int | None, token_ttl: int | None
) -> None:
    """A local stand-in for the WeChat/WeCom HTTP APIs (tokens, quotas, error codes).

    WeCom is served under /wecom/cgi-bin/ and the Official Account API under /oa/cgi-bin/; the
    people are those of the traffic simulator, so dev-mode enrichment finds them.
    """
    from sandbox.fake_wechat import main as serve

    _run_process(
        "fake-wechat",
        serve,
        host=host,
        port=port,
        seed=seed,
        contacts=contacts,
        token_ttl=token_ttl,
    )


@main.group(invoke_without_command=True)
@click.option("--tenant", default=None, help="Tenant id.  [required]")
@click.option("--contacts", type=int, default=100, show_default=True)
@click.option("--rate", type=float, default=20.0, show_default=True, help="Requests per second.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--seed", type=int, default=None, help="Make the run reproducible.")
@click.option(
    "--requests", "requests_limit", type=int, default=None,
    help="Stop after this many requests (with --seed: the same run on any machine).",
)  # fmt: skip
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Ingest base URL.")
@click.pass_context
def simulate(
    ctx: click.Context, tenant: str | None, contacts: int, rate: float, duration: float,
    seed: int | None, url: str, requests_limit: int | None,
):  # fmt: skip
    """Send signed, encrypted webhooks and business events modelling B2B and B2C audiences.

    `siyu simulate scan` instead makes one customer scan a channel code.
    """
    if ctx.invoked_subcommand is not None:
        return
    if tenant is None:
        raise click.UsageError("Missing option '--tenant'.", ctx)
    settings = _settings()
    settings = replace(settings, tenants_path=_dev_tenants(settings))
    from sandbox.simulator import main as run

    _run_process(SIMULATE, run, settings, tenant=tenant, contacts=contacts, rate=rate,
                 duration=duration, seed=seed, url=url, requests_limit=requests_limit)  # fmt: skip


@simulate.command("scan")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--code", required=True, help="Channel code id (console: Channel codes).")
@click.option("--name", default=None, help="The customer's name [扫码客户NNNN].")
@click.option(
    "--config-id",
    default=None,
    help="The code's WeCom config id: no admin API look-up, no database needed.",
)
@click.option("--url", default=None, help="Ingest base URL [siyu dev's, else :8080].")
@click.option("--fake-url", default=None, help="Fake WeChat server [siyu dev's, else :8099].")
@click.option("--api-url", default=None, help="Admin API [siyu dev's, else :8090/api/v1].")
def simulate_scan(tenant: str, code: str, name: str | None, config_id: str | None,
                  url: str | None, fake_url: str | None, api_url: str | None) -> None:  # fmt: skip
    """A customer scans a channel code: the fake WeCom adds them through the code's config and
    the add callback (State and WelcomeCode) is signed and posted to ingest, as WeCom would.

    The code's config id is read from the admin API with a viewer token made for the look-up in
    the database of the `siyu dev` running in SIYU_HOME (revoked at once); --config-id skips it.
    """
    from sandbox.simulator import is_loopback
    from sandbox.simulator.scan import ScanFailed, Urls, find_tenant
    from sandbox.simulator.scan import main as scan
    from shared.devstack.lock import running_stack

    settings = _settings() if config_id else _settings_for_tokens()
    settings = replace(settings, tenants_path=_dev_tenants(settings))
    stack = running_stack(settings.home.resolve())
    ran = stack.urls if stack is not None else {}
    api_url = (api_url or ran.get("api") or by_name("api").url() or "").rstrip("/")
    urls = Urls(
        ingest=(url or ran.get("ingest") or "http://127.0.0.1:8080").rstrip("/"),
        fake=(fake_url or ran.get("fake-wechat") or "http://127.0.0.1:8099").rstrip("/"),
        api=api_url,
        console=api_url.removesuffix(by_name("api").path) + "/",
    )
    for option, value in (("--url", urls.ingest), ("--fake-url", urls.fake),
                          ("--api-url", urls.api)):  # fmt: skip
        if not is_loopback(value):
            raise click.BadParameter(f"{value}: not a loopback address", param_hint=option)
    process = replace(SIMULATE, argv=("simulate", "scan"))
    try:
        find_tenant(settings, tenant)  # before any token is made for it
    except ScanFailed as exc:
        click.echo(f"siyu simulate scan: {exc}", err=True)
        sys.exit(exc.code)
    if config_id:
        _run_process(process, scan, settings, tenant=tenant, code=code, config_id=config_id,
                     name=name, urls=urls)  # fmt: skip
    with _lookup_token(settings, tenant) as token:
        _run_process(process, scan, settings, tenant=tenant, code=code, token=token, name=name,
                     urls=urls)  # fmt: skip


@contextmanager
def _lookup_token(settings: Settings, tenant: str):
    """A viewer token of ``tenant`` for one look-up, revoked when done (sys.exit included)."""
    import psycopg

    from services.outreach.tokens import create_token, revoke_token
    from shared.db import connect

    dsn = settings.require_database()
    try:
        with connect(dsn, settings.outreach_schema) as conn:
            row, token = create_token(conn, tenant_id=tenant, role="viewer",
                                      name="siyu simulate scan")  # fmt: skip
    except (SiyuError, psycopg.Error) as exc:
        raise click.ClickException(f"no viewer token for {tenant}: {exc}") from None
    try:
        yield token
    finally:
        with connect(dsn, settings.outreach_schema) as conn:
            revoke_token(conn, row["token_id"], tenant_id=tenant)


@main.group()
def token() -> None:
    """Admin API tokens."""


@token.command("create")
@click.option("--tenant", default=None, help="Tenant id; omit for a platform admin token.")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    default="viewer",
    show_default=True,
)
@click.option("--name", default=None, help="Who or what the token is for.")
@click.option("--expires", default=None, help=EXPIRES_HELP)
def token_create(tenant: str | None, role: str, name: str | None, expires: str | None) -> None:
    """Create a bearer token (printed once; stored hashed).

    Without SIYU_DATABASE_URL, the database of the `siyu dev` running in SIYU_HOME [.siyu].
    """
    from services.outreach.tokens import main as tokens

    _run_process(
        TOKEN_CREATE,
        tokens,
        _settings_for_tokens(),
        tenant=tenant,
        role=role,
        name=name,
        expires=expires,
    )


@token.command("list")
@click.option("--tenant", default=None, help="Only this tenant's tokens [all, platform first].")
def token_list(tenant: str | None) -> None:
    """List tokens: id, tenant, role, status, name, expiry, last use (never the token)."""
    from services.outreach.tokens import main as tokens

    process = replace(TOKEN_CREATE, argv=("token", "list"))
    _run_process(process, tokens, _settings_for_tokens(), action="list", tenant=tenant)


@token.command("revoke")
@click.argument("token_id")
@click.option("--tenant", default=None, help="Refuse unless the token belongs to this tenant.")
def token_revoke(token_id: str, tenant: str | None) -> None:
    """Revoke a token by its id (tok_...): refused at once by every API process."""
    from services.outreach.tokens import main as tokens

    process = replace(TOKEN_CREATE, argv=("token", "revoke"))
    _run_process(
        process, tokens, _settings_for_tokens(), action="revoke", tenant=tenant, token_id=token_id
    )


@main.group()
def user() -> None:
    """Staff users of the web console (docs/console.md)."""


@user.command("create")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option(
    "--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer",
    show_default=True,
)  # fmt: skip
@click.option("--login", required=True, help="Login name, e.g. li.lei.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (one line)."
)
def user_create(tenant: str, role: str, login: str, password_stdin: bool) -> None:
    """Create a console user; the password is asked twice (at least 10 characters).

    Without SIYU_DATABASE_URL, the database of the `siyu dev` running in SIYU_HOME [.siyu].
    """
    from console.passwords import check_password
    from console.users import main as users

    settings = _settings_for_tokens()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except ValueError as exc:
        raise click.ClickException(f"password: {exc}") from None
    _run_process(
        USER_CREATE, users, settings, tenant=tenant, login=login, role=role, password=password
    )


def _settings_for_tokens() -> Settings:
    """Tokens are made in a second terminal beside `siyu dev`, where SIYU_DATABASE_URL is unset:
    the stack's lock file names its database. The token alone goes to stdout (scripts capture
    it), the database used to stderr."""
    from shared.devstack.lock import running_stack
    from shared.devstack.postgres import local_dsn
    from shared.logging import _redact

    settings = _settings()
    if settings.database_url:
        return settings
    home = settings.home.resolve()
    stack = running_stack(home)
    if stack is None:
        raise click.ClickException(
            f"SIYU_DATABASE_URL is not set and no siyu dev runs in {home} (SIYU_HOME); "
            f"start `siyu dev`, or name the database, e.g.\n"
            f"  export SIYU_DATABASE_URL={local_dsn(5433)}"
        )
    click.echo(
        f"using the database of the siyu dev stack running in {stack.home} "
        f"(pid {stack.pid}): {_redact(stack.database_url)}",
        err=True,
    )
    return replace(
        settings,
        database_url=stack.database_url,
        tenants_path=_dev_tenants(settings),
        privacy_key=settings.privacy_key or DEV_PRIVACY_KEY,  # the key its processes use
    )


def _dev_tenants(settings: Settings) -> Path | None:
    """SIYU_TENANTS, else the tenants file of the `siyu dev` running in SIYU_HOME (a second
    terminal beside it), else None: load_tenants then refuses (docs/security.md "Safe defaults")."""
    from shared.devstack.lock import running_stack

    if settings.tenants_path is not None:
        return settings.tenants_path
    stack = running_stack(settings.home.resolve())
    return Path(stack.tenants) if stack is not None and stack.tenants else None


# --- operations ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--service",
    type=click.Choice(["ingest", "segment", "outreach"]),
    multiple=True,
    help="Only this service's schema (repeatable).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.IntRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Apply nothing: wait up to SECONDS until the schemas' owners have applied them "
    "(the admin API's role owns no schema).",
)
def migrate(service: tuple[str, ...], wait_s: int | None) -> None:
    """Apply pending SQL migrations (each service into its own schema), once, under a lock."""
    from shared.migrations import SERVICES, migrate_service, wait_until_migrated

    settings = _settings()
    configure_logging(settings.log_level, process="migrate")
    try:
        dsn = settings.require_database()
        if wait_s is not None:
            wait_until_migrated(dsn, service or SERVICES, timeout_s=wait_s)
            click.echo(f"{', '.join(service or SERVICES)}: up to date")
            return
        for svc in service or SERVICES:
            applied = migrate_service(dsn, svc, api_role=settings.db_api_role)
            click.echo(f"{svc}: " + (f"applied {applied}" if applied else "up to date"))
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
def topics() -> None:
    """Create the Kafka topics of docs/architecture.md that are missing."""
    from shared.kafka.topics import ensure_topics

    settings = _settings()
    configure_logging(settings.log_level, process="topics")
    try:
        settings.require_kafka()
        created = ensure_topics(settings.kafka)
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.group()
def tenants() -> None:
    """The tenants file."""


@tenants.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def tenants_check(path: Path | None) -> None:
    """Validate a tenants YAML file (default: SIYU_TENANTS), and that every secret it names by
    *_env is set in this environment."""

    from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, check_secrets, weak_webhook_tokens

    target = path or _settings().tenants_path
    environ = dict(os.environ)
    if target is not None and Path(target).resolve() == DEMO_TENANTS_PATH.resolve():
        environ = {**DEMO_SECRETS, **environ}  # what `siyu dev` gives the demo tenants
    try:
        registry = load_tenants(target)
        check_secrets(registry, environ)
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in weak_webhook_tokens(registry, environ):
        click.echo(f"warning: {warning}", err=True)
    for tenant in registry:
        channels = [f"{len(tenant.wechat_oa)} OA"] + (["WeCom"] if tenant.wecom else [])
        channels += [] if tenant.api_access else ["no API access"]
        summary = f"{tenant.mode}, {tenant.lifecycle_model}, {', '.join(channels)}"
        click.echo(f"{tenant.id}: {tenant.name} ({summary})")
    click.echo(f"{len(registry)} tenant(s) OK in {target}")


@tenants.command("purge")
@click.argument("tenant")
@click.option("--service", "services", multiple=True, default=("segment", "ingest", "outreach"),
              type=click.Choice(["segment", "ingest", "outreach"]), show_default=True)  # fmt: skip
def tenants_purge(tenant: str, services: tuple[str, ...]) -> None:
    """Remove a tenant deleted through the admin API from the services' schemas (the outreach
    worker purges the outreach schema by itself; docs/security.md "Safe defaults")."""
    from shared.tenant_purge import purge_schemas

    settings = _settings()
    configure_logging(settings.log_level, process="purge")
    try:
        admin = settings.outreach_schema
        schemas = {s: admin if s == "outreach" else s for s in services}
        done = purge_schemas(
            settings.require_database(),
            tenant,
            schemas,
            admin_schema=admin,
            timeouts=settings.worker_db,
        )
    except SiyuError as exc:
        raise click.ClickException(str(exc)) from None
    for service in services:
        click.echo(f"{service}: {tenant} purged" if done[service] else f"{service}: not finished")


if __name__ == "__main__":
    main()
