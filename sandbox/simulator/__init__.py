"""`siyu simulate`: signed, encrypted webhooks and business events from a modelled audience.

The audience and its journey come from ``sandbox.population`` (pure, seeded); this package
renders each ``Action`` the way WeChat, WeCom or a CRM would send it (``wire``), plans and paces
the requests so the run ends at the present (``plan``), sends them and reports (``run``).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from urllib.parse import urlsplit

import click
import requests

from sandbox.simulator.plan import Present, requests_for
from sandbox.simulator.run import send_all
from sandbox.simulator.wire import EVENTS_TOKEN_ENV
from shared.errors import SiyuError
from shared.tenants import load_tenants

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_RATE = 1000.0
MAX_DURATION_S = 24 * 3600.0
MAX_CONTACTS = 200_000
MAX_REQUESTS = int(MAX_RATE * MAX_DURATION_S)


def is_loopback(url: str) -> bool:
    """Whether ``url`` targets this machine: the simulator only sends to a local stack."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def main(
    settings,
    *,
    tenant: str,
    contacts: int = 100,
    rate: float = 20.0,
    duration: float = 60.0,
    seed: int | None = None,
    url: str = DEFAULT_URL,
    requests_limit: int | None = None,
) -> int:
    """`siyu simulate`: 0 when every request got a 2xx, 1 otherwise, 2 for bad arguments."""

    def fail(message: str) -> int:
        click.echo(f"siyu simulate: {message}", err=True)
        return 2

    try:
        registry = load_tenants(settings.tenants_path)
    except SiyuError as exc:
        return fail(str(exc))
    found = registry.get(tenant)
    if found is None:
        known = ", ".join(t.id for t in registry) or "none"
        return fail(f"unknown tenant {tenant!r} in {settings.tenants_path} (known: {known})")
    if not 0 < rate <= MAX_RATE:
        return fail(f"--rate must be more than 0 and at most {MAX_RATE:g} requests per second")
    if not 0 < duration <= MAX_DURATION_S:
        return fail(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} seconds")
    if requests_limit is not None and not 1 <= requests_limit <= MAX_REQUESTS:
        return fail(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 1 <= contacts <= MAX_CONTACTS:
        return fail(f"--contacts must be between 1 and {MAX_CONTACTS}")
    if not is_loopback(url):
        return fail(f"--url must be a loopback address (127.0.0.1, ::1, localhost), not {url}")

    token = settings.sandbox.events_token  # SIYU_EVENTS_TOKEN
    if token is None:
        click.echo(
            f"siyu simulate: {EVENTS_TOKEN_ENV} is not set, so no business events are sent; "
            f"create a token with `siyu ingest token create --tenant {found.id}` and export it.",
            err=True,
        )
    if not found.wechat_oa and found.wecom is None and token is None:
        return fail(f"tenant {found.id} has no Official Account, no WeCom corp and no token")
    if seed is None:
        seed = secrets.randbelow(2**31)
    click.echo(
        f"siyu simulate: tenant {found.id} ({found.mode}), {contacts} contacts, "
        f"{rate:g}/s for {duration:g} s, seed {seed} (repeat with --seed {seed})",
        err=True,
    )
    # A number of requests makes a seeded run the same run whatever the machine's speed.
    budget = requests_limit or max(1, int(rate * duration))
    try:
        _population, planner = requests_for(
            found,
            contacts=contacts,
            seed=seed,
            base_url=url,
            events_token=token,
            budget=budget,
            present=Present(until=time.time() + duration),
        )
    except SiyuError as exc:  # e.g. a secret given as *_env whose variable is not set
        return fail(str(exc))

    with requests.Session() as session:
        session.trust_env = False  # loopback only: never through an HTTP proxy from the env
        session.headers["User-Agent"] = "siyu-simulate/1"
        summary = send_all(planner, session, rate=rate, duration=duration, budget=budget)
    for line in summary.lines():
        click.echo(line)
    return 0 if summary.ok else 1
