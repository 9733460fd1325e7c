"""The fake's channel code APIs (docs/platform.md "Contact me and join codes"): WeCom "contact me"
configs (``externalcontact/add_contact_way`` / ``get_`` / ``update_`` / ``del_contact_way``) and
customer-group join codes (``externalcontact/groupchat/add_join_way`` / ``get_`` / ``update_`` /
``del_join_way``), with the platform's limits: ``state`` and ``remark`` at most 30 characters
(refused, never cut), a single-member config (type 1) exactly one user, at most 100 users, at most 5
groups per join code, members and groups the corp has, at most 500,000 configs per corp; an
unknown ``config_id`` is refused.

For tests and the demo, ``POST /_fake/channel-codes/add`` makes a customer add a member through
a contact config (WeCom picks among the config's users; here in turn) or join a group through a
join code: the fake's world records it (the contact and its follow user with the ``state``, or
the group member with its ``state``) and the answer holds the callback's fields, ``State``
included, for the test to sign and post to ingest. A config has no welcome of its own (the fake
keeps none), so, as in WeCom, the add's callback carries a ``WelcomeCode`` too: issued by the
welcome fake (sandbox/fake_wechat/welcome.py), valid 20 s on the fake's clock, single-use.

WeCom keeps a corp's configs; the fake keeps them in memory, so a fake restarted beside a kept
database (`siyu dev` again) would have lost configs our codes name. ``POST
/_fake/channel-codes/restore`` (`siyu dev --demo`'s seeding, sandbox/console_demo.py) puts them
back under their own config ids, as WeCom would still hold them.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.fake_wechat import welcome
from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.seed import Contact
from sandbox.fake_wechat.state import ApiError, FakeState

MAX_STATE = 30
MAX_USERS = 100
MAX_CHATS = 5
MAX_REMARK = 30  # characters (WeCom: remark at most 30)
MAX_CONFIGS = 500_000  # API-made contact me and join configs per corp
QR_BASE = "https://wework.qpic.cn/wwpic/"


def _ways(state: FakeState, corp_id: str) -> dict[str, dict[str, Any]]:
    return state.channel_codes.setdefault(corp_id, {})


def _state_param(body: dict[str, Any]) -> str:
    value = body.get("state", "")
    if not isinstance(value, str) or len(value) > MAX_STATE:
        raise ApiError(40058, "invalid state: at most 30 characters")
    return value


def _remark(body: dict[str, Any]) -> str:
    value = body.get("remark") or ""
    if not isinstance(value, str) or len(value) > MAX_REMARK:
        raise ApiError(40058, "invalid remark: at most 30 characters")
    return value


def _store(call: ApiCall, config_id: str, way: dict[str, Any]) -> None:
    """Keep a new config, within the per-corp limit (a dict's len: cheap)."""
    with call.state.lock:
        ways = _ways(call.state, call.world.corp_id)
        if len(ways) >= MAX_CONFIGS:
            raise ApiError(40058, "too many configs: at most 500000 per corp")
        ways[config_id] = way


def _users(call: ApiCall, value: Any, kind: int) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(u, str) for u in value):
        raise ApiError(40058, "user is required")
    if kind == 1 and len(value) != 1:
        raise ApiError(40058, "a single-member config (type 1) takes exactly one user")
    if len(value) > MAX_USERS:
        raise ApiError(40058, "at most 100 users")
    for userid in value:
        if userid not in call.world.staff:
            raise ApiError(60111, f"invalid string value `{userid}`")
    return list(value)


