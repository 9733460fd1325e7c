"""What the content pages show and how their form maps to the API's body (docs/console.md
"Content library"): the list, the coverage matrix (stage x buying role), the form of an item
(fields <-> the body POST/PATCH /api/v1/content take) and an account's recommended next content.

Everything here is pure but ``library_page``, which reads through outreach's own functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from console import labels
from console.pages import stage_title
from services.outreach.api_content import content_rows
from services.outreach.library import ANY_ROLE, coverage_counts, items_at_stage
from services.outreach.model import CHANNEL_PAYLOAD, FORMATS
from shared.api.app import MAX_JSON_DEPTH
from shared.text import contains_nul, json_depth
from shared.vocabulary import BUYING_ROLES

LIST_PAGE = 50
PAYLOAD_KEYS = ("wecom", "oa_template", "oa_mass", "oa_custom")
JSON_PAYLOADS = ("oa_template", "oa_mass", "oa_custom")  # edited as JSON text
MAX_JSON = 20_000  # characters of one payload's JSON text
WECOM_LINK = ("title", "url", "desc")
RECOMMENDED = 6
_TAGS = re.compile(r"[,，、;；\n]+")


# --- the list and the matrix ---------------------------------------------------------------------


def channels_of(payloads: Mapping) -> list[str]:
    """The channels an item can go out on: those whose payload it has."""
    return [c for c, key in CHANNEL_PAYLOAD.items() if key in payloads]


def shown(row: dict) -> dict:
    """A content row labelled for display."""
    return {
        **row,
        "format_label": labels.content_format(row["format"]),
        "stage_labels": [stage_title(s) for s in row["stages"]],
        "role_labels": [labels.buying_role(r) for r in row["roles"]],
        "channel_labels": [labels.channel(c) for c in channels_of(row["payloads"])],
    }


def payload_texts(item: Mapping) -> list[tuple[str, str]]:
    """An item's payloads as readable JSON, in the channels' order."""
    payloads = item.get("payloads") or {}
    return [(k, json.dumps(payloads[k], ensure_ascii=False, indent=2))
            for k in PAYLOAD_KEYS if k in payloads]  # fmt: skip


def matrix(stages: Iterable[str], counts: Mapping, *, b2b: bool) -> dict:
    """The coverage matrix: a row per stage, a cell per buying role and one for items that name
    no role (B2B), or one cell per stage counting its items (B2C: no buying roles). A role cell
    with no item is a gap; so is a B2C stage with none."""
    columns = [*BUYING_ROLES, None] if b2b else [ANY_ROLE]
    rows = []
    for stage in stages:
        cells = []
        for role in columns:
            n = counts.get((stage, role), 0)
            cells.append({"role": role, "count": n, "gap": n == 0 and role is not None})
        rows.append({"stage": stage, "label": stage_title(stage), "cells": cells})
    heads = [
        {"role": r, "label": labels.buying_role(r) if r in BUYING_ROLES else None} for r in columns
    ]
    gaps = sum(c["gap"] for r in rows for c in r["cells"])
    return {
        "columns": heads,
        "rows": rows,
        "gaps": gaps,
        "stageless": counts.get((None, ANY_ROLE), 0),
    }


def cursor(text: str) -> tuple[str, str] | None:
    """The library's ``?after=`` (``<created_at ISO>|<content id>``, library_page's "next"); a
    cursor that is not one (edited by hand) is ignored: the first page."""
    at, bar, content_id = text.partition("|")
    if not bar or not content_id:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    # Written again as PostgreSQL reads it: fromisoformat takes forms ::timestamptz does not.
    return (moment.isoformat(), content_id) if moment.tzinfo is not None else None


def library_page(conn, tenant, stages, filters: dict, after) -> dict:
    """One page of the tenant's items (``filters`` checked already) and the coverage matrix."""
    rows = content_rows(conn, tenant.id, {**filters, "after": after, "limit": LIST_PAGE})
    more = len(rows) > LIST_PAGE
    rows = rows[:LIST_PAGE]
    cursor = None
    if more and rows:
        cursor = f"{rows[-1]['created_at'].isoformat()}|{rows[-1]['content_id']}"
    counts = coverage_counts(conn, tenant.id)
    return {
        "rows": [shown(r) for r in rows],
        "next": cursor,
        "matrix": matrix(stages or (), counts, b2b=tenant.mode == "b2b"),
        "total": sum(n for (stage, role), n in counts.items() if role == ANY_ROLE),
    }


