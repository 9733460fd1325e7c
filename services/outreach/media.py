"""Temporary WeCom media for content attachments (docs/platform.md "Temporary media"): an image
attachment given by its source URL (``{"msgtype": "image", "image": {"url": ...}}``) is uploaded
with ``media/upload`` and sent by the ``media_id`` WeCom returns, which is valid for 3 days.

The id and its upload time are kept per tenant and source (``wecom_media``, migration 0022); a
send whose id is older than REFRESH_AFTER (3 days less a margin, so a long run or a late member
confirmation still finds it valid) downloads the source again and re-uploads it first. Checked
per batch, so a run that lasts past the margin refreshes too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from services.outreach.payloads import BadContent
from shared.links import url_error

LIFETIME = timedelta(days=3)
REFRESH_AFTER = LIFETIME - timedelta(hours=12)
MAX_BYTES = 10 * 1024 * 1024  # an image for media/upload: at most 10 MB, more than 5 bytes
MIN_BYTES = 6
WECOM_KEYS = ("wecom",)  # the payloads that carry WeCom attachments

Fetch = Callable[[str], tuple[bytes, str]]  # URL -> (bytes, content type)


def fetch(url: str) -> tuple[bytes, str]:
    """The source image (http(s) only, at most MAX_BYTES), or BadContent saying why not."""
    if (why := url_error(url)) is not None:
        raise BadContent(f"image URL {why}")
    try:
        with requests.get(url, timeout=(5, 20), stream=True) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > MAX_BYTES:
                    raise BadContent("the image is over 10 MB (WeCom's limit)")
            kind = response.headers.get("Content-Type", "image/png")
    except requests.RequestException as exc:
        raise BadContent(f"the image could not be downloaded ({type(exc).__name__})") from None
    if len(data) < MIN_BYTES:
        raise BadContent("the image is empty")
    return data, kind


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
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "image"
    result = client.media.upload("image", (name, data, kind))
    with conn_pool.connection() as conn:
        conn.execute(
            "INSERT INTO wecom_media (tenant_id, source_url, media_id, uploaded_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, source_url) DO UPDATE "
            "SET media_id = EXCLUDED.media_id, uploaded_at = EXCLUDED.uploaded_at",
            (tenant_id, url, result["media_id"], now),
        )
    return result["media_id"]
