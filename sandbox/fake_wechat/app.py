"""The fake's HTTP API: WeCom under ``/wecom/cgi-bin/``, the Official Account API under
``/oa/cgi-bin/``, inspection and fault injection under ``/_fake/`` (not part of the platform),
and ``/healthz``, ``/readyz``, ``/metrics``.

Like the platform, an API error is HTTP 200 with ``errcode``/``errmsg``; WeCom answers carry
``errcode: 0, errmsg: "ok"`` on success, the OA token endpoints only their fields.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from prometheus_client import Counter

from sandbox.fake_wechat import budget, channel_codes, group_tasks, media, sending, welcome
from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.state import ApiError, FakeState, Injection, Token
from shared.health import ops_blueprint

CALLS = Counter(
    "siyu_fake_wechat_calls_total",
    "API calls answered by the fake WeChat/WeCom API, by errcode",
    ["api", "path", "errcode"],
)

DEFAULT_ERRMSG = {
    -1: "system busy",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
}


@dataclass(frozen=True)
class Route:
    method: str
    handler: Callable[[ApiCall], dict[str, Any]]
    auth: bool = True


# --- WeCom --------------------------------------------------------------------------------------


def _wecom_gettoken(call: ApiCall) -> dict[str, Any]:
    token = call.state.wecom_gettoken(
        request.args.get("corpid", ""), request.args.get("corpsecret", "")
    )
    return _token_body(call.state, token)


def _token_body(state: FakeState, token: Token) -> dict[str, Any]:
    expires_in = max(1, int(token.expires_at - state.now()))
    return {"access_token": token.value, "expires_in": expires_in}


def _api_domain_ip(call: ApiCall) -> dict[str, Any]:
    return {"ip_list": ["127.0.0.1"]}


def _encode_cursor(external_userid: str, offset: int) -> str:
    raw = f"{external_userid}:{offset}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, external_userid: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, _, offset = raw.rpartition(":")
        if owner != external_userid or not offset.isdigit():
            raise ValueError(cursor)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(40058, "invalid cursor") from None


def _valid_external_userid(value: str) -> bool:
    return value.startswith(("wm", "wo")) and 10 <= len(value) <= 64


def _externalcontact_get(call: ApiCall) -> dict[str, Any]:
    external_userid = request.args.get("external_userid", "")
    if not _valid_external_userid(external_userid):
        raise ApiError(40096, "invalid external userid")
    contact = call.world.contacts.get(external_userid)
    if contact is None:
        raise ApiError(84061, "not external contact")
    cursor = request.args.get("cursor", "")
    start = _decode_cursor(cursor, external_userid) if cursor else 0
    page = max(1, call.state.config.follow_user_page)
    follow = contact.follow_user[start : start + page]
    more = start + page < len(contact.follow_user)
    return {
        "external_contact": dict(contact.external_contact),
        "follow_user": follow,
        "next_cursor": _encode_cursor(external_userid, start + page) if more else "",
    }


def _externalcontact_list(call: ApiCall) -> dict[str, Any]:
    userid = request.args.get("userid", "")
    if userid not in call.world.staff:
        raise ApiError(60111, "invalid string value `userid`")
    customers = call.world.customers_of(userid)
    if not customers:
        raise ApiError(84061, "not external contact")
    return {"external_userid": customers}


def _follow_user_list(call: ApiCall) -> dict[str, Any]:
    return {"follow_user": list(call.world.staff)}


def _groupchat_get(call: ApiCall) -> dict[str, Any]:
    chat_id = call.body.get("chat_id")
    chat = call.world.chats.get(chat_id) if isinstance(chat_id, str) else None
    if chat is None:
        raise ApiError(40050, "invalid chatid")
    need_name = call.body.get("need_name") in (1, "1", True)
    members = []
    for member in chat.detail["member_list"]:
        member = dict(member)
        if need_name:
            member["name"] = chat.names.get(member["userid"], "")
        members.append(member)
    return {"group_chat": {**chat.detail, "member_list": members}}


def _groupchat_list(call: ApiCall) -> dict[str, Any]:
    """Groups by owner (``owner_filter.userid_list``), paged by ``cursor``/``limit`` (≤1000)."""
    limit = call.body.get("limit", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ApiError(40058, "limit must be 1 to 1000")
    owners = (call.body.get("owner_filter") or {}).get("userid_list") or []
    chats = sorted(
        (c for c in call.world.chats.values() if not owners or c.detail["owner"] in owners),
        key=lambda c: c.chat_id,
    )
    cursor = call.body.get("cursor") or ""
    chats = [c for c in chats if c.chat_id > cursor]
    page = chats[:limit]
    status = call.body.get("status_filter", 0)
    return {
        "group_chat_list": [
            {"chat_id": c.chat_id, "status": 0}
            for c in page
            if status != 0 or c.chat_id not in call.state.dismissed
        ],
        "next_cursor": page[-1].chat_id if len(chats) > limit else "",
    }


def _unionid_to_external_userid(call: ApiCall) -> dict[str, Any]:
    unionid, openid = call.body.get("unionid"), call.body.get("openid")
    if not isinstance(unionid, str) or not unionid or not isinstance(openid, str) or not openid:
        raise ApiError(40058, "unionid and openid are required")
    external_userid = call.world.by_unionid.get(unionid)
    contact = call.world.contacts.get(external_userid or "")
    if contact is None or contact.person.openid != openid:
        raise ApiError(84061, "not external contact")
    return {"external_userid": external_userid}


def _corp_tag_list(call: ApiCall) -> dict[str, Any]:
    tag_ids = call.body.get("tag_id") or []
    group_ids = call.body.get("group_id") or []
    groups: dict[str, dict[str, Any]] = {}
    for tag in call.world.tags:
        if group_ids and tag.group_id not in group_ids:
            continue
        if tag_ids and not group_ids and tag.tag_id not in tag_ids:
            continue
        group = groups.setdefault(
            tag.group_id,
            {
                "group_id": tag.group_id,
                "group_name": tag.group_name,
                "create_time": tag.create_time,
                "order": len(groups) + 1,
                "tag": [],
            },
        )
        group["tag"].append(
            {"id": tag.tag_id, "name": tag.name, "create_time": tag.create_time, "order": tag.order}
        )
    return {"tag_group": list(groups.values())}


WECOM: dict[str, Route] = {
    "gettoken": Route("GET", _wecom_gettoken, auth=False),
    "get_api_domain_ip": Route("GET", _api_domain_ip),
    "externalcontact/get": Route("GET", _externalcontact_get),
    "externalcontact/list": Route("GET", _externalcontact_list),
    "externalcontact/get_follow_user_list": Route("GET", _follow_user_list),
    "externalcontact/groupchat/get": Route("POST", _groupchat_get),
    "externalcontact/unionid_to_external_userid": Route("POST", _unionid_to_external_userid),
    "externalcontact/get_corp_tag_list": Route("POST", _corp_tag_list),
    "externalcontact/add_msg_template": Route("POST", sending.add_msg_template),
    "externalcontact/groupchat/list": Route("POST", _groupchat_list),
    "message/send": Route("POST", sending.message_send),
    # The platform's budget of group sends: the corp's and its members' sends (budget.py).
    "externalcontact/get_groupmsg_list_v2": Route("POST", budget.get_groupmsg_list_v2),
    "media/upload": Route("POST", media.upload),  # temporary media, 3 days (media.py)
    # Group sends are staff tasks (group_tasks.py): per member and recipient, remind, cancel.
    "externalcontact/get_groupmsg_task": Route("POST", group_tasks.get_groupmsg_task),
    "externalcontact/get_groupmsg_send_result": Route("POST", group_tasks.get_groupmsg_send_result),
    "externalcontact/remind_groupmsg_send": Route("POST", group_tasks.remind_groupmsg_send),
    "externalcontact/cancel_groupmsg_send": Route("POST", group_tasks.cancel_groupmsg_send),
    # welcome on add (sandbox/fake_wechat/welcome.py)
    "externalcontact/send_welcome_msg": Route("POST", welcome.send_welcome_msg),
    "externalcontact/mark_tag": Route("POST", welcome.mark_tag),
    "externalcontact/group_welcome_template/add": Route("POST", welcome.template_add),
    "externalcontact/group_welcome_template/edit": Route("POST", welcome.template_edit),
    "externalcontact/group_welcome_template/get": Route("POST", welcome.template_get),
    "externalcontact/group_welcome_template/del": Route("POST", welcome.template_del),
    # Channel codes: contact me configs and join codes (sandbox/fake_wechat/channel_codes.py).
    **{path: Route("POST", handler) for path, handler in channel_codes.ROUTES.items()},
}


# --- Official Account ---------------------------------------------------------------------------


def _oa_token(call: ApiCall) -> dict[str, Any]:
    args = request.args
    token = call.state.oa_token(
        args.get("grant_type", ""), args.get("appid", ""), args.get("secret", "")
    )
    return _token_body(call.state, token)


def _oa_stable_token(call: ApiCall) -> dict[str, Any]:
    body = call.body
    force = body.get("force_refresh") in (True, "true", 1)
    token = call.state.oa_stable_token(
        str(body.get("grant_type") or ""),
        str(body.get("appid") or ""),
        str(body.get("secret") or ""),
        force,
    )
    return _token_body(call.state, token)


OA: dict[str, Route] = {
    "token": Route("GET", _oa_token, auth=False),
    "stable_token": Route("POST", _oa_stable_token, auth=False),
    "get_api_domain_ip": Route("GET", _api_domain_ip),
    "getcallbackip": Route("GET", _api_domain_ip),
    "message/template/send": Route("POST", sending.template_send),
    "message/custom/send": Route("POST", sending.custom_send),
    "message/mass/send": Route("POST", sending.mass_send),
    "message/mass/sendall": Route("POST", sending.mass_sendall),
}

ROUTES = {"wecom": WECOM, "oa": OA}


# --- dispatch -----------------------------------------------------------------------------------


def _errmsg(api: str, error: ApiError) -> str:
    hint = secrets.token_hex(8)
    if api == "wecom":
        return (
            f"{error.errmsg}, hint: [{hint}], from ip: {request.remote_addr}, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={error.errcode}"
        )
    return f"{error.errmsg} rid: {hint}"


def _json_body() -> dict[str, Any]:
    if request.mimetype == "multipart/form-data":
        return {}  # an upload (media/upload): the handler reads request.files
    data = request.get_json(force=True, silent=True) if request.get_data() else {}
    if not isinstance(data, dict):
        raise ApiError(47001, "data format error")
    return data


def _dispatch(state: FakeState, api: str, path: str):
    route = ROUTES[api].get(path)
    token: Token | None = None
    status = 200
    try:
        injected = state.take_injection(api, path)
        if injected is not None:
            raise ApiError(injected.errcode, injected.errmsg)
        if route is None:
            status = 404
            raise ApiError(48001, f"api unauthorized (/{path} is not served by siyu fake-wechat)")
        if request.method != route.method:
            raise ApiError(*((43001, "require GET method") if route.method == "GET" else
                             (43002, "require POST method")))  # fmt: skip
        if route.auth:
            token = state.check_token(api, request.args.get("access_token"))
        body = _json_body() if route.method == "POST" else {}
        result = route.handler(ApiCall(state, token, body))
        payload = {"errcode": 0, "errmsg": "ok", **result} if api == "wecom" else result
        errcode = 0
    except ApiError as error:
        payload = {"errcode": error.errcode, "errmsg": _errmsg(api, error)}
        errcode = error.errcode
    tenant = token.tenant_id if token is not None else None
    state.record(request.method, api, path, errcode, tenant)
    CALLS.labels(api, path if route is not None else "unknown", str(errcode)).inc()
    return jsonify(payload), status


# --- /_fake -------------------------------------------------------------------------------------


def _admin(state: FakeState) -> Blueprint:
    bp = Blueprint("fake_admin", __name__, url_prefix="/_fake")

    def body() -> dict[str, Any]:
        data = request.get_json(force=True, silent=True) if request.get_data() else {}
        return data if isinstance(data, dict) else {}

    def bad(message: str):
        return jsonify(error=message), 400

    @bp.get("/state")
    def summary():
        return jsonify(state.summary())

    @bp.post("/tokens/revoke")
    def revoke():
        data = body()
        if not any(data.get(k) for k in ("access_token", "corpid", "appid")):
            return bad("give access_token, corpid or appid")
        n = state.revoke(
            token=data.get("access_token"), corp_id=data.get("corpid"), app_id=data.get("appid")
        )
        return jsonify(revoked=n)

    @bp.post("/inject")
    def inject():
        data = body()
        errcode, count = data.get("errcode"), data.get("count", 1)
        if not isinstance(errcode, int) or errcode == 0:
            return bad("errcode must be a non-zero integer (e.g. -1 or 45009)")
        if not isinstance(count, int) or count < 1:
            return bad("count must be a positive integer")
        if data.get("api") not in (None, "wecom", "oa"):
            return bad("api must be wecom or oa")
        errmsg = data.get("errmsg") or DEFAULT_ERRMSG.get(errcode, "injected error")
        injection = Injection(errcode, str(errmsg), count, data.get("api"), data.get("path"))
        state.inject(injection)
        return jsonify(injections=state.summary()["injections"]), 201

    @bp.get("/inject")
    def injections():
        return jsonify(injections=state.summary()["injections"])

    @bp.delete("/inject")
    def clear_injections():
        with state.lock:
            state.injections.clear()
        return jsonify(injections=[])

    @bp.post("/reset-limits")
    def reset_limits():
        state.reset_limits()
        return jsonify(status="ok")

    @bp.get("/calls")
    def calls():
        since = request.args.get("since", "0")
        limit = request.args.get("limit", "1000")
        if not since.isdigit() or not limit.isdigit():
            return bad("since and limit must be non-negative integers")
        return jsonify(calls=state.calls_since(int(since), int(limit)))

    @bp.delete("/calls")
    def clear_calls():
        state.clear_calls()
        return jsonify(calls=[])

    @bp.post("/clock")
    def clock():
        advance = body().get("advance", 0)
        if not isinstance(advance, int | float) or isinstance(advance, bool) or advance < 0:
            return bad("advance must be a non-negative number of seconds")
        with state.lock:
            state.offset += advance
        return jsonify(now=state.now(), offset=state.offset)

    @bp.get("/messages")
    def messages():
        """What the sending APIs accepted, oldest first (``?tenant=``, ``?kind=``)."""
        with state.lock:
            now, delay = state.now(), state.config.confirm_delay
            budget.settle(state, now)
            sent = [
                s.summary(now, delay)
                for s in state.mailbox.sent
                if request.args.get("tenant") in (None, s.tenant_id)
                and request.args.get("kind") in (None, s.kind)
            ]
        return jsonify(messages=sent)

    @bp.post("/people")
    def people():
        """Change the world: ``{"appid", "openid", "following"}`` (un)follows the OA,
        ``{"appid", "openid", "tag_id"}`` puts a follower under an OA user tag,
        ``{"external_userid", "deleted"}`` deletes a customer, ``{"chat_id", "dismissed"}``
        dismisses a group."""
        data = body()
        with state.lock:
            if data.get("appid") and data.get("openid") and isinstance(data.get("tag_id"), int):
                tags = state.oa_tags.setdefault(data["appid"], {})
                tags.setdefault(data["tag_id"], set()).add(data["openid"])
            elif data.get("appid") and data.get("openid"):
                state.followers.setdefault(data["appid"], {})[data["openid"]] = bool(
                    data.get("following", True)
                )
            elif data.get("external_userid"):
                change = state.deleted.add if data.get("deleted", True) else state.deleted.discard
                change(data["external_userid"])
            elif data.get("chat_id"):
                change = (
                    state.dismissed.add if data.get("dismissed", True) else state.dismissed.discard
                )
                change(data["chat_id"])
            else:
                return bad("give appid+openid, external_userid or chat_id")
        return jsonify(status="ok")

    @bp.get("/config")
    def get_config():
        return jsonify(state.summary()["config"])

    @bp.patch("/config")
    def set_config():
        try:
            with state.lock:
                state.config.update(body())
        except KeyError as exc:
            return bad(f"unknown setting {exc.args[0]!r}")
        except ValueError as exc:
            return bad(str(exc))
        return jsonify(state.summary()["config"])

    channel_codes.register_admin(bp, state)
    return bp


def create_app(state: FakeState) -> Flask:
    app = Flask("siyu-fake-wechat")
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # UTF-8 like the platform
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["FAKE_STATE"] = state
    app.register_blueprint(ops_blueprint())
    app.register_blueprint(_admin(state))
    app.register_blueprint(budget.admin_blueprint(state))  # /_fake/groupmsg
    app.register_blueprint(media.admin_blueprint(state))  # /_fake/image.png
    app.register_blueprint(group_tasks.admin_blueprint(state))
    app.register_blueprint(welcome.admin(state))

    @app.route("/wecom/cgi-bin/<path:path>", methods=["GET", "POST"])
    def wecom(path: str):
        return _dispatch(state, "wecom", path)

    @app.route("/oa/cgi-bin/<path:path>", methods=["GET", "POST"])
    def oa(path: str):
        return _dispatch(state, "oa", path)

    return app