def filter_errors(args: Mapping, stages) -> dict:
    """Unknown names among the list's filters, each with the valid values listed."""
    errors = {}
    if args.get("stage") and stages is not None and args["stage"] not in stages:
        errors["stage"] = stages
    if args.get("role") and args["role"] not in BUYING_ROLES:
        errors["role"] = BUYING_ROLES
    if args.get("format") and args["format"] not in FORMATS:
        errors["format"] = FORMATS
    return errors


# --- the form ------------------------------------------------------------------------------------


def tags(text: str) -> list[str]:
    """Topic or industry tags typed as one line: split on commas (either width), 、 and ;."""
    seen: list[str] = []
    for tag in _TAGS.split(text or ""):
        tag = tag.strip()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def _simple_wecom(payload: Mapping | None) -> bool:
    """A WeCom payload the plain fields can show whole: text and at most one link."""
    if payload is None:
        return True
    attachments = payload.get("attachments") or []
    if set(payload) - {"text", "attachments"} or len(attachments) > 1:
        return False
    return all(
        a.get("msgtype") == "link" and set(a) == {"msgtype", "link"}
        and set(a["link"]) <= set(WECOM_LINK)
        for a in attachments
    )  # fmt: skip


def form_of(item: Mapping) -> dict:
    """The form's fields for a stored item (what the edit page starts from)."""
    payloads = item.get("payloads") or {}
    form = {
        "title": item.get("title", ""),
        "format": item.get("format", ""),
        "stages": list(item.get("stages") or []),
        "roles": list(item.get("roles") or []),
        "topics": "、".join(item.get("topics") or []),
        "industries": "、".join(item.get("industries") or []),
        "promotional": bool(item.get("promotional")),
    }
    wecom = payloads.get("wecom")
    if _simple_wecom(wecom):
        wecom = wecom or {}
        link = ((wecom.get("attachments") or [{}])[0]).get("link") or {}
        form["wecom_text"] = wecom.get("text", "")
        form.update({f"wecom_link_{k}": link.get(k, "") for k in WECOM_LINK})
        form["payload_wecom"] = ""
    else:
        form["payload_wecom"] = json.dumps(wecom, ensure_ascii=False, indent=2)
    for key in JSON_PAYLOADS:
        found = payloads.get(key)
        form[f"payload_{key}"] = "" if found is None else json.dumps(found, ensure_ascii=False,
                                                                     indent=2)  # fmt: skip
    return form


def read_form(values: Mapping, lists: Mapping) -> dict:
    """The form's fields from a request (``values``: one value per name; ``lists``: the
    checkbox groups), trimmed; what it shows again after an error."""
    form = {k: (values.get(k) or "").strip() for k in ("title", "format", "topics", "industries")}
    form["stages"] = [s.strip() for s in lists.get("stages", []) if s.strip()]
    form["roles"] = [r.strip() for r in lists.get("roles", []) if r.strip()]
    form["promotional"] = values.get("promotional") == "1"
    form["wecom_text"] = (values.get("wecom_text") or "").strip()
    for k in WECOM_LINK:
        form[f"wecom_link_{k}"] = (values.get(f"wecom_link_{k}") or "").strip()
    for key in PAYLOAD_KEYS:
        form[f"payload_{key}"] = (values.get(f"payload_{key}") or "").strip()
    return form


