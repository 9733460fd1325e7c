"""Console routes of group tasks (docs/console.md "Group tasks"): the "pending tasks" page and
an admin linking a user to their WeCom userid (from the users page)."""

from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from console import group_tasks
from console.views import console, require, who
from console.views_settings import _users_page
from services.outreach.api_group_tasks import GroupTaskArgs
from shared.api.context import connection
from shared.api.errors import ApiError
from shared.wechat import WeComError


def _tenant() -> str:
    return g.console_user["tenant_id"]


@console.route("/group-tasks")
@require("viewer")
def group_task_list():
    mine = g.console_user.get("wecom_userid")
    form = {"staff": request.args.get("staff", "")[:100].strip(),
            "status": request.args.get("status", "pending")[:20]}  # fmt: skip
    raw = {k: v for k, v in {**form, "cursor": request.args.get("cursor")}.items() if v}
    errors = GroupTaskArgs().validate(raw)
    status = 200
    with connection() as conn:
        try:
            if errors:
                raise ApiError(400, "invalid_request", _("Choose a status from the list."))
            data = group_tasks.page(conn, _tenant(), GroupTaskArgs().load(raw), mine)
        except ApiError as exc:
            if exc.status != 400:
                raise
            status = 400
            data = group_tasks.page(conn, _tenant(), {"status": "pending"}, mine)
            errors = {"staff": str(exc)}
    return render_template("group_tasks.html", form=form, mine=mine, errors=errors,
                           **data), status  # fmt: skip


@console.route("/users/<login>/wecom", methods=["POST"])
@require("admin")
def user_wecom(login: str):
    userid = request.form.get("wecom_userid", "").strip()[:64] or None
    if userid is not None:
        try:
            valid = group_tasks.follow_users(_tenant())
        except WeComError:
            valid = None
        if valid is None:
            return _users_page(errors={"form": _("WeCom cannot be reached for this tenant: try "
                                                 "again later.")}, status=400)  # fmt: skip
        if userid not in valid:
            message = _("%(userid)s is not a WeCom member with customer contact. Valid: "
                        "%(valid)s.", userid=userid, valid=", ".join(valid) or "—")  # fmt: skip
            return _users_page(errors={"form": message}, form={"wecom_userid": userid},
                               status=400)  # fmt: skip
    with connection() as conn:
        row = group_tasks.link_userid(conn, who(), _tenant(), login[:100], userid)
    if row is None:
        abort(404)
    return redirect(url_for("console.users", done="wecom"))
