"""The shared WeCom (企业微信) server-API client, built on wechatpy's enterprise ``WeChatClient``.

What it adds to wechatpy (docs/platform.md: "Access tokens", "Rate limits and quotas",
"Using wechatpy"):

- ``API_BASE_URL`` from configuration (``SIYU_WECOM_API_BASE``: the fake server in dev and tests),
  including the token URL, which wechatpy hard-codes.
- One process-wide token cache per (corp_id, hash of the secret, API base), shared by every client
  and thread: the TTL comes from ``expires_in``, a token is refreshed when under 5 minutes remain,
  and only one thread fetches at a time (``gettoken`` is throttled).
- Error codes: 40001/40014/42001 drop the token, refetch it once and retry once (wechatpy's own
  ``auto_retry`` recurses without bound: it is off); -1 (busy) is retried with back-off, 3 tries
  in all; 45009 raises ``RateLimited`` (on WeCom a rate limit: back off for minutes); any other
  code raises ``WeComError`` and is never retried. Timeouts, connection errors, HTTP errors and
  answers that are not JSON raise ``WeComUnavailable`` (retry later).
- A token bucket per corp (requests per second, ``SIYU_WECOM_RATE``) shared by the process, or
  any ``Limiter`` given (outreach shares one bucket per corp across its workers in PostgreSQL:
  services/outreach/rate_limits.py).
- A timeout on every HTTP call.
- Every call counted in ``siyu_platform_api_calls_total`` by tenant, API and errcode (the
  throttling and token alerts of docs/monitoring.md read it).

Secrets and tokens never reach a log line, a repr or an exception message: URLs in errors lose
their query string, and urllib3's debug lines have ``corpsecret``/``access_token`` redacted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from wechatpy.enterprise import WeChatClient
from wechatpy.utils import json

from shared.metrics import PLATFORM_CALLS

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
DEFAULT_RATE = 5.0  # requests per second per corp
DEFAULT_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds, for every HTTP call

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # bad or expired access token
BUSY = -1
RATE_LIMIT = 45009
REFRESH_MARGIN = 300.0  # refresh a token when less than 5 minutes remain
RATE_LIMIT_RETRY_AFTER = 120.0  # seconds: WeCom's frequency limits are per minute
BUSY_TRIES = 3
BUSY_BACKOFF = (0.5, 1.5)  # seconds to wait before the 2nd and the 3rd try
MAX_FOLLOW_USER_PAGES = 100


class WeComError(Exception):
    """An error answer of the WeCom API (``errcode`` != 0). Never retried by the client."""

    retryable = False

    def __init__(self, errcode: int | None, errmsg: str):
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg

    def __str__(self) -> str:
        return f"WeCom error {self.errcode}: {self.errmsg}"


class WeComUnavailable(WeComError):
    """Busy (-1 three times), a timeout, a connection or HTTP error: try again later."""

    retryable = True


class RateLimited(WeComError):
    """45009: WeCom's frequency limit; wait ``retry_after`` seconds before calling again."""

    retryable = True

    def __init__(self, errcode: int | None, errmsg: str, *, retry_after: float):
        super().__init__(errcode, errmsg)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return (
            f"WeCom rate limit {self.errcode}: {self.errmsg} (retry after {self.retry_after:g} s)"
        )


# --- logging hygiene ----------------------------------------------------------------------------

_SECRET_PARAMS = re.compile(r"((?:corpsecret|secret|access_token)=)[^&\s\"']+", re.I)


def redact_url(text: str) -> str:
    """``text`` with the values of corpsecret/secret/access_token query parameters hidden."""
    return _SECRET_PARAMS.sub(r"\1***", text)


