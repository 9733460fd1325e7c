"""`siyu simulate scan`: a customer scans a channel code (docs/domain.md "Channel codes"), end
to end as on the platform, for dev and the README tour.

1. The code's WeCom config id: given (``--config-id``), or read from the admin API
   (``GET /channel-codes/<code>``) with a token the command line gives.
2. The fake WeCom (``POST /_fake/channel-codes/add``, sandbox/fake_wechat/channel_codes.py) makes
   a customer add a member through that config and answers the ``change_external_contact``
   callback WeCom would post: the code's ``State`` and a WelcomeCode live for 20 s (a join code:
   the ``change_external_chat`` of the customer joining its group).
3. The callback is signed and encrypted with the tenant's WeCom callback token and AES key (the
   tenants file, as `siyu simulate` does: sandbox/simulator/wire.py) and posted to ingest.

Services share nothing: this talks to the admin API, the fake and ingest over HTTP only.
Exit codes: 0 posted and accepted, 1 a service refused or is not running, 2 bad arguments.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

import click
import requests

from sandbox.population.actions import Action
from sandbox.simulator.wire import Renderer
from shared.errors import SiyuError
from shared.tenants import load_tenants

TIMEOUT_S = 10
# The callback's envelope: Renderer.wecom writes these itself.
ENVELOPE = ("ToUserName", "FromUserName", "CreateTime", "MsgType")


class ScanFailed(Exception):
    """What went wrong, said to the user; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Urls:
    ingest: str  # e.g. http://127.0.0.1:8080
    fake: str  # the fake WeChat server's root, e.g. http://127.0.0.1:8099
    api: str  # the admin API with its path, e.g. http://127.0.0.1:8090/api/v1
    console: str  # e.g. http://127.0.0.1:8090/


def _http(method: str, url: str, what: str, **kwargs) -> requests.Response:
    try:
        with requests.Session() as session:
            session.trust_env = False  # loopback: never through a proxy from the environment
            return session.request(method, url, timeout=TIMEOUT_S, **kwargs)
    except requests.RequestException as exc:
        raise ScanFailed(f"{what} at {url.split('?')[0]} does not answer ({type(exc).__name__}); "
                         f"is `siyu dev` running?") from None  # fmt: skip


