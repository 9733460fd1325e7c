"""The fake's welcome on add (docs/platform.md "Welcome on add"): welcome codes, new-customer
welcomes, corp tags on a customer and group welcome templates.

- ``POST /_fake/welcome/add`` (tests and the demo): a customer adds a member directly, not
  through a channel code (so no State; an add through a code is ``POST /_fake/channel-codes/add``,
  sandbox/fake_wechat/channel_codes.py, which issues its code here too). The fake issues a
  WelcomeCode (valid 20 s on the fake's clock, single-use) and answers what the add callback
  carries (``welcome_code``, ``create_time``); the customer becomes the member's contact.
- ``externalcontact/send_welcome_msg``: an unknown code, or one past its 20 s, is refused
  (40058: WeCom's page names no errcode for these, so the fake answers "invalid parameter");
  a second send of a code answers 41051 (the welcome was delivered); text over 4000 bytes or more
  than 9 attachments 40058, neither 41008; an image attachment without a media_id the fake
  issued (valid 3 days) or a pic_url 40007, as ``add_msg_template`` (media.py). 41096 (another
  app is sending the welcome) is what an injection (``POST /_fake/inject``) answers. Accepted
  welcomes go to the mailbox (kind ``welcome``).
- ``externalcontact/mark_tag``: 40003 for an unknown member, 40096 for a customer not theirs,
  40068 for a tag the corp does not have; the tags land on the member's follow_user entry.
- ``externalcontact/group_welcome_template/{add,edit,get,del}``: text at most 3000 bytes, at
  most 100 per corp (the fake answers 40058 past it), 40058 for an unknown template_id.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.fake_wechat import media
from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.mailbox import Sent
from sandbox.fake_wechat.seed import Contact
from sandbox.fake_wechat.state import ApiError, FakeState

WINDOW_S = 20
MAX_ATTACHMENTS = 9
TEXT_BYTES = 4000  # send_welcome_msg's text.content
TEMPLATE_TEXT_BYTES = 3000  # a group welcome template's
MAX_TEMPLATES = 100
TEMPLATE_KINDS = ("image", "link", "miniprogram", "file", "video")


@dataclass
class WelcomeCode:
    corp_id: str
    userid: str
    external_userid: str
    issued_at: float
    used: bool = False


@dataclass
class WelcomeBook:
    codes: dict[str, WelcomeCode] = field(default_factory=dict)
    templates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # corp -> id


def book(state: FakeState) -> WelcomeBook:
    """The fake's welcome memory, kept on its state (guarded by ``state.lock``)."""
    found = getattr(state, "_welcome_book", None)
    if found is None:
        found = WelcomeBook()
        state._welcome_book = found  # type: ignore[attr-defined]
    return found


def issue(state: FakeState, corp_id: str, userid: str, external_userid: str) -> dict[str, Any]:
    """A customer adds ``userid``: the welcome code and CreateTime of the add callback."""
    world = state.worlds.get(corp_id)
    if world is None:
        raise KeyError(corp_id)
    if userid not in world.staff:
        raise ValueError(f"unknown member {userid!r}")
    with state.lock:
        now = state.now()
        contact = world.contacts.get(external_userid)
        follow = {"userid": userid, "createtime": int(now), "tags": [], "state": ""}
        if contact is None:
            world.contacts[external_userid] = Contact(
                {"external_userid": external_userid, "name": "新客户", "type": 1}, [follow], None
            )
        elif not any(f["userid"] == userid for f in contact.follow_user):
            contact.follow_user.append(follow)
        code = secrets.token_urlsafe(24)
        book(state).codes[code] = WelcomeCode(corp_id, userid, external_userid, now)
    return {"welcome_code": code, "create_time": int(now)}


def _check_body(body: dict[str, Any]) -> None:
    text = body.get("text") or {}
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        raise ApiError(40058, f"attachments: at most {MAX_ATTACHMENTS}")
    content = text.get("content") if isinstance(text, dict) else None
    if content and len(str(content).encode("utf-8")) > TEXT_BYTES:
        raise ApiError(40058, f"text.content: at most {TEXT_BYTES} bytes")
    if not content and not attachments:
        raise ApiError(41008, "missing text content or attachments")


