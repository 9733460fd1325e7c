"""The channel code pages' data (docs/console.md "Channel codes"): the form as typed, the body
the API's schemas take, and the API's refusals per form field. Saving itself is
services/outreach/channel_codes.py, as for the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.api.errors import ApiError

LISTS = ("staff", "chat_ids", "tags", "welcome_content")
MAX_ITEMS = 100


def split(text: str) -> list[str]:
    """A comma- (or 、-, or whitespace-) separated list as typed, without empties."""
    for sep in ("、", "，", "\n", " "):
        text = text.replace(sep, ",")
    return [v.strip() for v in text.split(",") if v.strip()][:MAX_ITEMS]


def form_of(code: dict[str, Any] | None) -> dict[str, str]:
    """A stored code (or nothing) as the form shows it."""
    code = code or {}
    form = {k: str(code.get(k) or "") for k in ("code_id", "kind", "name", "channel")}
    form["kind"] = form["kind"] or "contact"
    form["daily_cap"] = str(code.get("daily_cap") or "")
    for key in LISTS:
        form[key] = ", ".join(code.get(key) or [])
    form["skip_verify"] = "1" if code.get("skip_verify", True) else ""
    form["updated_at"] = code["updated_at"].isoformat() if code.get("updated_at") else ""
    return form


def read_form(posted) -> dict[str, str]:
    form = {k: (posted.get(k) or "").strip()[:2000] for k in
            ("code_id", "kind", "name", "channel", "daily_cap", *LISTS)}  # fmt: skip
    form["skip_verify"] = "1" if posted.get("skip_verify") else ""
    form["updated_at"] = (posted.get("updated_at") or "").strip()[:64]
    return form


def version_of(form: dict[str, str]) -> datetime | None:
    """The code's ``updated_at`` the form was made from (None: not given or not a time)."""
    try:
        return datetime.fromisoformat(form.get("updated_at") or "")
    except ValueError:
        return None


def body_of(form: dict[str, str], *, editing: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body of the form, and the fields wrong before any schema (a cap not a number)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {k: split(form[k]) for k in LISTS}
    body["name"] = form["name"]
    body["skip_verify"] = bool(form["skip_verify"])
    cap = form["daily_cap"]
    if cap and not cap.isdigit():
        errors["daily_cap"] = "number"
    body["daily_cap"] = int(cap) if cap.isdigit() else None
    if not editing:
        body.update(code_id=form["code_id"], kind=form["kind"], channel=form["channel"])
    return body, errors


def field_of(path: str) -> str:
    """The form field of an error path: ``staff[1]`` -> ``staff``."""
    return path.split("[", 1)[0].split(".", 1)[0]


def api_errors(exc: ApiError) -> dict[str, list[str]]:
    """The API's 400/409 per form field (``form`` for what is about the whole code)."""
    if exc.code == "conflict" and "exists" in exc.message:
        return {"code_id": [exc.message]}
    found: dict[str, list[str]] = {}
    for path, messages in (exc.details or {}).items():
        if path in ("valid", "errcode", "errmsg") or not isinstance(messages, list):
            continue
        found.setdefault(field_of(path), []).extend(str(m) for m in messages)
    return found or {"form": [exc.message]}
