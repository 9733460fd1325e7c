"""The fake's temporary media (docs/platform.md "Temporary media"): ``media/upload`` (multipart,
field ``media``, ``?type=image|voice|video|file``) issues a ``media_id`` valid for 3 days on the
fake's clock; ``add_msg_template`` refuses an attachment whose media_id it never issued to the
corp, or issued more than 3 days ago, with 40007 (invalid media_id). ``GET /_fake/image.png``
serves a small image, a source tests and the demo can give by URL."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from flask import Blueprint, Response, request

from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.state import ApiError, FakeState

LIFETIME = 3 * 86400
TYPES = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def upload(call: ApiCall) -> dict[str, Any]:
    kind = request.args.get("type")
    if kind not in TYPES:
        raise ApiError(40004, "invalid media type")
    file = request.files.get("media")
    data = file.read() if file is not None else b""
    if len(data) <= 5:
        raise ApiError(41005, "media data missing")
    if len(data) > TYPES[kind]:
        raise ApiError(40006, "invalid file size")
    with call.state.lock:
        now = call.state.now()
        media_id = "3" + secrets.token_urlsafe(40)
        call.state.media[media_id] = (call.world.corp_id, now)
    return {"type": kind, "media_id": media_id, "created_at": str(int(now))}


def _ids(attachment: dict[str, Any]) -> list[Any]:
    kind = attachment.get("msgtype")
    body = attachment.get(kind) if isinstance(kind, str) else None
    if not isinstance(body, dict):
        return []
    if kind == "miniprogram":
        return [body.get("pic_media_id")]
    if kind == "image" and body.get("pic_url") and not body.get("media_id"):
        return []  # a permanent image URL (media/uploadimg)
    if kind in ("image", "video", "file"):
        return [body.get("media_id")]
    return []


def check_attachments(call: ApiCall) -> None:
    state, corp = call.state, call.world.corp_id
    with state.lock:
        now = state.now()
        for attachment in call.body.get("attachments") or []:
            if not isinstance(attachment, dict):
                continue
            for media_id in _ids(attachment):
                issued = state.media.get(media_id) if isinstance(media_id, str) else None
                if issued is None or issued[0] != corp or now >= issued[1] + LIFETIME:
                    raise ApiError(40007, "invalid media_id")


def admin_blueprint(state: FakeState) -> Blueprint:
    bp = Blueprint("fake_media", __name__, url_prefix="/_fake")

    @bp.get("/image.png")
    def image():
        return Response(PNG, mimetype="image/png")

    return bp