class _RedactQuery(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included: hide the secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT_FILTER = _RedactQuery()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    _logger = logging.getLogger(_name)
    if _REDACT_FILTER not in _logger.filters:
        _logger.addFilter(_REDACT_FILTER)


def _describe(exc: BaseException) -> str:
    """An exception's message without query strings (they carry the secret or the token)."""
    return redact_url(re.sub(r"\?[^\s\"')]*", "?…", str(exc)))[:300]


# --- token cache --------------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    expires_at: float  # clock() seconds


class TokenCache:
    """Access tokens per key, shared by every client and thread of a process.

    ``get`` returns a cached token with more than ``margin`` seconds left, or fetches one; one
    lock per key makes concurrent callers wait for a single fetch instead of each fetching.
    """

    def __init__(self, *, margin: float = REFRESH_MARGIN, clock: Callable[[], float] = time.time):
        self.margin = margin
        self.clock = clock
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, key: str) -> str | None:
        token = self._tokens.get(key)
        if token is not None and token.expires_at - self.clock() > self.margin:
            return token.value
        return None

    def get(self, key: str, fetch: Callable[[], tuple[str, float]]) -> str:
        """The token of ``key``; ``fetch()`` returns (token, expires_in seconds) when needed."""
        value = self._fresh(key)
        if value is not None:
            return value
        with self._lock(key):
            value = self._fresh(key)  # another thread may have fetched while we waited
            if value is not None:
                return value
            value, expires_in = fetch()
            self._tokens[key] = _Token(value, self.clock() + float(expires_in))
            return value

    def invalidate(self, key: str, value: str | None = None) -> None:
        """Drop the token of ``key`` (only if it is still ``value``: a token another thread just
        fetched is not thrown away because of an old one's error)."""
        with self._lock(key):
            token = self._tokens.get(key)
            if token is not None and (value is None or token.value == value):
                del self._tokens[key]

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()


TOKENS = TokenCache()  # the process-wide cache


# --- rate limiter -------------------------------------------------------------------------------


class Limiter(Protocol):
    def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        ...