def send_welcome_msg(call: ApiCall) -> dict[str, Any]:
    body, state, world = call.body, call.state, call.world
    with state.lock:
        code = book(state).codes.get(str(body.get("welcome_code") or ""))
        now = state.now()
        if code is None or code.corp_id != world.corp_id or now > code.issued_at + WINDOW_S:
            raise ApiError(40058, "invalid welcome_code")
        if code.used:
            raise ApiError(41051, "externaluser has started chatting")
        _check_body(body)
        media.check_attachments(call)  # an image needs a valid media_id (or pic_url): 40007
        code.used = True
        box = state.mailbox
        box.add(Sent(box.next_id("welcome"), "wecom", "welcome", world.tenant_id, world.corp_id,
                     now, body, {code.userid: {code.external_userid: 1}}))  # fmt: skip
    return {}


def mark_tag(call: ApiCall) -> dict[str, Any]:
    body, world = call.body, call.world
    userid, ext = body.get("userid"), body.get("external_userid")
    add = body.get("add_tag") or []
    remove = body.get("remove_tag") or []
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag cannot both be empty")
    if userid not in world.staff:
        raise ApiError(40003, "invalid userid")
    contact = world.contacts.get(ext) if isinstance(ext, str) else None
    follow = (
        next((f for f in contact.follow_user if f["userid"] == userid), None) if contact else None
    )
    if follow is None:
        raise ApiError(40096, "invalid external userid")
    known = {t.tag_id for t in world.tags}
    if any(t not in known for t in [*add, *remove]):
        raise ApiError(40068, "invalid tagid")
    with call.state.lock:
        tags = [t for t in follow.get("tag_ids", []) if t not in remove]
        follow["tag_ids"] = tags + [t for t in add if t not in tags]
    return {}


def _template_fields(body: dict[str, Any]) -> dict[str, Any]:
    kept = {k: body[k] for k in ("text", *TEMPLATE_KINDS) if body.get(k)}
    if not kept:
        raise ApiError(41008, "missing text content or attachment")
    text = (kept.get("text") or {}).get("content") if isinstance(kept.get("text"), dict) else None
    if text is not None and len(str(text).encode("utf-8")) > TEMPLATE_TEXT_BYTES:
        raise ApiError(40058, f"text.content: at most {TEMPLATE_TEXT_BYTES} bytes")
    return kept


def _templates(call: ApiCall) -> dict[str, dict[str, Any]]:
    return book(call.state).templates.setdefault(call.world.corp_id, {})


def template_add(call: ApiCall) -> dict[str, Any]:
    kept = _template_fields(call.body)
    with call.state.lock:
        templates = _templates(call)
        if len(templates) >= MAX_TEMPLATES:
            raise ApiError(40058, f"at most {MAX_TEMPLATES} group welcome templates")
        template_id = "msg" + secrets.token_hex(12)
        templates[template_id] = kept
    return {"template_id": template_id}


def _known(call: ApiCall) -> str:
    template_id = call.body.get("template_id")
    if not isinstance(template_id, str) or template_id not in _templates(call):
        raise ApiError(40058, "invalid template_id")
    return template_id


def template_edit(call: ApiCall) -> dict[str, Any]:
    with call.state.lock:
        template_id = _known(call)
        _templates(call)[template_id] = _template_fields(call.body)
    return {}


def template_get(call: ApiCall) -> dict[str, Any]:
    with call.state.lock:
        return dict(_templates(call)[_known(call)])


def template_del(call: ApiCall) -> dict[str, Any]:
    with call.state.lock:
        del _templates(call)[_known(call)]
    return {}


def admin(state: FakeState) -> Blueprint:
    """``POST /_fake/welcome/add`` ``{"corpid", "userid", "external_userid"}``."""
    bp = Blueprint("fake_welcome", __name__, url_prefix="/_fake/welcome")

    @bp.post("/add")
    def add():
        data = request.get_json(force=True, silent=True) or {}
        try:
            issued = issue(state, str(data.get("corpid") or ""), str(data.get("userid") or ""),
                           str(data.get("external_userid") or ""))  # fmt: skip
        except KeyError:
            return jsonify(error="unknown corpid"), 400
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(issued), 201

    return bp
