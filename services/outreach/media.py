"""Temporary WeCom media for content attachments (docs/platform.md "Temporary media"): an image
attachment given by its source URL (``{"msgtype": "image", "image": {"url": ...}}``) is uploaded
with ``media/upload`` and sent by the ``media_id`` WeCom returns, which is valid for 3 days.

The id and its upload time are kept per tenant and source (``wecom_media``, migration 0022); a
send whose id is older than REFRESH_AFTER (3 days less a margin, so a long run or a late member
confirmation still finds it valid) downloads the source again and re-uploads it first. Checked
before each batch is marked sending (a slow image server holds no delivery in flight), so a
run that lasts past the margin refreshes too.

The download is a request to a URL an operator gave, from inside the cluster: https only (the
egress policy allows 443 alone), to a host whose every address, and the one connected to, is
public (no loopback, private, link-local, multicast or reserved address), no redirects, a JPG
or PNG of at most 10 MB within 30 s in all. SIYU_MEDIA_ALLOW_PRIVATE (dev and tests, whose
image server is http on 127.0.0.1; ``siyu dev`` sets it) lifts the https and address rules.
An image given by ``media_id`` cannot be refreshed: content validation refuses it
(services/outreach/model.py); content stored before that is sent as is, and once the id has
expired WeCom refuses the send (40007), which fails those deliveries with it.
"""

from __future__ import annotations

import copy
import ipaddress
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from services.outreach.payloads import BadContent
from shared.links import url_error

LIFETIME = timedelta(days=3)
REFRESH_AFTER = LIFETIME - timedelta(hours=12)
MAX_BYTES = 10 * 1024 * 1024  # an image for media/upload: at most 10 MB, more than 5 bytes
MIN_BYTES = 6
DEADLINE_S = 30.0  # the whole download, however slowly the server trickles it
TIMEOUT = (5, 10)  # connect, and each read
TYPES = {"image/jpeg": "jpg", "image/png": "png"}  # media/upload's images: JPG and PNG
WECOM_KEYS = ("wecom",)  # the payloads that carry WeCom attachments

Fetch = Callable[[str], tuple[bytes, str]]  # URL -> (bytes, content type)


class _Refused(OSError):
    """A connection to an address the policy refuses (requests wraps it as ConnectionError)."""


def public(address: str) -> bool:
    """Whether ``address`` is a public unicast address: not loopback, private, link-local,
    multicast, reserved or unspecified (an IPv4-mapped IPv6 address judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
        or ip.is_private or ip.is_unspecified
    )  # fmt: skip


def _check_peer(sock: socket.socket) -> socket.socket:
    """The address actually connected to (a name may resolve differently the second time)."""
    if not public(sock.getpeername()[0]):
        sock.close()
        raise _Refused("the image's host is not a public address")
    return sock


# requests' own connection pools (urllib3's), taken from it rather than imported: their
# connections check the peer right after connecting, before a byte of the request is sent.
_POOLS = HTTPAdapter().poolmanager.pool_classes_by_scheme


class _GuardedHTTPConnection(_POOLS["http"].ConnectionCls):
    def _new_conn(self) -> socket.socket:
        return _check_peer(super()._new_conn())


class _GuardedHTTPSConnection(_POOLS["https"].ConnectionCls):
    def _new_conn(self) -> socket.socket:
        return _check_peer(super()._new_conn())


class _GuardedHTTPPool(_POOLS["http"]):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(_POOLS["https"]):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool,
                                                   "https": _GuardedHTTPSPool}  # fmt: skip


def _resolve_public(host: str, port: int) -> None:
    """Every address ``host`` resolves to must be public (BadContent names why not)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise BadContent("the image's host could not be resolved") from None
    if not infos or not all(public(info[4][0]) for info in infos):
        raise BadContent("the image's host is not a public address")