def _chats(call: ApiCall, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApiError(40058, "chat_id_list is required")
    if len(value) > MAX_CHATS:
        raise ApiError(40058, "chat_id_list: at most 5 groups")
    for chat_id in value:
        if not isinstance(chat_id, str) or chat_id not in call.world.chats:
            raise ApiError(40050, "invalid chatid")
    return list(value)


def _way(call: ApiCall, kind: str) -> dict[str, Any]:
    config_id = call.body.get("config_id")
    way = _ways(call.state, call.world.corp_id).get(config_id) if config_id else None
    if way is None or way["kind"] != kind:
        raise ApiError(40058, "invalid config_id")
    return way


def _new_id() -> str:
    return secrets.token_hex(16)


# --- contact me --------------------------------------------------------------------------------


def add_contact_way(call: ApiCall) -> dict[str, Any]:
    body = call.body
    kind, scene = body.get("type"), body.get("scene")
    if kind not in (1, 2) or scene not in (1, 2):
        raise ApiError(40058, "type must be 1 or 2, scene 1 or 2")
    way = {
        "kind": "contact", "type": kind, "scene": scene, "state": _state_param(body),
        "user": _users(call, body.get("user"), kind),
        "skip_verify": bool(body.get("skip_verify", True)),
        "remark": _remark(body), "turn": 0,
    }  # fmt: skip
    config_id = _new_id()
    way["config_id"] = config_id
    way["qr_code"] = QR_BASE + config_id + "/0" if scene == 2 else ""
    _store(call, config_id, way)
    return {"config_id": config_id, **({"qr_code": way["qr_code"]} if scene == 2 else {})}


def _public(way: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in way.items() if k not in ("kind", "turn")}


def get_contact_way(call: ApiCall) -> dict[str, Any]:
    return {"contact_way": _public(_way(call, "contact"))}


def update_contact_way(call: ApiCall) -> dict[str, Any]:
    way, body = _way(call, "contact"), call.body
    changes: dict[str, Any] = {}
    if "state" in body:
        changes["state"] = _state_param(body)
    if "user" in body:
        changes["user"] = _users(call, body["user"], way["type"])
    if "skip_verify" in body:
        changes["skip_verify"] = bool(body["skip_verify"])
    if "remark" in body:
        changes["remark"] = _remark(body)
    with call.state.lock:
        way.update(changes)
    return {}


def _delete(call: ApiCall, kind: str) -> dict[str, Any]:
    way = _way(call, kind)
    with call.state.lock:
        _ways(call.state, call.world.corp_id).pop(way["config_id"], None)
    return {}


def del_contact_way(call: ApiCall) -> dict[str, Any]:
    return _delete(call, "contact")


# --- join codes ----------------------------------------------------------------------------------


def add_join_way(call: ApiCall) -> dict[str, Any]:
    body = call.body
    if body.get("scene") not in (1, 2):
        raise ApiError(40058, "scene must be 1 or 2")
    config_id = _new_id()
    way = {
        "kind": "group", "config_id": config_id, "scene": body["scene"],
        "state": _state_param(body), "chat_id_list": _chats(call, body.get("chat_id_list")),
        "remark": _remark(body), "auto_create_room": 0,
        "qr_code": QR_BASE + "join/" + config_id + "/0" if body["scene"] == 2 else "",
    }  # fmt: skip
    _store(call, config_id, way)
    return {"config_id": config_id}


def get_join_way(call: ApiCall) -> dict[str, Any]:
    return {"join_way": _public(_way(call, "group"))}


def update_join_way(call: ApiCall) -> dict[str, Any]:
    way, body = _way(call, "group"), call.body
    changes: dict[str, Any] = {}
    if "state" in body:
        changes["state"] = _state_param(body)
    if "chat_id_list" in body:
        changes["chat_id_list"] = _chats(call, body["chat_id_list"])
    if "remark" in body:
        changes["remark"] = _remark(body)
    with call.state.lock:
        way.update(changes)
    return {}


def del_join_way(call: ApiCall) -> dict[str, Any]:
    return _delete(call, "group")


ROUTES = {
    "externalcontact/add_contact_way": add_contact_way,
    "externalcontact/get_contact_way": get_contact_way,
    "externalcontact/update_contact_way": update_contact_way,
    "externalcontact/del_contact_way": del_contact_way,
    "externalcontact/groupchat/add_join_way": add_join_way,
    "externalcontact/groupchat/get_join_way": get_join_way,
    "externalcontact/groupchat/update_join_way": update_join_way,
    "externalcontact/groupchat/del_join_way": del_join_way,
}


# --- /_fake: a customer comes through a code ---------------------------------------------------


def register_admin(bp: Blueprint, state: FakeState) -> None:
    """``POST /_fake/channel-codes/add`` ``{"corpid", "config_id", "external_userid"?,
    "name"?}``: the customer adds a member of the contact config (in turn) or joins the join
    code's first group; 404 for an unknown config. Answers ``{"callback": {...}}``: the fields
    of the ``change_external_contact`` / ``change_external_chat`` callback WeCom would post (an
    add through a contact config: ``State`` and a live ``WelcomeCode``)."""

    @bp.post("/channel-codes/add")
    def channel_code_add():
        data = request.get_json(force=True, silent=True) or {}
        corp_id, config_id = data.get("corpid"), data.get("config_id")
        with state.lock:
            world = state.worlds.get(corp_id or "")
            way = _ways(state, corp_id).get(config_id) if world else None
            if way is None:
                return jsonify(error="unknown corpid or config_id"), 404
            ext = data.get("external_userid") or "wm" + secrets.token_hex(12)
            now = int(state.now())
            if way["kind"] == "contact":
                userid = way["user"][way["turn"] % len(way["user"])]
                way["turn"] += 1
                follow = {"userid": userid, "remark": "", "description": "", "createtime": now,
                          "tags": [], "state": way["state"], "add_way": 1,
                          "oper_userid": ext}  # fmt: skip
                contact = world.contacts.get(ext)
                if contact is None:
                    detail = {"external_userid": ext, "name": data.get("name") or "新客户",
                              "type": 1}  # fmt: skip
                    world.contacts[ext] = Contact(detail, [follow], None)
                else:
                    contact.follow_user = [
                        f for f in contact.follow_user if f["userid"] != userid
                    ] + [follow]
                callback = {
                    "ToUserName": corp_id, "FromUserName": "sys", "CreateTime": now,
                    "MsgType": "event", "Event": "change_external_contact",
                    "ChangeType": "add_external_contact", "UserID": userid,
                    "ExternalUserID": ext, "State": way["state"],
                    # The add callback of a config without a welcome of its own carries both.
                    "WelcomeCode": welcome.issue(state, corp_id, userid, ext)["welcome_code"],
                }  # fmt: skip
            else:
                chat = world.chats[way["chat_id_list"][0]]
                member = {"userid": ext, "type": 2, "join_time": now, "join_scene": 3,
                          "state": way["state"], "group_nickname": ""}  # fmt: skip
                chat.detail["member_list"] = [*chat.detail["member_list"], member]
                callback = {
                    "ToUserName": corp_id, "FromUserName": "sys", "CreateTime": now,
                    "MsgType": "event", "Event": "change_external_chat", "ChatId": chat.chat_id,
                    "ChangeType": "update", "UpdateDetail": "add_member", "JoinScene": 3,
                    "MemChangeCnt": 1, "MemChangeList": [ext],
                }  # fmt: skip
        return jsonify(callback=callback)

    @bp.post("/channel-codes/restore")
    def channel_code_restore():
        """``{"corpid", "codes": [{"config_id", "kind", "state", "staff" | "chat_ids",
        "skip_verify"?, "name"?}]}`` (a code as the admin API shows it): each config the fake
        does not hold is put back; answers ``{"restored": n}``; 404 for an unknown corp."""
        data = request.get_json(force=True, silent=True) or {}
        corp_id, codes = data.get("corpid") or "", data.get("codes")
        if not isinstance(codes, list) or not all(isinstance(c, dict) for c in codes):
            return jsonify(error="codes: a list of channel codes"), 400
        restored = 0
        with state.lock:
            world = state.worlds.get(corp_id)
            if world is None:
                return jsonify(error="unknown corpid"), 404
            ways = _ways(state, corp_id)
            for code in codes:
                config_id = code.get("config_id")
                if not isinstance(config_id, str) or not config_id or config_id in ways:
                    continue
                remark = str(code.get("name") or "")[:30]
                if code.get("kind") == "group":
                    chats = [c for c in code.get("chat_ids") or [] if c in world.chats]
                    if not chats:
                        continue  # its groups are gone from this world too
                    ways[config_id] = {
                        "kind": "group", "config_id": config_id, "scene": 2,
                        "state": str(code.get("state") or ""), "chat_id_list": chats,
                        "remark": remark, "auto_create_room": 0,
                        "qr_code": QR_BASE + "join/" + config_id + "/0",
                    }  # fmt: skip
                else:
                    users = [u for u in code.get("config_users") or code.get("staff") or []
                             if u in world.staff]  # fmt: skip
                    if not users:
                        continue
                    ways[config_id] = {
                        "kind": "contact", "config_id": config_id, "scene": 2,
                        "type": 1 if len(users) == 1 else 2, "state": str(code.get("state") or ""),
                        "user": users, "skip_verify": bool(code.get("skip_verify", True)),
                        "remark": remark, "turn": 0, "qr_code": QR_BASE + config_id + "/0",
                    }  # fmt: skip
                restored += 1
        return jsonify(restored=restored)