def body_of(form: Mapping) -> tuple[dict, dict]:
    """The API body the form describes and the errors of what is not even a body (JSON that
    does not parse, too long, or WeCom given twice); error values are ``(code, detail)``."""
    errors: dict = {}
    payloads: dict = {}
    for key in PAYLOAD_KEYS:
        text = form.get(f"payload_{key}", "")
        if not text:
            continue
        if len(text) > MAX_JSON:
            errors[f"payloads.{key}"] = ("too_long", MAX_JSON)
            continue
        try:
            payloads[key] = json.loads(text)
        except ValueError as exc:
            errors[f"payloads.{key}"] = ("json", f"{exc.msg} (line {exc.lineno})")
        except RecursionError:  # "[[[[..." deeper than the decoder recurses
            errors[f"payloads.{key}"] = ("json_deep", None)
        else:
            if json_depth(payloads[key]) > MAX_JSON_DEPTH or contains_nul(payloads[key]):
                del payloads[key]  # as the API refuses them (shared/api/app.py): never stored
                errors[f"payloads.{key}"] = ("json_deep_or_nul", None)
    link = {k: form.get(f"wecom_link_{k}", "") for k in WECOM_LINK}
    plain = form.get("wecom_text") or any(link.values())
    if plain and form.get("payload_wecom"):
        errors["payloads.wecom"] = ("twice", None)
    elif plain:
        wecom: dict = {}
        if form.get("wecom_text"):
            wecom["text"] = form["wecom_text"]
        if any(link.values()):
            wecom["attachments"] = [{"msgtype": "link",
                                     "link": {k: v for k, v in link.items() if v}}]  # fmt: skip
        payloads["wecom"] = wecom
    body = {
        "title": form.get("title", ""),
        "format": form.get("format", ""),
        "promotional": True if form.get("promotional") else None,
        "stages": list(form.get("stages") or []),
        "roles": list(form.get("roles") or []),
        "topics": tags(form.get("topics", "")),
        "industries": tags(form.get("industries", "")),
        "payloads": payloads,
    }
    return body, errors


def flatten(messages, path: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error messages as ``{"payloads.wecom.text": [...]}`` (list indexes
    as ``[i]``)."""
    if isinstance(messages, list):
        return {path: [str(m) for m in messages]}
    if isinstance(messages, str):
        return {path: [messages]}
    out: dict[str, list[str]] = {}
    for key, value in messages.items():
        if isinstance(key, int):
            sub = f"{path}[{key}]"
        elif key == "_schema":
            sub = path
        else:
            sub = f"{path}.{key}" if path else str(key)
        for k, v in flatten(value, sub).items():
            out.setdefault(k, []).extend(v)
    return out


def field_of(path: str) -> str:
    """The form's field an error path belongs to: ``stages[0]`` -> stages, ``payloads.wecom.text``
    -> payloads.wecom."""
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    if head == "payloads":
        parts = path.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else "payloads"
    return head or "form"


# --- an account's next content -------------------------------------------------------------------


def recommend(items: Iterable[Mapping], missing: Iterable[str], limit: int = RECOMMENDED) -> list:
    """The items (of the account's stage, newest first) for its missing buying roles, those
    serving more of them first; when none serves a missing role, the general ones (tagged with no
    role: they fit every role). Each comes with the missing roles it serves."""
    items, wanted = list(items), list(missing)
    picked = []
    for item in items:
        serves = [r for r in wanted if r in (item.get("roles") or ())]
        if serves:
            picked.append({**item, "serves": serves})
    picked.sort(key=lambda i: -len(i["serves"]))  # stable: newest first among equals
    if not picked:
        picked = [{**i, "serves": []} for i in items if not i.get("roles")]
    return picked[:limit]


def account_next(conn, tenant_id: str, account: Mapping) -> list[dict]:
    """An account page's recommended next content (``account``: people.account's): the
    library's items at its stage for the roles its grid shows missing, labelled."""
    if not account.get("stage"):
        return []
    missing = [row["role"] for row in account["grid"] if not row["engaged"]]
    picked = recommend(items_at_stage(conn, tenant_id, account["stage"]), missing)
    return [
        {
            **item,
            "format_label": labels.content_format(item["format"]),
            "serves_labels": [labels.buying_role(r) for r in item["serves"]],
        }
        for item in picked
    ]