def fetch(url: str, *, allow_private: bool = False) -> tuple[bytes, str]:
    """The source image, or BadContent saying why not: https only, a public host (every address
    it resolves to, and the one connected to), no redirects, a JPG or PNG of at most MAX_BYTES
    within DEADLINE_S in all. ``allow_private`` (SIYU_MEDIA_ALLOW_PRIVATE, dev and tests only:
    their image server is http on 127.0.0.1) lifts the https and address rules."""
    if (why := url_error(url)) is not None:
        raise BadContent(f"image URL {why}")
    parts = urlsplit(url)
    if not allow_private:
        if parts.scheme.lower() != "https":
            raise BadContent("the image URL must be https")
        _resolve_public(parts.hostname or "", parts.port or 443)
    deadline = time.monotonic() + DEADLINE_S
    try:
        with requests.Session() as session:
            if not allow_private:
                session.mount("https://", _GuardedAdapter())
                session.mount("http://", _GuardedAdapter())
            with session.get(url, timeout=TIMEOUT, stream=True, allow_redirects=False) as response:
                if response.is_redirect or 300 <= response.status_code < 400:
                    raise BadContent("the image URL redirects: give the final URL")
                response.raise_for_status()
                kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if kind not in TYPES:
                    raise BadContent(f"the image URL gives {kind or 'no content type'}, "
                                     "not a JPG or PNG image")  # fmt: skip
                if int(response.headers.get("Content-Length") or 0) > MAX_BYTES:
                    raise BadContent("the image is over 10 MB (WeCom's limit)")
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > MAX_BYTES:
                        raise BadContent("the image is over 10 MB (WeCom's limit)")
                    if time.monotonic() > deadline:
                        raise BadContent(f"the image took over {DEADLINE_S:g} s to download")
    except requests.RequestException as exc:
        if isinstance(exc.__context__, _Refused) or "not a public address" in str(exc):
            raise BadContent("the image's host is not a public address") from None
        raise BadContent(f"the image could not be downloaded ({type(exc).__name__})") from None
    if len(data) < MIN_BYTES:
        raise BadContent("the image is empty")
    return bytes(data), kind


def fetcher(allow_private: bool) -> Fetch:
    return partial(fetch, allow_private=allow_private) if allow_private else fetch


def filename(url: str, kind: str) -> str:
    """The upload's file name: the URL's last segment, with the extension of its content type
    when it has none (media/upload tells the type by the name)."""
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "image"
    ext = TYPES.get(kind, "png")
    return name if "." in name.strip(".") else f"{name.strip('.') or 'image'}.{ext}"


def fresh(conn_pool, client, tenant_id: str, payloads: dict[str, Any], now: datetime,
          get: Fetch = fetch) -> dict[str, Any]:  # fmt: skip
    """``payloads`` with every image given by URL replaced by a media_id valid for the send,
    uploading (again) what is missing or older than REFRESH_AFTER."""
    wecom = payloads.get("wecom")
    if client is None or not wecom or not any(_source(a) for a in wecom.get("attachments") or ()):
        return payloads
    out = copy.deepcopy(payloads)
    for attachment in out["wecom"]["attachments"]:
        url = _source(attachment)
        if url:
            attachment["image"] = {"media_id": media_id(conn_pool, client, tenant_id, url, now,
                                                        get)}  # fmt: skip
    return out


def _source(attachment: dict[str, Any]) -> str | None:
    if attachment.get("msgtype") != "image":
        return None
    return (attachment.get("image") or {}).get("url")


def media_id(conn_pool, client, tenant_id: str, url: str, now: datetime, get: Fetch) -> str:
    with conn_pool.connection() as conn:
        row = conn.execute(
            "SELECT media_id, uploaded_at FROM wecom_media WHERE tenant_id = %s "
            "AND source_url = %s",
            (tenant_id, url),
        ).fetchone()
    if row is not None and now - row["uploaded_at"] < REFRESH_AFTER:
        return row["media_id"]
    data, kind = get(url)
    result = client.media.upload("image", (filename(url, kind), data, kind))
    with conn_pool.connection() as conn:
        conn.execute(
            "INSERT INTO wecom_media (tenant_id, source_url, media_id, uploaded_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, source_url) DO UPDATE "
            "SET media_id = EXCLUDED.media_id, uploaded_at = EXCLUDED.uploaded_at",
            (tenant_id, url, result["media_id"], now),
        )
    return result["media_id"]
