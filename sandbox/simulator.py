"""`siyu simulate`: signed, encrypted webhooks and business events from a modelled audience.

The audience and its journey come from ``sandbox.population`` (pure, seeded); this
module renders each ``Action`` the way WeChat, WeCom or a CRM would send it, paces the requests
and reports.

Wire formats (the contract with the ingest routes, docs/platform.md callback sections):

- OA: ``POST {url}/wechat/oa/{app_id}?signature&timestamp&nonce&openid``,
  ``Content-Type: text/xml``, plain XML; an OA with an EncodingAESKey gets safe mode:
  ``&encrypt_type=aes&msg_signature`` and ``<xml><ToUserName/><Encrypt/></xml>``.
- WeCom: ``POST {url}/wecom/{corp_id}?msg_signature&timestamp&nonce``, body
  ``<xml><ToUserName/><AgentID/><Encrypt/></xml>``.
- Business events: ``POST {url}/api/v1/events``, ``Authorization: Bearer $SIYU_EVENTS_TOKEN``,
  ``{"events": [...]}`` (up to 50 per request here).

Time: a run replays the ``SIMULATED_SPAN_S`` before it started, faster than real time, and is
paced to reach the present as it ends. No event is dated after now: ingest refuses business
events from the future, and segment would judge every company by a clock that ran ahead (an
account looks inactive when the newest evidence is weeks after its last touch). When the model
gets ahead of the wall clock, the run waits for it (``Present``), so the rest is live traffic.

Reproducibility: the same seed and start give the same population, the same payloads (inner XML
and JSON, with ``CreateTime``/``occurred_at`` from the simulated clock) and the same nonces. What
differs between two runs is the AES frame's random 16-byte prefix (so ``Encrypt`` and
``msg_signature``), the query ``timestamp`` (the wall clock at sending time: ingest refuses a
signature timestamp more than 5 minutes away from now) and, with it, where the timeline starts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import click
import requests
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.utils import WeChatSigner

from sandbox.population.actions import Action
from sandbox.population.journey import action_stream
from sandbox.population.model import Population
from shared.config import Tenant, load_tenants
from shared.errors import SiyuError

DEFAULT_URL = "http://127.0.0.1:8080"
EVENTS_TOKEN_ENV = "SIYU_EVENTS_TOKEN"  # noqa: S105 (a variable name)
BATCH_SIZE = 50  # business events per request
FLUSH_AFTER = 25  # a partial batch goes out after this many webhook requests
TIMEOUT_S = 10.0
SIMULATED_SPAN_S = 90 * 86400  # a run replays about the 90 days before it started
MAX_RATE = 1000.0
MAX_DURATION_S = 24 * 3600.0
MAX_CONTACTS = 200_000

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Elements WeChat sends as bare numbers; everything else is a CDATA section.
_BARE_NUMBERS = frozenset(
    {
        "CreateTime",
        "MsgId",
        "Latitude",
        "Longitude",
        "Precision",
        "Location_X",
        "Location_Y",
        "Scale",
        "JoinScene",
        "QuitScene",
        "MemChangeCnt",
    }
)
# Characters XML 1.0 cannot carry at all (even in CDATA); replaced, never sent.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- XML ----------------------------------------------------------------------------------------


def cdata(text: str) -> str:
    """A CDATA section holding ``text`` exactly, whatever it contains (``]]>`` is split)."""
    text = _NOT_XML.sub("\ufffd", text)
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_element(name: str, value: object) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not an XML element name: {name!r}")
    if isinstance(value, bool):
        raise TypeError(f"{name}: booleans have no WeChat encoding")
    if isinstance(value, list | tuple):
        inner = "".join(f"<Item>{cdata(str(item))}</Item>" for item in value)
    elif isinstance(value, int) or (name in _BARE_NUMBERS and _NUMBER.match(str(value))):
        inner = str(value)
    else:
        inner = cdata(str(value))
    return f"<{name}>{inner}</{name}>"


def render_xml(fields: dict[str, object]) -> str:
    """``<xml>`` with one element per field, in order (how WeChat and WeCom send callbacks)."""
    return "<xml>" + "".join(xml_element(k, v) for k, v in fields.items()) + "</xml>"


def plain_signature(*parts: str) -> str:
    """sha1 of the sorted, concatenated parts, hex (the WeChat signature)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def official_account_id(app_id: str) -> str:
    """A stable stand-in for the OA's original id (gh_...), which the tenants file does not hold."""
    return "gh_" + hashlib.sha256(app_id.encode()).hexdigest()[:12]


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireRequest:
    kind: str  # 'oa' | 'wecom' | 'biz'
    label: str  # envelope type of a webhook; 'biz' for a batch of business events
    url: str
    headers: dict[str, str]
    body: bytes
    plaintext: str | None = None  # the inner XML of a webhook (before encryption)
    events: tuple[str, ...] = ()  # the types of the business events in a batch
    method: str = "POST"


