"""The fake's sending APIs and what they received (docs/platform.md), for outreach dev and tests.

WeCom ``externalcontact/add_msg_template`` creates a task per sending member that nothing leaves
until the member confirms it (group_tasks.py reports, reminds and cancels the tasks; a recipient
past the allowed number in the corp's budget period gets send result 3: budget.py). Official
Account: template messages (``client_msg_id`` dedupes, 43004 for a non-follower, a daily quota
answered with 45009), customer-service messages (45015 for a non-follower, 45047 past 5 per 48
h), mass send to an openid list (2..10000, ``clientmsgid`` dedupes, 4 per follower per month:
the rest filtered). WeCom app messages to staff (``message/send``, text and textcard: 40056 for
another agentid, unknown staff in ``invaliduser``, 81013 when none is valid, a long title or
description cut). Everything accepted is kept in the mailbox, which ``GET /_fake/messages``
shows.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.fake_wechat import budget, media
from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.mailbox import DAY, MONTH, Sent
from sandbox.fake_wechat.state import ApiError

MAX_TARGETS = 10000
MASS_TYPES = ("mpnews", "text", "voice", "image", "mpvideo", "wxcard")


def _list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(40058, f"invalid {key}")
    return value


def _check_content(body: dict[str, Any]) -> None:
    text = body.get("text") or {}
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list) or len(attachments) > 9:
        raise ApiError(40058, "attachments: at most 9")
    if not (isinstance(text, dict) and text.get("content")) and not attachments:
        raise ApiError(41008, "missing text content or attachments")


# --- WeCom --------------------------------------------------------------------------------------


def add_msg_template(call: ApiCall) -> dict[str, Any]:
    body, world, state = call.body, call.world, call.state
    chat_type = body.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type must be single or group")
    _check_content(body)
    media.check_attachments(call)  # 40007 for a media_id unknown or expired
    sender = body.get("sender")
    if sender is not None and sender not in world.staff:
        raise ApiError(60111, "invalid string value `sender`")
    with state.lock:
        now, box = state.now(), state.mailbox
        tasks: dict[str, dict[str, int]] = {}
        unsettled: set[tuple[str, str]] = set()
        fail_list: list[str] = []
        if chat_type == "single":
            targets = _list(body, "external_userid")
            if not targets or len(targets) > MAX_TARGETS:
                raise ApiError(40058, f"external_userid: 1 to {MAX_TARGETS}")
            for ext in targets:
                contact = world.contacts.get(ext)
                owners = [f["userid"] for f in contact.follow_user] if contact else []
                if not owners or (sender and sender not in owners):
                    fail_list.append(ext)
                    continue
                status = 2 if ext in state.deleted else 1  # 2: no longer a friend
                tasks.setdefault(sender or owners[0], {})[ext] = status
                if status == 1:  # the budget decides when the member sends (budget.settle)
                    unsettled.add((sender or owners[0], ext))
        else:
            if not sender:
                raise ApiError(40058, "sender is required for chat_type group")
            targets = _list(body, "chat_id_list")
            if not targets or len(targets) > 2000:
                raise ApiError(40058, "chat_id_list: 1 to 2000")
            for chat_id in targets:
                chat = world.chats.get(chat_id)
                if chat is None:
                    raise ApiError(40050, "invalid chatid")
                if chat.detail["owner"] != sender or chat_id in state.dismissed:
                    fail_list.append(chat_id)
                    continue
                tasks.setdefault(sender, {})[chat_id] = 1
                unsettled.add((sender, chat_id))
        if not tasks:
            return {"fail_list": fail_list, "msgid": ""}
        sent = box.add(
            Sent(box.next_id("msg"), "wecom", chat_type, world.tenant_id, world.corp_id, now,
                 body, tasks, creator=sender, unsettled=unsettled)
        )  # fmt: skip
        budget.settle(state, now)  # confirmed at once when confirm_delay is 0
    return {"fail_list": fail_list, "msgid": sent.msgid}


# App message limits per member and app (WeCom "访问频率限制"): extra messages are dropped, the
# call still answers errcode 0. The duplicate check's default and longest interval (seconds).
PER_MEMBER_MINUTE, PER_MEMBER_HOUR = 30, 1000
DUPLICATE_INTERVAL, DUPLICATE_INTERVAL_MAX = 1800, 4 * 3600

# textcard limits in UTF-8 bytes (docs/platform.md "App messages to staff"); btntxt in characters.
TEXTCARD_LIMITS = {"title": 128, "description": 512, "url": 2048}
BTNTXT_CHARS = 4


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def message_send(call: ApiCall) -> dict[str, Any]:
    """``message/send``: an app message to staff members (``touser`` "a|b", at most 1000)."""
    body, world, state = call.body, call.world, call.state
    creds = state.corps[world.corp_id]
    if body.get("agentid") != creds.agent_id or creds.agent_id is None:
        raise ApiError(40056, "invalid agentid")
    msgtype = body.get("msgtype")
    if msgtype == "text":
        if not (body.get("text") or {}).get("content"):
            raise ApiError(41009, "missing text content")
    elif msgtype == "textcard":
        card = dict(body.get("textcard") or {})
        for key in ("title", "description", "url"):
            value = card.get(key)
            if not isinstance(value, str) or not value:
                raise ApiError(40058, f"textcard.{key} is required")
        if len(card["url"].encode("utf-8")) > TEXTCARD_LIMITS["url"]:
            raise ApiError(40058, f"textcard.url exceeds {TEXTCARD_LIMITS['url']} bytes")
        # Longer title, description and button text are cut, not refused, like the platform.
        for key in ("title", "description"):
            card[key] = _cut(card[key], TEXTCARD_LIMITS[key])
        if card.get("btntxt"):
            card["btntxt"] = str(card["btntxt"])[:BTNTXT_CHARS]
        body = {**body, "textcard": card}
    else:
        raise ApiError(40008, "invalid message type")
    users = [u for u in str(body.get("touser") or "").split("|") if u]
    if not users or len(users) > 1000:
        raise ApiError(40058, "touser: 1 to 1000 userids")
    valid = [u for u in users if u in world.staff]
    invalid = [u.lower() for u in users if u not in world.staff]
    if not valid:
        raise ApiError(81013, "user & party & tag all invalid")
    with state.lock:
        box, now = state.mailbox, state.now()
        # The duplicate check: the same request JSON within the interval is accepted, not sent.
        key = (world.corp_id, json.dumps(call.body, sort_keys=True, ensure_ascii=False))
        if call.body.get("enable_duplicate_check") == 1:
            interval = call.body.get("duplicate_check_interval") or DUPLICATE_INTERVAL
            seen = state.app_bodies.get(key)
            if seen is not None and now < seen[0] + min(interval, DUPLICATE_INTERVAL_MAX):
                return {"msgid": seen[1]}
        # Per member and app: over 30 a minute or 1000 an hour is dropped, still errcode 0.
        delivered = []
        for user in valid:
            times = [t for t in state.app_received.get((world.corp_id, user), []) if now - t < 3600]
            if sum(1 for t in times if now - t < 60) < PER_MEMBER_MINUTE and (
                len(times) < PER_MEMBER_HOUR
            ):
                times.append(now)
                delivered.append(user)
            state.app_received[(world.corp_id, user)] = times
        msgid = box.next_id("app")
        if delivered:
            box.add(Sent(msgid, "wecom", "app", world.tenant_id, world.corp_id, now, body,
                         targets=delivered))  # fmt: skip
        state.app_bodies[key] = (now, msgid)
    out: dict[str, Any] = {"msgid": msgid}
    if invalid:
        out["invaliduser"] = "|".join(invalid)
    return out


# --- Official Account ---------------------------------------------------------------------------


def _follower(call: ApiCall, openid: Any) -> str:
    app_id = call.token.owner if call.token else ""
    followers = call.state.followers.get(app_id, {})
    if not isinstance(openid, str) or openid not in followers:
        raise ApiError(40003, "invalid openid")
    if not followers[openid]:
        raise ApiError(43004, "require subscribe")
    return openid


def template_send(call: ApiCall) -> dict[str, Any]:
    body, state = call.body, call.state
    openid = _follower(call, body.get("touser"))
    if not isinstance(body.get("template_id"), str) or not body["template_id"]:
        raise ApiError(40037, "invalid template_id")
    if not isinstance(body.get("data"), dict):
        raise ApiError(47001, "data format error")
    app_id = call.token.owner
    with state.lock:
        box, now = state.mailbox, state.now()
        key = body.get("client_msg_id")
        if key and (app_id, f"{openid}|{key}") in box.dedupe:
            return {
                "errcode": 0,
                "errmsg": "ok",
                "msgid": int(box.dedupe[(app_id, f"{openid}|{key}")]),
            }
        state.daily_quota(f"template:{app_id}", state.config.oa_template_daily, now)
        sent = box.add(
            Sent(str(next(box.counter)), "oa", "template", call.token.tenant_id, app_id, now,
                 body, targets=[openid])
        )  # fmt: skip
        if key:
            box.dedupe[(app_id, f"{openid}|{key}")] = sent.msgid
    return {"errcode": 0, "errmsg": "ok", "msgid": int(sent.msgid)}


def custom_send(call: ApiCall) -> dict[str, Any]:
    body, state = call.body, call.state
    try:
        openid = _follower(call, body.get("touser"))
    except ApiError as exc:
        if exc.errcode == 43004:
            raise ApiError(
                45015, "response out of time limit or subscription is canceled"
            ) from None
        raise
    if body.get("msgtype") not in ("text", "news", "link", "image", "miniprogrampage"):
        raise ApiError(40008, "invalid message type")
    app_id = call.token.owner
    with state.lock:
        box, now = state.mailbox, state.now()
        if box.times(app_id, f"cs:{openid}", now - 2 * DAY) >= 5:
            raise ApiError(45047, "out of response count limit")
        box.stamp(app_id, f"cs:{openid}", now)
        box.add(Sent(box.next_id("cs"), "oa", "custom", call.token.tenant_id, app_id, now, body,
                     targets=[openid]))  # fmt: skip
    return {"errcode": 0, "errmsg": "ok"}


def mass_send(call: ApiCall) -> dict[str, Any]:
    body, state = call.body, call.state
    touser = body.get("touser")
    if not isinstance(touser, list) or not 2 <= len(touser) <= MAX_TARGETS:
        raise ApiError(40130, "invalid openid list size, at least two openid")
    if body.get("msgtype") not in MASS_TYPES:
        raise ApiError(40008, "invalid message type")
    app_id = call.token.owner
    followers = state.followers.get(app_id, {})
    with state.lock:
        openids = [o for o in dict.fromkeys(touser) if followers.get(o)]
        return _mass_deliver(call, app_id, openids)


def mass_sendall(call: ApiCall) -> dict[str, Any]:
    """``message/mass/sendall``: to every follower (``is_to_all``) or one user tag."""
    body, state = call.body, call.state
    flt = body.get("filter")
    if not isinstance(flt, dict):
        raise ApiError(47001, "data format error")
    if body.get("msgtype") not in MASS_TYPES:
        raise ApiError(40008, "invalid message type")
    app_id = call.token.owner
    followers = state.followers.get(app_id, {})
    with state.lock:
        if flt.get("is_to_all") is True:
            members = [o for o, on in followers.items() if on]
        else:
            tags = state.oa_tags.get(app_id, {})
            if flt.get("tag_id") not in tags:
                raise ApiError(40050, "invalid tag id")
            members = sorted(o for o in tags[flt["tag_id"]] if followers.get(o))
        return _mass_deliver(call, app_id, members)


def _mass_deliver(call: ApiCall, app_id: str, openids: list[str]) -> dict[str, Any]:
    """Record a mass message to these followers (under the state's lock): at most 4 a month
    each (the rest are filtered, as the platform does); ``clientmsgid`` refuses a repeat."""
    state, body = call.state, call.body
    box, now = state.mailbox, state.now()
    key = body.get("clientmsgid")
    if key and (app_id, f"mass|{key}") in box.dedupe:
        raise ApiError(45065, "clientmsgid exist")
    reached = []
    for openid in openids:
        if box.times(app_id, f"mass:{openid}", now - MONTH) >= 4:
            continue
        box.stamp(app_id, f"mass:{openid}", now)
        reached.append(openid)
    sent = box.add(Sent(str(next(box.counter)), "oa", "mass", call.token.tenant_id, app_id, now,
                        body, targets=reached))  # fmt: skip
    if key:
        box.dedupe[(app_id, f"mass|{key}")] = sent.msgid
    return {"errcode": 0, "errmsg": "send job submission success", "msg_id": int(sent.msgid),
            "msg_data_id": int(sent.msgid)}  # fmt: skip
