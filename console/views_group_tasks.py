"""Console routes of group tasks (docs/console.md "Group tasks"): the "pending tasks" page and
an admin linking a user to their WeCom userid (from the users page)."""

from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from console import group_tasks
from console.views import console, require, who
from console.views_settings import _users_page
from services.outreach.api_group_tasks import GroupTaskArgs
from services.outreach.group_tasks import staff_ids
from shared.api.context import connection
from shared.api.errors import ApiError
from shared.wechat import WeComError

FIELDS = ("staff", "status", "cursor")  # shown next to their input; any other as the form's


def _tenant() -> str:
    return g.console_user["tenant_id"]


@console.route("/group-tasks")
@require("viewer")
def group_task_list():
    mine = g.console_user.get("wecom_userid")
    # No status asked for: the pending ones; an empty status (the "all" option): every one.
    form = {"staff": request.args.get("staff", "")[:100].strip(),
            "status": request.args.get("status", "pending")[:20]}  # fmt: skip
    raw = {k: v for k, v in {**form, "cursor": request.args.get("cursor")}.items() if v}
    errors: dict = {}
    with connection() as conn:
        staff = staff_ids(conn, _tenant())
        for field, messages in GroupTaskArgs().validate(raw).items():
            errors[field if field in FIELDS else "form"] = {
                "status": _("Choose a status from the list."),
                "cursor": _("This page link is out of date: start again from the first page."),
            }.get(field) or f"{field}: {' '.join(map(str, messages))}"  # the schema's own words
        if form["staff"] and form["staff"] not in staff:
            errors["staff"] = _("Unknown staff member %(name)s. Valid: %(valid)s.",
                                name=form["staff"], valid=", ".join(staff) or "—")  # fmt: skip
        try:
            data = group_tasks.page(conn, _tenant(),
                                    {"status": "pending"} if errors else GroupTaskArgs().load(raw),
                                    mine)  # fmt: skip
        except ApiError as exc:  # a mangled cursor
            if exc.status != 400:
                raise
            errors["cursor"] = _("This page link is out of date: start again from the first page.")
            data = group_tasks.page(conn, _tenant(), {"status": "pending"}, mine)
    return render_template("group_tasks.html", form=form, mine=mine, errors=errors,
                           **data), 400 if errors else 200  # fmt: skip


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
        taken = group_tasks.linked_to(conn, _tenant(), userid, login[:100])
        row = None if taken else group_tasks.link_userid(conn, who(), _tenant(), login[:100],
                                                         userid)  # fmt: skip
    if taken:  # the unique index would refuse it too (two users cannot link one member)
        message = _("%(userid)s is linked to the user %(login)s already.", userid=userid,
                    login=taken)  # fmt: skip
        return _users_page(errors={"form": message}, form={"wecom_userid": userid},
                           status=400)  # fmt: skip
    if row is None:
        abort(404)
    return redirect(url_for("console.users", done="wecom"))
