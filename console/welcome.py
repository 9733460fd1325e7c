"""The welcome pages' data (docs/console.md "Welcomes"): recent welcomes on add with their
labels, and the group welcome template form read into the API's body (services/outreach/
group_welcome.py does the work, as for the admin API)."""

from __future__ import annotations

from typing import Any

from console import labels

FORM_FIELDS = ("name", "text", "link_title", "link_url", "link_desc")
LIMITS = {"name": 40, "text": 3000, "link_title": 128, "link_url": 2048, "link_desc": 512}


def shown_welcomes(rows: list[dict]) -> list[dict]:
    return [
        {**r, "status_label": labels.welcome_status(r["status"]),
         "latency_s": None if r["latency_ms"] is None else r["latency_ms"] / 1000}
        for r in rows
    ]  # fmt: skip


def read_form(form) -> dict[str, Any]:
    """The posted fields, cut to a sane length, as typed (shown again on an error)."""
    read = {k: (form.get(k) or "")[: LIMITS[k] * 4] for k in FORM_FIELDS}
    read["notify"] = form.get("notify") == "1"
    return read


def kept_attachment(template: dict | None) -> dict | None:
    """An attachment the form cannot edit (image, miniprogram, file, video: made through the
    API): carried unchanged by an edit, shown read-only."""
    attachment = (template or {}).get("attachment")
    return attachment if attachment and attachment.get("msgtype") != "link" else None


def form_of(template: dict | None) -> dict[str, Any]:
    if template is None:
        return {**dict.fromkeys(FORM_FIELDS, ""), "notify": True}
    link = ((template.get("attachment") or {}).get("link")) or {}
    return {"name": template["name"], "text": template.get("text") or "",
            "link_title": link.get("title", ""), "link_url": link.get("url", ""),
            "link_desc": link.get("desc", ""), "notify": template["notify"]}  # fmt: skip


def body_of(form: dict[str, Any], template: dict | None = None) -> dict[str, Any]:
    """The API's body (TemplateSchema) of the form: a link attachment when a link is given, the
    template's other attachment unchanged when it has one."""
    body: dict[str, Any] = {"name": form["name"].strip(), "text": form["text"].strip() or None,
                            "notify": form["notify"]}  # fmt: skip
    if (kept := kept_attachment(template)) is not None:
        body["attachment"] = kept
    elif form["link_title"].strip() or form["link_url"].strip():
        link = {"title": form["link_title"].strip(), "url": form["link_url"].strip()}
        if form["link_desc"].strip():
            link["desc"] = form["link_desc"].strip()
        body["attachment"] = {"msgtype": "link", "link": link}
    return body


def field_of(path: str) -> str:
    """The form field a schema error path belongs to."""
    if path.startswith("attachment.link."):
        return "link_" + path.rsplit(".", 1)[-1].replace("picurl", "url")
    if path.startswith("attachment"):
        return "link_url"
    return path if path in FORM_FIELDS else "text"