class RateLimiter:
    """A token bucket: ``rate`` requests per second, bursts of up to ``burst``; thread-safe.

    ``acquire`` reserves the next slot under the lock and sleeps outside it, so waiting callers
    are spaced ``1/rate`` apart in arrival order.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.clock = clock
        self.sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait


_LIMITERS: dict[tuple[str, str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(corp_id: str, api_base: str, rate: float) -> RateLimiter:
    """The process-wide limiter of a corp (every client of the corp shares it)."""
    key = (corp_id, api_base, float(rate))
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = RateLimiter(rate)
        return limiter


# --- the client ---------------------------------------------------------------------------------


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


class WeComClient(WeChatClient):
    """wechatpy's enterprise client with Siyu's token cache, error policy, limiter and timeouts.

    wechatpy's API groups (``client.external_contact.get(...)`` and so on) go through the same
    request path; ``get_external_contact`` and ``get_group_chat`` are the calls Siyu relies on.
    """

    PLATFORM = "wecom"  # the platform label of siyu_platform_api_calls_total

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        api_base: str | None = None,
        rate: float | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        token_cache: TokenCache | None = None,
        limiter: Limiter | None = None,
        busy_backoff: tuple[float, ...] = BUSY_BACKOFF,
        rate_limit_retry_after: float = RATE_LIMIT_RETRY_AFTER,
        sleep: Callable[[float], None] = time.sleep,
        tenant: str = "",
    ):
        if not secret:
            raise ValueError("a WeCom secret is required")
        base = api_base or DEFAULT_API_BASE
        self.API_BASE_URL = base if base.endswith("/") else base + "/"
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.tokens = token_cache if token_cache is not None else TOKENS
        self.limiter: Limiter = limiter or limiter_for(
            corp_id, self.API_BASE_URL, rate if rate is not None else DEFAULT_RATE
        )
        self.busy_backoff = busy_backoff
        self.rate_limit_retry_after = rate_limit_retry_after
        self._sleep = sleep
        self.tenant = tenant
        self._cache_key = f"{self.API_BASE_URL}|{corp_id}|{_secret_hash(secret)}"

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self.corp_id!r}, api_base={self.API_BASE_URL!r})"

    __str__ = __repr__

    # wechatpy names its session key after the first 10 characters of the secret: not ours.
    @property
    def access_token_key(self) -> str:
        return f"wecom_{self.corp_id}_{_secret_hash(self.secret)}_access_token"

    # --- tokens --------------------------------------------------------------------------------

    def fetch_access_token(self) -> dict:
        """wechatpy hard-codes the token URL; ours follows ``API_BASE_URL`` (docs/platform.md)."""
        return self._fetch_access_token(
            url=self.API_BASE_URL + "gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )

    def _fetch_access_token(self, url: str, params: dict) -> dict:
        """``gettoken`` with a timeout, the limiter and errors free of the secret."""
        self.limiter.acquire()
        result = self._call("get", url, params=params)
        errcode = int(result.get("errcode") or 0)
        if errcode != 0 or not result.get("access_token"):
            raise self._error(errcode, str(result.get("errmsg") or "no access_token"))
        return result

    @property
    def access_token(self) -> str:
        return self.tokens.get(self._cache_key, self._new_token)

    def _new_token(self) -> tuple[str, float]:
        result = self.fetch_access_token()
        return result["access_token"], float(result.get("expires_in") or 7200)

    def drop_token(self) -> None:
        self.tokens.invalidate(self._cache_key)

    # --- requests ------------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> dict:
        """One HTTP call with a timeout; the decoded JSON object, or WeComUnavailable."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self._http.request(method=method, url=url, **kwargs)
            response.raise_for_status()
        except requests.Timeout as exc:
            raise WeComUnavailable(None, f"timeout: {_describe(exc)}") from None
        except requests.RequestException as exc:
            raise WeComUnavailable(None, f"HTTP error: {_describe(exc)}") from None
        result = self._decode_result(response)
        if not isinstance(result, dict):
            raise WeComUnavailable(None, f"not a JSON object (HTTP {response.status_code})")
        return result

    def _call(self, method: str, url: str, **kwargs: Any) -> dict:
        """``_send``, counted by API and errcode (or "unavailable" when it raised)."""
        api = self._api_name(url)
        try:
            result = self._send(method, url, **kwargs)
        except WeComUnavailable:
            PLATFORM_CALLS.labels(self.tenant, self.PLATFORM, api, "unavailable").inc()
            raise
        try:
            errcode = str(int(result.get("errcode") or 0))
        except (TypeError, ValueError):
            errcode = "invalid"  # never a free-form label value
        PLATFORM_CALLS.labels(self.tenant, self.PLATFORM, api, errcode).inc()
        return result

    def _api_name(self, url: str) -> str:
        """The endpoint path under the API base ("externalcontact/get"): a bounded label."""
        if url.startswith(self.API_BASE_URL):
            return url[len(self.API_BASE_URL) :].split("?", 1)[0]
        return urlsplit(url).path.rsplit("/cgi-bin/", 1)[-1].lstrip("/")

    def _error(self, errcode: int, errmsg: str) -> WeComError:
        if errcode == RATE_LIMIT:
            return RateLimited(errcode, errmsg, retry_after=self.rate_limit_retry_after)
        if errcode == BUSY:
            return WeComUnavailable(errcode, errmsg)
        return WeComError(errcode, errmsg)

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        """Every API call: token, limiter, timeout and the error policy of the module docstring."""
        if url_or_endpoint.startswith(("http://", "https://")):
            url = url_or_endpoint
        else:
            url = kwargs.pop("api_base_url", self.API_BASE_URL) + url_or_endpoint
        kwargs.pop("api_base_url", None)
        result_processor = kwargs.pop("result_processor", None)
        params = dict(kwargs.pop("params", None) or {})
        if isinstance(kwargs.get("data"), dict):
            kwargs["data"] = json.dumps(kwargs["data"], ensure_ascii=False).encode("utf-8")
        refetched, busy = False, 0
        while True:
            token = self.access_token
            self.limiter.acquire()
            result = self._call(method, url, params={**params, "access_token": token}, **kwargs)
            errcode = int(result.get("errcode") or 0)
            if errcode == 0:
                return result_processor(result) if result_processor else result
            errmsg = str(result.get("errmsg") or errcode)
            if errcode in TOKEN_ERRORS and not refetched:
                self.tokens.invalidate(self._cache_key, token)
                refetched = True
                continue
            if errcode == BUSY:
                busy += 1
                if busy < BUSY_TRIES:
                    self._sleep(self.busy_backoff[min(busy, len(self.busy_backoff)) - 1])
                    continue
            raise self._error(errcode, errmsg)

    def _handle_result(self, res, method=None, url=None, result_processor=None, **kwargs):
        raise NotImplementedError("WeComClient handles results in _request")  # pragma: no cover

    # --- the calls Siyu uses -------------------------------------------------------------------

    def get_external_contact(self, external_userid: str) -> dict:
        """``externalcontact/get``: ``{"external_contact": {...}, "follow_user": [...]}`` with the
        follow users of every page (``next_cursor``)."""
        params: dict[str, str] = {"external_userid": external_userid}
        result = self.get("externalcontact/get", params=params)
        contact = result.get("external_contact") or {}
        follow_users = list(result.get("follow_user") or [])
        seen_cursors: set[str] = set()
        cursor = result.get("next_cursor")
        while cursor and cursor not in seen_cursors and len(seen_cursors) < MAX_FOLLOW_USER_PAGES:
            seen_cursors.add(cursor)
            page = self.get("externalcontact/get", params={**params, "cursor": cursor})
            follow_users.extend(page.get("follow_user") or [])
            cursor = page.get("next_cursor")
        return {"external_contact": contact, "follow_user": follow_users}

    def get_group_chat(self, chat_id: str) -> dict:
        """``externalcontact/groupchat/get``: the ``group_chat`` object (owner, member_list...)."""
        result = self.post(
            "externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1}
        )
        return result.get("group_chat") or {}

    def list_group_chats(self, page_size: int = 1000) -> list[str]:
        """``externalcontact/groupchat/list``: the chat_id of every customer group, all pages."""
        chat_ids: list[str] = []
        cursor = ""
        for _ in range(10000):  # a corp with ten million groups would stop here
            result = self.post(
                "externalcontact/groupchat/list",
                data={"status_filter": 0, "cursor": cursor, "limit": page_size},
            )
            chat_ids.extend(c["chat_id"] for c in result.get("group_chat_list") or [])
            cursor = result.get("next_cursor") or ""
            if not cursor:
                break
        return chat_ids

    def add_msg_template(self, body: dict) -> dict:
        """``externalcontact/add_msg_template``: ``{"msgid", "fail_list"}``. Nothing reaches a
        customer until the sending member confirms the task in WeCom."""
        return self.post("externalcontact/add_msg_template", data=body)

    def send_app_message(self, body: dict) -> dict:
        """``message/send``: an app message to staff members (``touser``, ``agentid``...);
        ``{"invaliduser": "a|b", "msgid"...}``; 81013 when no recipient is valid
        (docs/platform.md "App messages to staff")."""
        return self.post("message/send", data=body)

    # --- group tasks (docs/platform.md "Group sends are staff tasks") ---

    def _pages(self, endpoint: str, body: dict, key: str, *, limit: int = 1000) -> list[dict]:
        """Every row of a cursor-paged list (``limit`` per page, ``next_cursor``); a bound, with
        the cursors seen, against a cursor that repeats."""
        rows: list[dict] = []
        cursor, seen = "", set()
        for _ in range(10000):
            result = self.post(endpoint, data={**body, "limit": limit, "cursor": cursor})
            rows.extend(result.get(key) or [])
            cursor = result.get("next_cursor") or ""
            if not cursor or cursor in seen:
                break
            seen.add(cursor)
        return rows

    def get_groupmsg_task(self, msgid: str, *, limit: int = 1000) -> list[dict]:
        """Per sending member: ``userid``, ``status`` 0 not sent, 2 sent, ``send_time``."""
        return self._pages("externalcontact/get_groupmsg_task", {"msgid": msgid}, "task_list",
                           limit=limit)  # fmt: skip

    def get_groupmsg_send_result(self, msgid: str, userid: str, *, limit: int = 1000) -> list[dict]:
        """Per target of a member: status 0 not sent, 1 sent, 2 not a friend, 3 already
        received the allowed number in the budget period."""
        body = {"msgid": msgid, "userid": userid}
        return self._pages("externalcontact/get_groupmsg_send_result", body, "send_list",
                           limit=limit)  # fmt: skip

    def remind_groupmsg_send(self, msgid: str) -> dict:
        """Remind the members who have not sent yet (at most 3 times per message in 24 h)."""
        return self.post("externalcontact/remind_groupmsg_send", data={"msgid": msgid})

    def cancel_groupmsg_send(self, msgid: str) -> dict:
        """Stop the message for the members who have not sent it (what went out stays)."""
        return self.post("externalcontact/cancel_groupmsg_send", data={"msgid": msgid})

    def get_follow_user_list(self) -> list[str]:
        """``externalcontact/get_follow_user_list``: the members with customer contact enabled
        (who can be a group send's sender)."""
        return list(self.get("externalcontact/get_follow_user_list").get("follow_user") or [])

    # --- platform budget (docs/platform.md "The platform's budget of group sends") ---

    def list_groupmsgs(self, chat_type: str, start_time: int, end_time: int, *,
                       filter_type: int = 2) -> list[dict]:  # fmt: skip
        """``externalcontact/get_groupmsg_list_v2``: the corp's group sends created in
        [start_time, end_time] (epoch seconds, at most a month apart), all pages; each with
        ``msgid``, ``creator``, ``create_type`` (0 the corp, 1 a member) and ``create_time``.
        ``filter_type``: 0 the corp's, 1 members' own, 2 both."""
        body = {"chat_type": chat_type, "start_time": start_time, "end_time": end_time,
                "filter_type": filter_type}  # fmt: skip
        return self._pages("externalcontact/get_groupmsg_list_v2", body, "group_msg_list",
                           limit=100)  # fmt: skip

    # --- welcome on add (docs/platform.md "Welcome on add") ---

    def send_welcome_msg(self, body: dict, *, timeout: float | None = None) -> dict:
        """``externalcontact/send_welcome_msg``: ``welcome_code`` with ``text`` and at most 9
        ``attachments``; once per code, within 20 s of the add callback (41051: already sent,
        41096: another app is sending it). ``timeout``: what is left of the window."""
        extra = {"timeout": timeout} if timeout is not None else {}
        return self.post("externalcontact/send_welcome_msg", data=body, **extra)

    def mark_tag(self, userid: str, external_userid: str, add_tag: list[str]) -> dict:
        """``externalcontact/mark_tag``: corp tags on a member's customer."""
        body = {"userid": userid, "external_userid": external_userid, "add_tag": add_tag}
        return self.post("externalcontact/mark_tag", data=body)

    def add_group_welcome_template(self, body: dict) -> str:
        """``externalcontact/group_welcome_template/add``: the new ``template_id``."""
        return self.post("externalcontact/group_welcome_template/add", data=body)["template_id"]

    def edit_group_welcome_template(self, body: dict) -> dict:
        return self.post("externalcontact/group_welcome_template/edit", data=body)

    def get_group_welcome_template(self, template_id: str) -> dict:
        return self.post(
            "externalcontact/group_welcome_template/get", data={"template_id": template_id}
        )

    def del_group_welcome_template(self, template_id: str) -> dict:
        return self.post(
            "externalcontact/group_welcome_template/del", data={"template_id": template_id}
        )

    # --- channel codes (docs/platform.md "Contact me and join codes") ---

    def add_contact_way(self, body: dict) -> dict:
        """``externalcontact/add_contact_way``: ``{"config_id", "qr_code"}`` (qr_code for scene 2).
        Keep the config_id: API-made configs are invisible in WeCom's admin."""
        return self.post("externalcontact/add_contact_way", data=body)

    def update_contact_way(self, body: dict) -> dict:
        """``externalcontact/update_contact_way``: the fields given replace the config's."""
        return self.post("externalcontact/update_contact_way", data=body)

    def del_contact_way(self, config_id: str) -> dict:
        return self.post("externalcontact/del_contact_way", data={"config_id": config_id})

    def get_contact_way(self, config_id: str) -> dict:
        return (
            self.post("externalcontact/get_contact_way", data={"config_id": config_id}).get(
                "contact_way"
            )
            or {}
        )

    def add_join_way(self, body: dict) -> dict:
        """``externalcontact/groupchat/add_join_way``: ``{"config_id"}``; the QR code URL is in
        ``get_join_way``."""
        return self.post("externalcontact/groupchat/add_join_way", data=body)

    def get_join_way(self, config_id: str) -> dict:
        return (
            self.post("externalcontact/groupchat/get_join_way", data={"config_id": config_id}).get(
                "join_way"
            )
            or {}
        )

    def update_join_way(self, body: dict) -> dict:
        return self.post("externalcontact/groupchat/update_join_way", data=body)

    def del_join_way(self, config_id: str) -> dict:
        return self.post("externalcontact/groupchat/del_join_way", data={"config_id": config_id})

    def corp_tag_ids(self) -> list[str]:
        """``externalcontact/get_corp_tag_list``: the id of every corp customer tag."""
        groups = self.post("externalcontact/get_corp_tag_list", data={}).get("tag_group") or []
        return [t["id"] for g in groups for t in g.get("tag") or []]