def code_of(urls: Urls, token: str, code_id: str) -> dict[str, Any]:
    """The channel code as the admin API shows it (kind, config_id, state, channel...)."""
    answer = _http("GET", f"{urls.api}/channel-codes/{code_id}", "the admin API",
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    if answer.status_code == 404:
        listed = _http("GET", f"{urls.api}/channel-codes", "the admin API",
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        known = [c["code_id"] for c in listed.json().get("items", [])] if listed.ok else []
        raise ScanFailed(f"unknown channel code {code_id!r} (known: {', '.join(known) or 'none'}; "
                         f"create one in the console, Channel codes)", 2)  # fmt: skip
    if answer.status_code != 200:
        raise ScanFailed(f"the admin API answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def add_through(urls: Urls, corp_id: str, config_id: str, name: str) -> dict[str, Any]:
    """The fake WeCom's callback fields for a customer coming through ``config_id``."""
    answer = _http("POST", f"{urls.fake}/_fake/channel-codes/add", "the fake WeCom",
                   json={"corpid": corp_id, "config_id": config_id, "name": name})  # fmt: skip
    if answer.status_code == 404:
        raise ScanFailed(
            f"the fake WeCom does not know config {config_id} of corp {corp_id}: it keeps configs "
            "in memory, so a code made before `siyu dev` restarted is gone there (`siyu dev "
            "--demo` restores the demo tenants' codes at start; else create a new code)"
        )
    if answer.status_code != 200:
        raise ScanFailed(f"the fake WeCom answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()["callback"]


def post_callback(tenant, ingest_url: str, callback: dict[str, Any]) -> requests.Response:
    """Sign, encrypt and post ``callback`` to ingest exactly as WeCom would."""
    fields = {k: v for k, v in callback.items() if k not in ENVELOPE}
    kind = "wecom.contact.add" if callback.get("Event") == "change_external_contact" else (
        "wecom.chat.update")  # fmt: skip
    action = Action(kind="wecom", type=kind, at=int(callback["CreateTime"]), fields=fields)
    renderer = Renderer(tenant, ingest_url, random.Random(secrets.randbits(64)))  # noqa: S311
    wire = renderer.wecom(action)
    return _http("POST", wire.url, "ingest", data=wire.body, headers=wire.headers)


def scan(tenant, urls: Urls, *, code_id: str, config_id: str | None, token: str | None,
         name: str) -> list[str]:  # fmt: skip
    """Scan ``code_id`` (or ``config_id``) as a customer named ``name``; the lines to print."""
    code: dict[str, Any] = {"code_id": code_id}
    if config_id is None:
        if token is None:
            raise ScanFailed("give --config-id, or an admin API token to look the code up", 2)
        code = code_of(urls, token, code_id)
        config_id = code.get("config_id")
        if not config_id:
            raise ScanFailed(f"channel code {code_id!r} has no WeCom config", 2)
    callback = add_through(urls, tenant.wecom.corp_id, config_id, name)
    answer = post_callback(tenant, urls.ingest, callback)
    if answer.status_code >= 300:
        raise ScanFailed(f"ingest refused the callback: {answer.status_code} {answer.text[:300]}")
    channel = f", channel {code['channel']}" if code.get("channel") else ""
    if callback.get("Event") == "change_external_chat":
        return [f"{name} joined customer group {callback['ChatId']} through code {code_id}"
                f"{channel} (external_userid {callback['MemChangeList'][0]})",
                f"next: the group's members in the console: {urls.console}"]  # fmt: skip
    ext = callback["ExternalUserID"]
    return [
        f"external_userid {ext}",
        f"{name} added {callback['UserID']} through code {code_id}{channel}, "
        f"state {callback['State']}; ingest accepted the callback ({answer.status_code})",
        f"next: the welcome sent within 20 s, and the code's tags: {urls.console}welcomes",
        f"      what WeCom delivered: {urls.fake}/_fake/messages?tenant={tenant.id}&kind=welcome",
        f"      the contact and its stage: {urls.console}contacts?q={name}",
        *(
            [
                f"      the funnel of its first source channel: {urls.console}?source_channel="
                f"{code['channel']}"
            ]
            if code.get("channel")
            else []
        ),
        f"      today's adds per staff member: {urls.console}channel-codes",
    ]


def find_tenant(settings, tenant: str):
    """The tenant from the tenants file, with a WeCom corp."""
    try:
        registry = load_tenants(settings.tenants_path)
    except SiyuError as exc:
        raise ScanFailed(str(exc), 2) from None
    found = registry.get(tenant)
    if found is None:
        known = ", ".join(t.id for t in registry) or "none"
        raise ScanFailed(f"unknown tenant {tenant!r} (known: {known})", 2)
    if found.wecom is None:
        raise ScanFailed(f"tenant {tenant} has no WeCom corp (tenants file)", 2)
    return found


def main(settings, *, tenant: str, code: str, config_id: str | None = None,
         token: str | None = None, name: str | None = None, urls: Urls) -> int:  # fmt: skip
    """`siyu simulate scan`: 0 when ingest accepted the callback, 1 when a service refused or
    is not running, 2 for bad arguments (an unknown tenant or code)."""
    name = name or f"扫码客户{secrets.randbelow(10_000):04d}"
    try:
        found = find_tenant(settings, tenant)
        lines = scan(found, urls, code_id=code, config_id=config_id, token=token, name=name)
    except ScanFailed as exc:
        click.echo(f"siyu simulate scan: {exc}", err=True)
        return exc.code
    for line in lines:
        click.echo(line)
    return 0