class Renderer:
    """Turns actions into signed (and, where configured, encrypted) HTTP requests for a tenant.

    ``rng`` draws the nonces; ``signed_at`` gives the query timestamp (default: the wall clock).
    """

    def __init__(
        self,
        tenant: Tenant,
        base_url: str,
        rng: random.Random,
        *,
        events_token: str | None = None,
        signed_at: Callable[[], int] | None = None,
    ):
        self.tenant = tenant
        self.base_url = base_url.rstrip("/")
        self.rng = rng
        self.events_token = events_token
        self.signed_at = signed_at or (lambda: int(time.time()))
        self.tz = ZoneInfo(tenant.timezone)
        self._oa = []
        for oa in tenant.wechat_oa:
            token = oa.token.reveal()
            key = oa.encoding_aes_key.reveal() if oa.encoding_aes_key is not None else None
            crypto = WeChatCrypto(token, key, oa.app_id) if key else None
            self._oa.append((oa, token, crypto))
        self._wecom = None
        if tenant.wecom is not None:
            wecom = tenant.wecom
            token = wecom.token.reveal()
            crypto = WeComCrypto(token, wecom.encoding_aes_key.reveal(), wecom.corp_id)
            self._wecom = (wecom, crypto)

    def accepts(self, action: Action) -> bool:
        """Whether this tenant has the channel the action needs (an OA, a WeCom corp, a token)."""
        if action.kind == "oa":
            return bool(self._oa)
        if action.kind == "wecom":
            return self._wecom is not None
        return action.kind == "biz" and bool(self.events_token)

    def _nonce(self) -> str:
        return str(self.rng.randint(1_000_000_000, 2_147_483_647))

    def occurred_at(self, at: int) -> str:
        return datetime.fromtimestamp(at, self.tz).isoformat(timespec="seconds")

    def render(self, action: Action) -> WireRequest:
        if action.kind == "oa":
            return self.oa(action)
        if action.kind == "wecom":
            return self.wecom(action)
        return self.biz([action])

    def oa(self, action: Action) -> WireRequest:
        oa, token, crypto = self._oa[action.oa_slot % len(self._oa)]
        gh_id = official_account_id(oa.app_id)
        inner = render_xml(
            {
                "ToUserName": gh_id,
                "FromUserName": action.fields["FromUserName"],
                "CreateTime": int(action.at),
                **{k: v for k, v in action.fields.items() if k != "FromUserName"},
            }
        )
        timestamp, nonce = str(self.signed_at()), self._nonce()
        query = {
            "signature": plain_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": str(action.fields["FromUserName"]),
        }
        if crypto is None:
            body = inner
        else:
            encrypt, msg_signature = _encrypt(crypto, inner, nonce, timestamp)
            query.update(encrypt_type="aes", msg_signature=msg_signature)
            body = render_xml({"ToUserName": gh_id, "Encrypt": encrypt})
        return WireRequest(
            kind="oa",
            label=action.type,
            url=f"{self.base_url}/wechat/oa/{oa.app_id}?{urlencode(query)}",
            headers={"Content-Type": "text/xml"},
            body=body.encode("utf-8"),
            plaintext=inner,
        )

    def wecom(self, action: Action) -> WireRequest:
        if self._wecom is None:
            raise ValueError(f"tenant {self.tenant.id} has no WeCom corp")
        wecom, crypto = self._wecom
        inner = render_xml(
            {
                "ToUserName": wecom.corp_id,
                "FromUserName": "sys",
                "CreateTime": int(action.at),
                "MsgType": "event",
                **action.fields,
            }
        )
        timestamp, nonce = str(self.signed_at()), self._nonce()
        encrypt, msg_signature = _encrypt(crypto, inner, nonce, timestamp)
        query = {"msg_signature": msg_signature, "timestamp": timestamp, "nonce": nonce}
        agent = "" if wecom.agent_id is None else str(wecom.agent_id)
        body = render_xml({"ToUserName": wecom.corp_id, "AgentID": agent, "Encrypt": encrypt})
        return WireRequest(
            kind="wecom",
            label=action.type,
            url=f"{self.base_url}/wecom/{wecom.corp_id}?{urlencode(query)}",
            headers={"Content-Type": "text/xml"},
            body=body.encode("utf-8"),
            plaintext=inner,
        )

    def biz_event(self, action: Action) -> dict:
        f = action.fields
        return {
            "idempotency_key": f["idempotency_key"],
            "type": f["type"],
            "occurred_at": self.occurred_at(action.at),
            "identity": f["identity"],
            "attributes": f["attributes"],
        }

    def biz(self, actions: list[Action]) -> WireRequest:
        if not self.events_token:
            raise ValueError(f"business events need a token (set {EVENTS_TOKEN_ENV})")
        events = [self.biz_event(a) for a in actions]
        body = json.dumps({"events": events}, ensure_ascii=False, separators=(",", ":"))
        return WireRequest(
            kind="biz",
            label="biz",
            url=f"{self.base_url}/api/v1/events",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {self.events_token}",
            },
            body=body.encode("utf-8"),
            events=tuple(e["type"] for e in events),
        )


