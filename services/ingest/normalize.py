"""WeChat OA and WeCom callback fields -> touchpoint envelopes. Pure: no I/O, time is an argument.

Dedup keys follow docs/platform.md "Deduplication": OA messages by MsgId, OA events by
FromUserName+CreateTime+Event, WeCom events by corpid|Event|ChangeType|CreateTime|UserID|
ExternalUserID (+ChatId|UpdateDetail|CurMemVer for chats, +Id|TagType for tags), because WeCom's
FromUserName is always ``sys`` and would collide.

``occurred_at`` is ``CreateTime``, unless that is too far in the future (event_time.py): then the
callback is dated when received, and ``attributes.create_time`` keeps the platform's value.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.ingest.errors import malformed
from services.ingest.event_time import too_far_ahead
from shared.envelope import Identity, Touchpoint, make_event_id

OA_MESSAGE_FIELDS = {
    "text": ("Content",),
    "image": ("PicUrl", "MediaId"),
    "voice": ("MediaId", "Format", "Recognition"),
    "video": ("MediaId", "ThumbMediaId"),
    "shortvideo": ("MediaId", "ThumbMediaId"),
    "location": ("Location_X", "Location_Y", "Scale", "Label"),
    "link": ("Title", "Description", "Url"),
}

CONTACT_TYPES = {
    "add_external_contact": "wecom.contact.added",
    "add_half_external_contact": "wecom.contact.half_added",
    "edit_external_contact": "wecom.contact.edited",
    "del_external_contact": "wecom.contact.deleted",
    "del_follow_user": "wecom.contact.follow_user_deleted",
    "transfer_fail": "wecom.contact.transfer_failed",
}
CHAT_UPDATE_TYPES = {
    "add_member": "wecom.chat.member_joined",
    "del_member": "wecom.chat.member_left",
    "change_owner": "wecom.chat.owner_changed",
    "change_name": "wecom.chat.renamed",
    "change_notice": "wecom.chat.notice_changed",
}


class Ignored(Exception):
    """A well-formed callback that carries no touchpoint (e.g. an event type we do not track)."""


def snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(ch.lower())
    return "".join(out).replace("__", "_")


def _text(fields: dict, name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if isinstance(value, list):
        raise malformed(f"{name} must be a single value")
    if value in (None, ""):
        if required:
            raise malformed(f"{name} is missing")
        return None
    return value


def _created(fields: dict, timezone: str) -> tuple[str, datetime]:
    raw = _text(fields, "CreateTime", required=True)
    try:
        seconds = int(raw)
        return raw, datetime.fromtimestamp(seconds, ZoneInfo(timezone))
    except (ValueError, OverflowError, OSError):
        raise malformed("CreateTime is not a Unix time") from None


def _dated(created: datetime, create_raw: str, received_at: datetime, attributes: dict):
    """When the callback happened: CreateTime, or its receipt when CreateTime is in the future."""
    if not too_far_ahead(created, received_at):
        return created
    attributes["create_time"] = int(create_raw)
    return received_at


def _int_or_text(value: str | None):
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def oa_touchpoint(
    fields: dict,
    *,
    tenant_id: str,
    app_id: str,
    timezone: str,
    raw: str,
    received_at: datetime,
) -> Touchpoint:
    msg_type = (_text(fields, "MsgType", required=True) or "").lower()
    openid = _text(fields, "FromUserName", required=True)
    create_raw, occurred_at = _created(fields, timezone)
    attributes: dict[str, object] = {"app_id": app_id, "to_user": _text(fields, "ToUserName")}

    if msg_type == "event":
        event = (_text(fields, "Event", required=True) or "").lower()
        event_type, extra = _oa_event(event, fields)
        attributes.update(extra)
        dedup = f"oa|{app_id}|{openid}|{create_raw}|{event}"
        if event in ("templatesendjobfinish", "masssendjobfinish"):
            dedup += f"|{attributes.get('msg_id')}"
    elif msg_type in OA_MESSAGE_FIELDS:
        msg_id = _text(fields, "MsgId", required=True)
        event_type = "oa.message"
        attributes.update({"msg_type": msg_type, "msg_id": _int_or_text(msg_id)})
        for name in OA_MESSAGE_FIELDS[msg_type]:
            value = _text(fields, name)
            if value is not None:
                attributes[snake(name)] = value
        dedup = f"oa|{app_id}|msg|{msg_id}"
    else:
        raise Ignored(f"OA MsgType {msg_type!r} is not tracked")
    occurred_at = _dated(occurred_at, create_raw, received_at, attributes)

    return Touchpoint(
        event_id=make_event_id(tenant_id, "wechat_oa", dedup),
        tenant_id=tenant_id,
        source="wechat_oa",
        type=event_type,
        occurred_at=occurred_at,
        received_at=received_at,
        identity=Identity(openid=openid),
        attributes={k: v for k, v in attributes.items() if v is not None},
        raw=raw,
    )


def _oa_event(event: str, fields: dict) -> tuple[str, dict[str, object]]:
    key = _text(fields, "EventKey")
    if event == "subscribe":
        extra: dict[str, object] = {}
        if key and key.startswith("qrscene_"):
            extra = {
                "event_key": key,
                "scene": key[len("qrscene_") :],
                "ticket": _text(fields, "Ticket"),
            }
        return "oa.subscribe", extra
    if event == "unsubscribe":
        return "oa.unsubscribe", {}
    if event == "scan":
        return "oa.scan", {"event_key": key, "scene": key, "ticket": _text(fields, "Ticket")}
    if event == "click":
        return "oa.click", {"event_key": key}
    if event == "view":
        return "oa.view", {"url": key, "menu_id": _text(fields, "MenuId")}
    if event == "location":
        return "oa.location", {
            "latitude": _text(fields, "Latitude"),
            "longitude": _text(fields, "Longitude"),
            "precision": _text(fields, "Precision"),
        }
    if event == "templatesendjobfinish":
        return "oa.template_send_finished", {
            "msg_id": _int_or_text(_text(fields, "MsgID") or _text(fields, "MsgId")),
            "status": _text(fields, "Status"),
        }
    if event == "masssendjobfinish":
        counts = ("TotalCount", "FilterCount", "SentCount", "ErrorCount")
        return "oa.mass_send_finished", {
            "msg_id": _int_or_text(_text(fields, "MsgID") or _text(fields, "MsgId")),
            "status": _text(fields, "Status"),
            **{snake(c): _int_or_text(_text(fields, c)) for c in counts},
        }
    raise Ignored(f"OA event {event!r} is not tracked")


def wecom_touchpoint(
    fields: dict,
    *,
    tenant_id: str,
    corp_id: str,
    timezone: str,
    raw: str,
    received_at: datetime,
) -> Touchpoint:
    if (_text(fields, "MsgType") or "").lower() != "event":
        raise Ignored("WeCom callback is not an event")
    event = _text(fields, "Event", required=True)
    change = _text(fields, "ChangeType", required=True)
    create_raw, occurred_at = _created(fields, timezone)
    user_id = _text(fields, "UserID")
    external = _text(fields, "ExternalUserID")
    parts = [corp_id, event, change, create_raw, user_id or "", external or ""]
    attributes: dict[str, object] = {"change_type": change}

    if event == "change_external_contact":
        if change not in CONTACT_TYPES:
            raise Ignored(f"change_external_contact ChangeType {change!r} is not tracked")
        if not external:
            raise malformed("ExternalUserID is missing")
        event_type = CONTACT_TYPES[change]
        for name in ("State", "WelcomeCode", "Source", "FailReason"):
            attributes[snake(name)] = _text(fields, name)
        identity = Identity(external_userid=external, staff_userid=user_id)
    elif event == "change_external_chat":
        chat_id = _text(fields, "ChatId", required=True)
        detail = _text(fields, "UpdateDetail")
        if change == "create":
            event_type = "wecom.chat.created"
        elif change == "dismiss":
            event_type = "wecom.chat.dismissed"
        elif change == "update" and detail in CHAT_UPDATE_TYPES:
            event_type = CHAT_UPDATE_TYPES[detail]
        else:
            raise Ignored(f"change_external_chat {change}/{detail} is not tracked")
        members = fields.get("MemChangeList") or []
        if isinstance(members, str):
            members = [members] if members else []
        attributes.update(
            {
                "update_detail": detail,
                "join_scene": _int_or_text(_text(fields, "JoinScene")),
                "quit_scene": _int_or_text(_text(fields, "QuitScene")),
                "mem_change_cnt": _int_or_text(_text(fields, "MemChangeCnt")),
                "members": members or None,
                "last_mem_ver": _text(fields, "LastMemVer"),
                "cur_mem_ver": _text(fields, "CurMemVer"),
            }
        )
        parts += [chat_id, detail or "", _text(fields, "CurMemVer") or ""]
        identity = Identity(chat_id=chat_id, staff_userid=user_id)
    elif event == "change_external_tag":
        tag_id = _text(fields, "Id", required=True)
        tag_type = _text(fields, "TagType")
        event_type = "wecom.tag.changed"
        attributes.update(
            {"tag_id": tag_id, "tag_type": tag_type, "strategy_id": _text(fields, "StrategyId")}
        )
        parts += [tag_id, tag_type or ""]
        identity = Identity(staff_userid=user_id)
    else:
        raise Ignored(f"WeCom event {event!r} is not tracked")
    occurred_at = _dated(occurred_at, create_raw, received_at, attributes)

    return Touchpoint(
        event_id=make_event_id(tenant_id, "wecom", "|".join(parts)),
        tenant_id=tenant_id,
        source="wecom",
        type=event_type,
        occurred_at=occurred_at,
        received_at=received_at,
        identity=identity,
        attributes={k: v for k, v in attributes.items() if v is not None},
        raw=raw,
    )
