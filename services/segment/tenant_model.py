"""The lifecycle model a tenant is evaluated with: a built-in for its mode, or its custom model.

Derivation, the catalogue and the API all ask for it; compiled custom models are cached here.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from psycopg import Connection

from services.segment import store
from services.segment.lifecycle.grammar import ModelError, builtin_models, load_model
from services.segment.lifecycle.model import LifecycleModel
from shared.tenants import Tenant
from shared.vocabulary import DEFAULT_MODEL

# Compiled custom models by (tenant, name, updated_at): an edit through the API changes
# updated_at, so a stale entry is never used; the bound keeps a long-lived consumer small.
_CUSTOM_MODELS: dict[tuple[str, str, datetime], LifecycleModel] = {}
_CUSTOM_MODELS_MAX = 256


def model_for(tenant: Tenant, conn: Connection | None = None) -> LifecycleModel:
    """The tenant's lifecycle model: a built-in for its mode, or the custom model its
    ``lifecycle_model`` names (table lifecycle_models, read through ``conn``). Without ``conn``,
    or when the custom model is missing or no longer valid, the mode's default stands in."""
    models = builtin_models(tenant.mode)
    default = models[DEFAULT_MODEL[tenant.mode]]
    name = tenant.lifecycle_model
    if name in models:
        return models[name]
    if conn is None:
        return default
    row = store.custom_model(conn, tenant.id, name)
    if row is None:
        return default
    key = (tenant.id, name, row["updated_at"])
    model = _CUSTOM_MODELS.get(key)
    if model is None:
        try:
            model = load_model(row["document"])
        except ModelError as exc:  # stored valid; the grammar may have changed since
            structlog.get_logger("siyu.segment").warning(
                "custom_model_invalid", tenant_id=tenant.id, model=name, error=exc.message
            )
            return default
        if len(_CUSTOM_MODELS) >= _CUSTOM_MODELS_MAX:
            _CUSTOM_MODELS.clear()
        _CUSTOM_MODELS[key] = model
    return model
