"""The fake's memory: credentials, access tokens, frequency limits, injected faults and the log
of calls. One lock guards everything, so a threaded server can share one ``FakeState``.

Token rules follow the platform (docs/platform.md "Access tokens"):
- WeCom ``gettoken``: one token per corp secret, the same until it expires or is revoked.
- OA ``token``: every call issues a new token; the previous one keeps working for a grace period
  (about 5 minutes), then answers 40001. ``stable_token`` keeps its own token (isolated from
  ``token``) and returns it again until it expires, unless ``force_refresh`` (then the old one gets
  the same grace period; at most 20 forced refreshes a day, 30 s apart).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sandbox.fake_wechat.mailbox import Mailbox
from sandbox.fake_wechat.seed import CorpWorld, build_corp, population_for
from shared.errors import ConfigError
from shared.tenants import TenantRegistry

DAY_OFFSET_S = 8 * 3600  # quotas reset at midnight Beijing time


@dataclass
class FakeConfig:
    token_ttl: int = 7200  # expires_in of every token
    oa_grace: int = 300  # an OA token replaced by a refetch keeps working this long
    rate_limit: int = 600  # calls per token per window, then 45009
    rate_window: int = 60
    rate_penalty: int = 60  # once over the limit, 45009 for at least this long
    gettoken_limit: int = 100  # token requests per corp/app per window, then 45009
    gettoken_window: int = 60
    oa_token_daily: int = 2000  # OA `token` calls per app per day (the platform's quota)
    stable_force_daily: int = 20  # forced stable_token refreshes per app per day
    stable_force_interval: int = 30  # seconds between forced refreshes, else 45011
    follow_user_page: int = 500  # follow_user entries per externalcontact/get page
    calls_kept: int = 10000  # size of the call log
    confirm_delay: int = 0  # seconds before a member "confirms" a WeCom mass-message task
    # The corp's rule for group sends per customer and customer group, by corp_id (month: as
    # many a month as it has days, the default; week: 7; day: 1): sandbox/fake_wechat/budget.py.
    wecom_budget: dict[str, str] = field(default_factory=dict)
    oa_template_daily: int = 100000  # OA template messages per app per day, then 45009

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise KeyError(key)
            if key == "wecom_budget":
                self.wecom_budget.update(budget_modes(value))
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
            setattr(self, key, value)


BUDGET_MODES = ("month", "week", "day")


def budget_modes(value: Any) -> dict[str, str]:
    """``{corp_id: mode}`` of a config update, checked."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and v in BUDGET_MODES for k, v in value.items()
    ):
        raise ValueError(f"wecom_budget must map corp ids to one of {', '.join(BUDGET_MODES)}")
    return value


class ApiError(Exception):
    """An errcode the handler answers with (HTTP 200, like the platform)."""

    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errcode, errmsg)
        self.errcode, self.errmsg = errcode, errmsg


@dataclass
class Token:
    value: str
    api: str  # "wecom" or "oa"
    kind: str  # "gettoken", "token" or "stable_token"
    owner: str  # corp_id or app_id
    tenant_id: str
    issued_at: float
    expires_at: float
    replaced_at: float | None = None  # OA: a refetch replaced it (works for oa_grace more)
    revoked: bool = False

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "token": self.value[:8] + "...",
            "api": self.api,
            "kind": self.kind,
            "owner": self.owner,
            "tenant": self.tenant_id,
            "expires_in": max(0, int(self.expires_at - now)),
            "replaced": self.replaced_at is not None,
            "revoked": self.revoked,
        }


@dataclass
class Injection:
    errcode: int
    errmsg: str
    remaining: int
    api: str | None = None  # "wecom", "oa" or both
    path: str | None = None  # a substring of the API path, e.g. "externalcontact/get"

    def matches(self, api: str, path: str) -> bool:
        return (self.api in (None, api)) and (self.path is None or self.path in path)


@dataclass
class _Window:
    start: float
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class CallRecord:
    """One entry of the call log (``GET /_fake/calls``)."""

    seq: int
    at: float
    method: str
    api: str
    path: str
    errcode: int | None
    tenant: str | None = None


