"""The stage titles of the tenant's lifecycle model, for labelling a custom model's stages as
the model names them (docs/console.md "Languages"): a built-in stage has its translated label
(console/labels.py STAGES); any other stage is shown with its model's ``title``.

Read once per request, through the same ``model_for`` derive uses (the tenant's custom model,
cached per version), so every page that shows a stage agrees without each passing titles along.
"""

from __future__ import annotations

from flask import g, has_request_context

from services.segment import store
from services.segment.api_common import current_tenant, segment_connection
from services.segment.lifecycle.grammar import builtin_models
from services.segment.tenant_model import model_for


def _load(tenant) -> dict[str, str]:
    if tenant.lifecycle_model in builtin_models(tenant.mode):
        return {}  # every built-in stage has its translated label
    with segment_connection() as conn:
        model = model_for(tenant, conn)
        row = store.custom_model(conn, tenant.id, model.name)
    titles = {s.name: s.title for s in model.stages if s.title}
    for side in ((row or {}).get("document") or {}).get("side_stages") or ():
        if isinstance(side, dict) and side.get("title"):
            titles[side["name"]] = side["title"]
    return titles


def titles() -> dict[str, str]:
    """{stage name: title} of the request tenant's model; {} outside a tenant's request."""
    if not has_request_context() or g.get("console_tenant") is None:
        return {}
    if "console_stage_titles" not in g:
        g.console_stage_titles = _load(current_tenant())
    return g.console_stage_titles
