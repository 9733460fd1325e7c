"""The fake's budget of group sends and the record of them (docs/platform.md "The platform's
budget of group sends").

Each customer and customer group receives at most so many group-sent messages from one corp,
its own members' sends included: as many per calendar month as the month has days (``month``,
the default), 7 per ISO week (``week``) or 1 per day (``day``), as the corp configured it
(``PATCH /_fake/config {"wecom_budget": {"<corp_id>": "week"}}``), in Beijing time on the
fake's clock. The budget is consumed when the member actually sends (confirms) the task, as
WeCom decides it then: a recipient over it at that moment gets send result status 3 ("already
received the allowed number"); a task not yet confirmed consumes nothing (``settle``).
``externalcontact/get_groupmsg_list_v2`` lists the corp's group sends, those created through
the API or the admin (create_type 0) and members' own (create_type 1, made by
``POST /_fake/groupmsg`` for tests and the demo), by time range and creator type, with a cursor.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.fake_wechat.api_call import ApiCall
from sandbox.fake_wechat.mailbox import Sent
from sandbox.fake_wechat.state import ApiError, FakeState

BEIJING = timedelta(hours=8)
MAX_SPAN = 31 * 86400  # the list's time range: at most a month
MAX_LIMIT, DEFAULT_LIMIT = 100, 50


def _local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC) + BEIJING  # naive Beijing wall time


def period(mode: str, ts: float) -> tuple[float, float, int]:
    """[start, end) of the period holding ``ts`` (epoch seconds) and its limit."""
    local = _local(ts)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if mode == "day":
        start, end, n = day, day + timedelta(days=1), 1
    elif mode == "week":
        start = day - timedelta(days=day.weekday())
        end, n = start + timedelta(days=7), 7
    else:
        start = day.replace(day=1)
        n = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=n)

    def epoch(d: datetime) -> float:
        return (d - BEIJING).replace(tzinfo=UTC).timestamp()

    return epoch(start), epoch(end), n


def admit(state: FakeState, corp_id: str, target: str, now: float) -> bool:
    """Whether ``target`` may receive one more group send now; counts it if so (under the
    state's lock)."""
    mode = state.config.wecom_budget.get(corp_id, "month")
    start, end, n = period(mode, now)
    stamps = state.mailbox.received.setdefault((corp_id, f"budget:{target}"), [])
    stamps[:] = [t for t in stamps if t >= now - 40 * 86400]  # a month and more, no more
    if sum(1 for t in stamps if start <= t < end) >= n:
        return False
    stamps.append(now)
    return True


def settle(state: FakeState, now: float) -> None:
    """Decide, in order of sending, the budget of every group-send target whose member has sent
    by ``now`` (group_tasks.task_state: a member's own delay, a confirmation through
    ``/_fake``, never once cancelled): 1, or 3 over the limit at the moment of sending. Called
    under the state's lock before any read of the statuses."""
    from sandbox.fake_wechat.group_tasks import task_state  # it reads statuses settled here

    box = state.mailbox
    due = []
    for sent in box.unsettled:
        for userid, target in sent.unsettled:
            status, at = task_state(state, sent, userid)
            if status == 2 and at <= now:
                due.append((at, sent.at, userid, target, sent))
            elif userid in sent.cancelled:
                due.append((None, sent.at, userid, target, sent))  # never sent: nothing used
    for at, _, userid, target, sent in sorted(due, key=lambda d: (d[0] or 0, d[1], d[2], d[3])):
        if at is not None:
            sent.tasks[userid][target] = 1 if admit(state, sent.owner, target, at) else 3
        sent.unsettled.discard((userid, target))
    if due:
        box.unsettled[:] = [s for s in box.unsettled if s.unsettled]


def get_groupmsg_list_v2(call: ApiCall) -> dict[str, Any]:
    body, state, world = call.body, call.state, call.world
    chat_type = body.get("chat_type") or "single"
    start, end = body.get("start_time"), body.get("end_time")
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type must be single or group")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ApiError(40058, "start_time and end_time are required")
    if end < start or end - start > MAX_SPAN:
        raise ApiError(40058, "the time range must not exceed one month")
    filter_type = body.get("filter_type", 2)
    if filter_type not in (0, 1, 2):
        raise ApiError(40058, "filter_type must be 0, 1 or 2")
    limit = body.get("limit") or DEFAULT_LIMIT
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ApiError(40058, f"limit: 1 to {MAX_LIMIT}")
    cursor = body.get("cursor") or "0"
    if not str(cursor).isdigit():
        raise ApiError(40058, "invalid cursor")
    offset = int(cursor)
    with state.lock:
        settle(state, state.now())
        found = [
            s for s in state.mailbox.sent
            if s.api == "wecom" and s.kind == chat_type and s.owner == world.corp_id
            and start <= s.at <= end and filter_type in (2, s.create_type)
            and body.get("creator") in (None, "", s.creator)
        ]  # fmt: skip
    page = found[offset : offset + limit]
    more = offset + limit < len(found)
    return {
        "next_cursor": str(offset + limit) if more else "",
        "group_msg_list": [_listed(s) for s in page],
    }


def _listed(s: Sent) -> dict[str, Any]:
    out = {"msgid": s.msgid, "creator": s.creator or "", "create_type": s.create_type,
           "create_time": str(int(s.at))}  # fmt: skip
    out.update({k: s.body[k] for k in ("text", "attachments") if k in s.body})
    return out


def admin_blueprint(state: FakeState) -> Blueprint:
    bp = Blueprint("fake_budget", __name__, url_prefix="/_fake")

    @bp.post("/groupmsg")
    def staff_send():
        """A member's own group send, as if made in the WeCom client: ``{"corpid", "sender",
        "chat_type": "single"|"group", "targets": [...], "text"}``; each target over its
        budget when it is confirmed (the fake's ``confirm_delay``) gets status 3."""
        data = request.get_json(force=True, silent=True) or {}
        world = state.worlds.get(data.get("corpid"))
        targets = data.get("targets")
        if world is None or data.get("sender") not in world.staff:
            return jsonify(error="give a known corpid and sender (a staff userid)"), 400
        if data.get("chat_type", "single") not in ("single", "group"):
            return jsonify(error="chat_type must be single or group"), 400
        if (
            not isinstance(targets, list)
            or not targets
            or not all(isinstance(t, str) and t for t in targets)
        ):
            return jsonify(error="targets: a non-empty list of external_userid or chat_id"), 400
        with state.lock:
            now, box = state.now(), state.mailbox
            sender = data["sender"]
            sent = box.add(
                Sent(box.next_id("msg"), "wecom", data.get("chat_type", "single"),
                     world.tenant_id, world.corp_id, now,
                     {"text": {"content": str(data.get("text") or "")}},
                     {sender: dict.fromkeys(targets, 1)}, creator=sender, create_type=1,
                     unsettled={(sender, t) for t in targets})
            )  # fmt: skip
            settle(state, now)
            tasks = dict(sent.tasks[sender])
        return jsonify(msgid=sent.msgid, tasks=tasks), 201

    return bp