@dataclass
class OfficialAccountCreds:
    app_id: str
    secret: str | None
    tenant_id: str


@dataclass
class CorpCreds:
    corp_id: str
    secret: str | None
    tenant_id: str
    agent_id: int | None = None  # the corp's app (message/send's agentid)


@dataclass
class FakeState:
    worlds: dict[str, CorpWorld]  # by corp_id
    corps: dict[str, CorpCreds]
    apps: dict[str, OfficialAccountCreds]
    config: FakeConfig = field(default_factory=FakeConfig)
    clock: Callable[[], float] = time.time
    seed: int = 1
    contacts: int = 300
    offset: float = 0.0  # /_fake/clock moves time forward
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    tokens: dict[str, Token] = field(default_factory=dict, repr=False)
    _current: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _windows: dict[str, _Window] = field(default_factory=dict, repr=False)
    _daily: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)
    _last_force: dict[str, float] = field(default_factory=dict, repr=False)
    injections: list[Injection] = field(default_factory=list, repr=False)
    calls: deque[CallRecord] = field(default_factory=deque, repr=False)
    # Sending (sandbox/fake_wechat/sending.py): what was accepted; OA followers by
    # app (openid -> following); customers who deleted the company; dismissed groups.
    mailbox: Mailbox = field(default_factory=Mailbox, repr=False)
    # message/send: when each member last got an app message (per-member limits) and the bodies
    # seen with the duplicate check on (sandbox/fake_wechat/sending.py ``message_send``).
    app_received: dict = field(default_factory=dict, repr=False)
    app_bodies: dict = field(default_factory=dict, repr=False)
    followers: dict[str, dict[str, bool]] = field(default_factory=dict, repr=False)
    oa_tags: dict[str, dict[int, set[str]]] = field(default_factory=dict, repr=False)
    deleted: set[str] = field(default_factory=set, repr=False)
    media: dict = field(default_factory=dict, repr=False)  # media_id -> (corp_id, created_at)
    dismissed: set[str] = field(default_factory=set, repr=False)
    # Group-send tasks: a member's own confirmation delay, None never (group_tasks.py).
    staff_confirm: dict[str, int | None] = field(default_factory=dict, repr=False)
    # Channel codes (sandbox/fake_wechat/channel_codes.py): corp_id -> config_id -> config.
    channel_codes: dict[str, dict[str, dict]] = field(default_factory=dict, repr=False)
    _seq: int = 0

    # --- construction

    @classmethod
    def from_tenants(
        cls,
        registry: TenantRegistry,
        *,
        seed: int = 1,
        contacts: int = 300,
        config: FakeConfig | None = None,
        clock: Callable[[], float] = time.time,
        secret_defaults: dict[str, str] | None = None,
    ) -> FakeState:
        """The world of every tenant; a secret whose environment variable is unset falls back to
        ``secret_defaults`` (by variable name), else that corp or app refuses every secret."""
        worlds: dict[str, CorpWorld] = {}
        corps: dict[str, CorpCreds] = {}
        apps: dict[str, OfficialAccountCreds] = {}
        followers: dict[str, dict[str, bool]] = {}
        for tenant in registry:
            people = population_for(seed, tenant.mode, contacts).people
            for oa in tenant.wechat_oa:
                secret = _reveal(oa.app_secret, secret_defaults)
                apps[oa.app_id] = OfficialAccountCreds(oa.app_id, secret, tenant.id)
                followers[oa.app_id] = {p.openid: True for p in people if p.openid}
            if tenant.wecom is not None:
                corp_id = tenant.wecom.corp_id
                corps[corp_id] = CorpCreds(
                    corp_id,
                    _reveal(tenant.wecom.secret, secret_defaults),
                    tenant.id,
                    tenant.wecom.agent_id,
                )
                worlds[corp_id] = build_corp(
                    tenant.id, tenant.mode, corp_id, seed=seed, contacts=contacts
                )
        return cls(
            worlds=worlds,
            corps=corps,
            apps=apps,
            followers=followers,
            config=config or FakeConfig(),
            clock=clock,
            seed=seed,
            contacts=contacts,
        )

    def now(self) -> float:
        return self.clock() + self.offset

    # --- tokens

    def _issue(self, api: str, kind: str, owner: str, tenant_id: str, now: float) -> Token:
        token = Token(
            value=secrets.token_urlsafe(96),
            api=api,
            kind=kind,
            owner=owner,
            tenant_id=tenant_id,
            issued_at=now,
            expires_at=now + self.config.token_ttl,
        )
        self.tokens[token.value] = token
        self._current[(kind, owner)] = token.value
        return token

    def _live(self, kind: str, owner: str, now: float) -> Token | None:
        value = self._current.get((kind, owner))
        token = self.tokens.get(value or "")
        if token is None or token.revoked or now >= token.expires_at:
            return None
        return token

    def wecom_gettoken(self, corp_id: str, secret: str) -> Token:
        with self.lock:
            now = self.now()
            if not corp_id:
                raise ApiError(41002, "corpid missing")
            creds = self.corps.get(corp_id)
            if creds is None:
                raise ApiError(40013, "invalid corpid")
            if not secret:
                raise ApiError(41004, "corpsecret missing")
            if creds.secret is None or not secrets.compare_digest(secret, creds.secret):
                raise ApiError(40001, "invalid credential")
            self._gettoken_limit(f"gettoken:{corp_id}", now)
            return self._live("gettoken", corp_id, now) or self._issue(
                "wecom", "gettoken", corp_id, creds.tenant_id, now
            )

    def _oa_creds(self, grant_type: str, app_id: str, secret: str) -> OfficialAccountCreds:
        if grant_type != "client_credential":
            raise ApiError(40002, "invalid grant_type")
        if not app_id:
            raise ApiError(41002, "appid missing")
        creds = self.apps.get(app_id)
        if creds is None:
            raise ApiError(40013, "invalid appid")
        if not secret:
            raise ApiError(41004, "appsecret missing")
        if creds.secret is None or not secrets.compare_digest(secret, creds.secret):
            raise ApiError(40125, "invalid appsecret")
        return creds

    def oa_token(self, grant_type: str, app_id: str, secret: str) -> Token:
        with self.lock:
            now = self.now()
            creds = self._oa_creds(grant_type, app_id, secret)
            self._gettoken_limit(f"token:{app_id}", now)
            self._daily_quota(f"token:{app_id}", self.config.oa_token_daily, now)
            old = self._live("token", app_id, now)
            if old is not None and old.replaced_at is None:
                old.replaced_at = now
            return self._issue("oa", "token", app_id, creds.tenant_id, now)

    def oa_stable_token(self, grant_type: str, app_id: str, secret: str, force: bool) -> Token:
        with self.lock:
            now = self.now()
            creds = self._oa_creds(grant_type, app_id, secret)
            self._gettoken_limit(f"stable_token:{app_id}", now)
            old = self._live("stable_token", app_id, now)
            if old is not None and not force:
                return old
            if force:
                last = self._last_force.get(app_id)
                if last is not None and now - last < self.config.stable_force_interval:
                    raise ApiError(45011, "api minute-quota reach limit mustslower retry next min")
                self._daily_quota(f"force:{app_id}", self.config.stable_force_daily, now)
                self._last_force[app_id] = now
            if old is not None:
                old.replaced_at = now
            return self._issue("oa", "stable_token", app_id, creds.tenant_id, now)

    def check_token(self, api: str, value: str | None) -> Token:
        """The token of an API call, or the errcode the platform answers; counts the call
        against the token's frequency limit."""
        with self.lock:
            now = self.now()
            if not value:
                raise ApiError(41001, "access_token missing")
            token = self.tokens.get(value)
            if token is None or token.api != api or token.revoked:
                raise _invalid(api)
            if now >= token.expires_at:
                raise ApiError(42001, "access_token expired")
            if token.replaced_at is not None and now >= token.replaced_at + self.config.oa_grace:
                raise _invalid(api)
            self._rate_limit(f"token:{token.value}", now)
            return token

    def revoke(
        self, *, token: str | None = None, corp_id: str | None = None, app_id: str | None = None
    ) -> int:
        with self.lock:
            n = 0
            for t in self.tokens.values():
                if t.revoked:
                    continue
                if (
                    (token and t.value == token)
                    or (corp_id and t.owner == corp_id and t.api == "wecom")
                    or (app_id and t.owner == app_id and t.api == "oa")
                ):
                    t.revoked = True
                    n += 1
            return n

    # --- limits

    def _window(self, key: str, now: float, window: int) -> _Window:
        w = self._windows.get(key)
        if w is None or (now >= w.start + window and now >= w.blocked_until):
            w = self._windows[key] = _Window(start=now)
        return w

    def _rate_limit(self, key: str, now: float) -> None:
        cfg = self.config
        w = self._window(key, now, cfg.rate_window)
        if now < w.blocked_until:
            raise ApiError(45009, "api freq out of limit")
        w.count += 1
        if w.count > cfg.rate_limit:
            w.blocked_until = max(w.start + cfg.rate_window, now + cfg.rate_penalty)
            raise ApiError(45009, "api freq out of limit")

    def _gettoken_limit(self, key: str, now: float) -> None:
        w = self._window(key, now, self.config.gettoken_window)
        w.count += 1
        if w.count > self.config.gettoken_limit:
            raise ApiError(45009, "api freq out of limit")

    def daily_quota(self, key: str, quota: int, now: float) -> None:
        """Count a call against a per-day quota (days start at midnight Beijing time)."""
        self._daily_quota(key, quota, now)

    def _daily_quota(self, key: str, quota: int, now: float) -> None:
        day = int((now + DAY_OFFSET_S) // 86400)
        used = self._daily.get((key, day), 0)
        if used >= quota:
            raise ApiError(45009, "reach max api daily quota limit")
        self._daily[(key, day)] = used + 1

    def reset_limits(self) -> None:
        with self.lock:
            self._windows.clear()
            self._daily.clear()
            self._last_force.clear()

    # --- injected faults

    def inject(self, injection: Injection) -> None:
        with self.lock:
            self.injections.append(injection)

    def take_injection(self, api: str, path: str) -> Injection | None:
        with self.lock:
            for inj in self.injections:
                if inj.remaining > 0 and inj.matches(api, path):
                    inj.remaining -= 1
                    if inj.remaining == 0:
                        self.injections.remove(inj)
                    return inj
            return None

    # --- the call log

    def record(
        self, method: str, api: str, path: str, errcode: int | None, tenant: str | None
    ) -> None:
        with self.lock:
            self._seq += 1
            self.calls.append(CallRecord(self._seq, self.now(), method, api, path, errcode, tenant))
            while len(self.calls) > self.config.calls_kept:
                self.calls.popleft()

    def calls_since(self, seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(c) for c in self.calls if c.seq > seq][-limit:]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    # --- inspection

    def summary(self) -> dict[str, Any]:
        with self.lock:
            now = self.now()
            return {
                "now": now,
                "seed": self.seed,
                "contacts": self.contacts,
                "config": asdict(self.config),
                "corps": [
                    {
                        "corp_id": corp_id,
                        "tenant": world.tenant_id,
                        "mode": world.mode,
                        "secret_configured": self.corps[corp_id].secret is not None,
                        "external_contacts": len(world.contacts),
                        "group_chats": len(world.chats),
                        "tags": len(world.tags),
                    }
                    for corp_id, world in self.worlds.items()
                ],
                "official_accounts": [
                    {
                        "app_id": a.app_id,
                        "tenant": a.tenant_id,
                        "secret_configured": a.secret is not None,
                    }
                    for a in self.apps.values()
                ],
                "tokens": [
                    t.summary(now)
                    for t in self.tokens.values()
                    if not t.revoked and now < t.expires_at
                ],
                "injections": [asdict(i) for i in self.injections],
                "calls": self._seq,
                "messages": len(self.mailbox.sent),
            }


def _invalid(api: str) -> ApiError:
    if api == "oa":
        return ApiError(40001, "invalid credential, access_token is invalid or not latest")
    return ApiError(40014, "invalid access_token")


def _reveal(secret, defaults: dict[str, str] | None) -> str | None:
    if secret is None:
        return None
    try:
        return secret.reveal()
    except ConfigError:  # its environment variable is not set
        return (defaults or {}).get(secret.source.removeprefix("env:"))
