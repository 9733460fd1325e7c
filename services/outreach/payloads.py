"""The API body of a send, from a content item's channel payload (pure).

Links are tracked: every URL in the payload becomes ``<public_url>/r/<token>``, the token naming
the tenant, the recipient, the content and the campaign, so a click comes back through ingest
as a ``link.clicked`` touchpoint attributed to all of them. A message to many recipients at once
(WeCom mass messages, OA mass send) carries one link for the group or the campaign.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from shared.links import LinkSigner, url_error

Track = Callable[[str], str]  # URL -> tracked URL


class BadContent(Exception):
    """This content cannot be sent (a link no message may carry, a malformed payload)."""


def build(body: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``body(*args)``, a malformed stored payload raising BadContent."""
    try:
        return body(*args)
    except BadContent:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadContent(f"content payload is malformed ({type(exc).__name__})") from None


def untracked(url: str) -> str:
    """A URL sent as written (no signer, or one message for many people): still http(s) only."""
    if (why := url_error(url)) is not None:
        raise BadContent(f"content link URL {why}")
    return url


def tracker(
    signer: LinkSigner | None,
    public_url: str,
    *,
    tenant_id: str,
    campaign_id: str,
    content_id: str,
    identity_kind: str,
    identity_value: str,
    contact_id: str | None = None,
) -> Track:
    if signer is None:
        return untracked

    def track(url: str) -> str:
        untracked(url)
        token = signer.sign(
            tenant_id=tenant_id,
            url=url,
            identity_kind=identity_kind,
            identity_value=identity_value,
            content_id=content_id,
            campaign_id=campaign_id,
            contact_id=contact_id,
        )
        return f"{public_url}/r/{token}"

    return track


def wecom(payload: dict[str, Any], track: Track) -> dict[str, Any]:
    """``text`` and ``attachments`` of ``add_msg_template``."""
    body: dict[str, Any] = {}
    if payload.get("text"):
        body["text"] = {"content": payload["text"]}
    attachments = copy.deepcopy(payload.get("attachments") or [])
    for a in attachments:
        if a.get("msgtype") == "link" and a["link"].get("url"):
            a["link"]["url"] = track(a["link"]["url"])
    if attachments:
        body["attachments"] = attachments
    return body


def oa_template(payload: dict[str, Any], openid: str, track: Track) -> dict[str, Any]:
    body = {"touser": openid, "template_id": payload["template_id"], "data": payload["data"]}
    if payload.get("url"):
        body["url"] = track(payload["url"])
    if payload.get("miniprogram"):
        body["miniprogram"] = payload["miniprogram"]
    return body


def oa_custom(payload: dict[str, Any], openid: str, track: Track) -> dict[str, Any]:
    if payload["msgtype"] == "text":
        return {"touser": openid, "msgtype": "text", "text": {"content": payload["text"]}}
    news = dict(payload["news"])
    news["url"] = track(news["url"])
    return {"touser": openid, "msgtype": "news", "news": {"articles": [news]}}


def oa_mass(payload: dict[str, Any], openids: list[str]) -> dict[str, Any]:
    if payload["msgtype"] == "mpnews":
        return {"touser": openids, "msgtype": "mpnews", "mpnews": {"media_id": payload["media_id"]},
                "send_ignore_reprint": 0}  # fmt: skip
    return {"touser": openids, "msgtype": "text", "text": {"content": payload["text"]}}