def _encrypt(crypto: WeChatCrypto | WeComCrypto, xml: str, nonce: str, timestamp: str):
    """(Encrypt, msg_signature) from wechatpy's reply envelope."""
    envelope = fromstring(crypto.encrypt_message(xml, nonce, timestamp))
    return envelope.findtext("Encrypt"), envelope.findtext("MsgSignature")


class Planner:
    """The run's requests, in order: one per webhook, business events batched."""

    def __init__(
        self,
        actions: Iterator[Action],
        renderer: Renderer,
        *,
        batch_size: int = BATCH_SIZE,
        flush_after: int = FLUSH_AFTER,
    ):
        self.actions = actions
        self.renderer = renderer
        self.batch_size = batch_size
        self.flush_after = flush_after
        self._pending: list[Action] = []
        self._since = 0
        self._held: Action | None = None

    def _flush(self) -> WireRequest:
        batch, self._pending, self._since = self._pending, [], 0
        return self.renderer.biz(batch)

    def next_request(self, *, last: bool = False) -> WireRequest:
        """The next request; ``last`` sends the business events still waiting, if any."""
        if last and self._pending:
            return self._flush()
        if self._held is not None:
            action, self._held = self._held, None
            return self.renderer.render(action)
        unusable = 0
        for action in self.actions:
            if not self.renderer.accepts(action):
                unusable += 1
                if unusable > 100_000:
                    raise RuntimeError("the model produced nothing this tenant can receive")
                continue
            unusable = 0
            if action.kind == "biz":
                self._pending.append(action)
                if len(self._pending) >= self.batch_size:
                    return self._flush()
                continue
            if self._pending:
                self._since += 1
                if self._since >= self.flush_after:
                    self._held = action  # sent as the next request
                    return self._flush()
            return self.renderer.render(action)
        raise StreamEnded("no action is due before the run ends")

    def flush(self) -> WireRequest | None:
        """The business events still waiting, as one request, if any."""
        return self._flush() if self._pending else None


class StreamEnded(Exception):
    """The actions stopped (the model is endless; a run's ``Present`` is not)."""


@dataclass
class Present:
    """The wall clock a run must not overtake: an action is held until it is due.

    ``until`` is the end of the run (wall clock, s); an action due later ends the stream.
    """

    until: float
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def hold(self, actions: Iterator[Action]) -> Iterator[Action]:
        for action in actions:
            if action.at > self.until:
                return
            while (ahead := action.at - self.clock()) > 0:
                self.sleep(min(ahead, 1.0))  # short naps: Ctrl-C stays responsive
            yield action


