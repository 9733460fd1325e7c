"""The fake's WeCom group-send tasks (docs/platform.md "Group sends are staff tasks").

``add_msg_template`` (sending.py) creates one task per sending member; nothing goes out until the
member confirms it in the WeCom client. Here a member confirms ``confirm_delay`` seconds after
the send (the fake's config) unless the member has a delay of their own, or never confirms
(``POST /_fake/group-tasks``, which can also make a member confirm now). On top of that:

- ``get_groupmsg_task``: per member, status 0 (not sent) or 2 (sent) and ``send_time``;
  ``get_groupmsg_send_result``: per recipient of a member, 0 not sent, 1 sent, 2 not a friend,
  3 already received another mass message. Both page with ``limit`` (at most 1000, default 500)
  and ``cursor``.
- ``remind_groupmsg_send``: at most 3 reminders per message in 24 h; a 4th answers
  ``REMIND_LIMIT`` (the page names no errcode: 45009 is WeCom's global "over the API's limit").
- ``cancel_groupmsg_send``: the members who have not confirmed never send; a confirmed task stays
  sent. When no member is left to stop, the call answers ``NOTHING_TO_CANCEL`` (the page names
  none: 40058, WeCom's global "invalid parameter"). The page reports no "cancelled" task status,
  so a cancelled task keeps reading 0.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.fake_wechat import budget
from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.mailbox import DAY, Sent
from sandbox.fake_wechat.state import ApiError, FakeState

REMINDS_PER_DAY = 3
REMIND_LIMIT = 45009
NOTHING_TO_CANCEL = 40058
PAGE_DEFAULT, PAGE_MAX = 500, 1000


def _sent(call: ApiCall) -> Sent:
    msgid = call.body.get("msgid")
    sent = call.state.mailbox.by_id.get(msgid) if isinstance(msgid, str) else None
    owner = call.token.owner if call.token else None
    if sent is None or sent.api != "wecom" or sent.owner != owner or sent.kind == "app":
        raise ApiError(41063, "invalid msgid")
    return sent


def task_state(state: FakeState, sent: Sent, userid: str) -> tuple[int, int]:
    """(status, send_time) of a member's task now: 2 once confirmed, else 0."""
    if userid in sent.cancelled:
        return 0, 0
    if userid in sent.confirmed:
        return 2, int(sent.confirmed[userid])
    delay = state.staff_confirm.get(userid, state.config.confirm_delay)
    if delay is not None and state.now() >= sent.at + delay:
        return 2, int(sent.at + delay)
    return 0, 0


def _page(call: ApiCall, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    limit = call.body.get("limit") or PAGE_DEFAULT
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= PAGE_MAX:
        raise ApiError(40058, f"limit: 1 to {PAGE_MAX}")
    cursor = call.body.get("cursor") or "0"
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise ApiError(40058, "invalid cursor")
    start = int(cursor)
    end = start + limit
    return {key: rows[start:end], "next_cursor": str(end) if end < len(rows) else ""}


def get_groupmsg_task(call: ApiCall) -> dict[str, Any]:
    with call.state.lock:
        sent = _sent(call)
        budget.settle(call.state, call.state.now())
        rows = []
        for userid in sent.tasks:
            status, at = task_state(call.state, sent, userid)
            rows.append({"userid": userid, "status": status, "send_time": at})
    return _page(call, rows, "task_list")


def get_groupmsg_send_result(call: ApiCall) -> dict[str, Any]:
    with call.state.lock:
        sent = _sent(call)
        userid = call.body.get("userid")
        if userid not in sent.tasks:
            raise ApiError(60111, "invalid string value `userid`")
        budget.settle(call.state, call.state.now())
        status, at = task_state(call.state, sent, userid)
        key = "chat_id" if sent.kind == "group" else "external_userid"
        rows = [{key: target, "userid": userid, "status": result if status == 2 else 0,
                 "send_time": at} for target, result in sent.tasks[userid].items()]  # fmt: skip
    return _page(call, rows, "send_list")


def remind_groupmsg_send(call: ApiCall) -> dict[str, Any]:
    state = call.state
    with state.lock:
        sent = _sent(call)
        now = state.now()
        recent = [t for t in sent.reminds if now - t < DAY]
        if len(recent) >= REMINDS_PER_DAY:
            raise ApiError(REMIND_LIMIT, "remind count of this msgid exceeds the limit in 24h")
        sent.reminds.append(now)
    return {}


def cancel_groupmsg_send(call: ApiCall) -> dict[str, Any]:
    state = call.state
    with state.lock:
        sent = _sent(call)
        pending = [u for u in sent.tasks if task_state(state, sent, u)[0] == 0
                   and u not in sent.cancelled]  # fmt: skip
        if not pending and not sent.cancelled:
            raise ApiError(NOTHING_TO_CANCEL, "the group message was sent already")
        for userid in pending:
            sent.cancelled[userid] = state.now()
    return {}


def admin_blueprint(state: FakeState) -> Blueprint:
    """``/_fake/group-tasks``: the tasks and what each member does (tests and the demo)."""
    bp = Blueprint("fake_group_tasks", __name__, url_prefix="/_fake")

    @bp.get("/group-tasks")
    def tasks():
        with state.lock:
            out = [
                {"msgid": s.msgid, "tenant": s.tenant_id, "kind": s.kind, "userid": u,
                 "status": task_state(state, s, u)[0], "cancelled": u in s.cancelled,
                 "reminds": len(s.reminds)}
                for s in state.mailbox.sent if s.api == "wecom" and s.kind != "app"
                for u in s.tasks
            ]  # fmt: skip
        return jsonify(tasks=out)

    @bp.post("/group-tasks")
    def member():
        """``{"userid", "confirm": "now" | "never" | seconds, "msgid"?}``: "now" confirms the
        member's pending tasks (of one message, or all); "never" and seconds set how the member
        answers tasks from now on."""
        body = request.get_json(force=True, silent=True) or {}
        userid, confirm, msgid = body.get("userid"), body.get("confirm"), body.get("msgid")
        if not isinstance(userid, str) or not userid:
            return jsonify(error="userid is required"), 400
        with state.lock:
            if confirm == "now":
                now, done = state.now(), []
                for s in state.mailbox.sent:
                    mine = userid in s.tasks and msgid in (None, s.msgid) and s.kind != "app"
                    if mine and userid not in s.cancelled and task_state(state, s, userid)[0] == 0:
                        s.confirmed[userid] = now
                        done.append(s.msgid)
                return jsonify(confirmed=done)
            if confirm == "never":
                state.staff_confirm[userid] = None
            elif isinstance(confirm, int) and not isinstance(confirm, bool) and confirm >= 0:
                state.staff_confirm[userid] = confirm
            else:
                return jsonify(error='confirm: "now", "never" or seconds'), 400
        return jsonify(userid=userid, confirm=confirm)

    return bp