def requests_for(
    tenant: Tenant,
    *,
    contacts: int,
    seed: int,
    base_url: str,
    events_token: str | None,
    budget: int = 1000,
    signed_at: Callable[[], int] | None = None,
    present: Present | None = None,
) -> tuple[Population, Planner]:
    """The population and the planner of a run (deterministic for a seed and a start).

    The simulated clock starts ``SIMULATED_SPAN_S`` before ``signed_at()`` (the wall clock unless
    given); with ``present``, no action leaves before the wall clock reaches its time.

    Seeded ``random.Random`` on purpose: reproducible traffic, not secrets. The AES frame's prefix
    comes from wechatpy's own generator.
    """
    signed_at = signed_at or (lambda: int(time.time()))
    master = random.Random(seed)  # noqa: S311
    population_rng = random.Random(master.getrandbits(64))  # noqa: S311
    action_rng = random.Random(master.getrandbits(64))  # noqa: S311
    wire_rng = random.Random(master.getrandbits(64))  # noqa: S311
    population = Population.generate(population_rng, tenant.mode, contacts)
    mean_step = int(min(6 * 3600, max(20, SIMULATED_SPAN_S // max(1, budget))))
    # The model's own pace varies (nights are skipped, a step may emit several actions): paced for
    # the span, it reaches the present about when the run ends, sometimes earlier (then it waits).
    start = int(signed_at()) - SIMULATED_SPAN_S
    stream = action_stream(population, action_rng, start=start, mean_step_s=mean_step)
    if present is not None:
        stream = present.hold(stream)
    renderer = Renderer(tenant, base_url, wire_rng, events_token=events_token, signed_at=signed_at)
    return population, Planner(stream, renderer)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Summary:
    requests: int = 0
    by_kind: Counter = field(default_factory=Counter)  # webhook types and 'biz' batches
    events: Counter = field(default_factory=Counter)  # business event types sent
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.requests > 0
            and not self.errors
            and all(200 <= s < 300 for s in self.statuses.elements())
        )

    def lines(self) -> list[str]:
        rate = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"{'interrupted after' if self.interrupted else 'sent'} {self.requests} requests "
            f"in {self.elapsed_s:.1f} s ({rate:.1f}/s)"
        ]
        for kind, n in sorted(self.by_kind.items()):
            out.append(f"  {kind:<36} {n:>7}")
        if self.events:
            out.append(f"business events: {sum(self.events.values())}")
            for kind, n in sorted(self.events.items()):
                out.append(f"  {kind:<36} {n:>7}")
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"
        out.append(f"HTTP status: {statuses}")
        if self.errors:
            out.append("errors:")
            out.extend(f"  {n} x {e}" for e, n in self.errors.most_common())
        if self.samples:
            out.append("first refusals:")
            out.extend(f"  {s}" for s in self.samples)
        return out


def _record(summary: Summary, request: WireRequest) -> None:
    summary.requests += 1
    summary.by_kind["biz batches" if request.kind == "biz" else request.label] += 1
    summary.events.update(request.events)


def send_all(
    planner: Planner,
    session: requests.Session,
    *,
    rate: float,
    duration: float,
    show_progress: bool = True,
) -> Summary:
    """Send at ``rate`` per second for at most ``duration`` seconds; Ctrl-C stops with a summary."""
    budget = max(1, int(rate * duration))
    summary = Summary()
    start = time.monotonic()
    bar = click.progressbar(
        length=budget, label="simulate", file=sys.stderr, show_pos=True, show_eta=True
    )
    try:
        with bar:
            for i in range(budget):
                due = start + i / rate
                now = time.monotonic()
                if now - start >= duration and i:
                    break
                if due > now:
                    time.sleep(due - now)
                try:
                    request = planner.next_request(last=i == budget - 1)
                except StreamEnded:  # the rest of the model is due after the run's end
                    if (request := planner.flush()) is not None:
                        _send(session, request, summary)
                    break
                _send(session, request, summary)
                if show_progress:
                    bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.elapsed_s = time.monotonic() - start
    return summary


def _send(session: requests.Session, request: WireRequest, summary: Summary) -> None:
    _record(summary, request)
    try:
        response = session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=TIMEOUT_S,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        summary.errors[f"{type(exc).__name__}: {_short(str(exc))}"] += 1
        return
    summary.statuses[response.status_code] += 1
    if not 200 <= response.status_code < 300 and len(summary.samples) < 5:
        path = urlsplit(request.url).path
        text = _short(response.text.replace("\n", " "))
        summary.samples.append(f"{response.status_code} {request.label} {path}: {text}")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_loopback(url: str) -> bool:
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
    if not 1 <= contacts <= MAX_CONTACTS:
        return fail(f"--contacts must be between 1 and {MAX_CONTACTS}")
    if not is_loopback(url):
        return fail(f"--url must be a loopback address (127.0.0.1, ::1, localhost), not {url}")

    token = os.environ.get(EVENTS_TOKEN_ENV) or None
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
    budget = max(1, int(rate * duration))
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
        summary = send_all(planner, session, rate=rate, duration=duration)
    for line in summary.lines():
        click.echo(line)
    return 0 if summary.ok else 1
