"""The admin API toolkit every service's ``/api/v1`` blueprints use.

    from shared.api import Blueprint, TENANT, connection, require, tenant_id, principal, audit

    blp = Blueprint("segments", __name__, description="Segments")

    @blp.route("/segments", methods=["POST"])
    @require("operator", scope=TENANT)
    @blp.arguments(SegmentIn)
    @blp.response(201, SegmentOut)
    def create_segment(body):
        with connection() as conn:  # one transaction
            row = store.create(conn, tenant_id(), body)
            audit(conn, principal(), tenant_id(), "segment.create", row["id"], body)
        return row

Errors: raise ``ApiError(status, code, message, details)`` (or ``invalid``, ``forbidden``,
``not_found``, ``conflict``...); lists: ``PageArgs``, ``cursor_key``, ``page``, ``paged``.
"""

from shared.api.app import API_PREFIX, Api, Blueprint, create_api_app
from shared.api.audit import audit
from shared.api.auth import (
    ANY,
    PLATFORM,
    TENANT,
    TENANT_OR_ALL,
    principal,
    public,
    require,
    tenant_id,
)
from shared.api.context import ApiContext, connection, context
from shared.api.errors import (
    ApiError,
    ErrorSchema,
    conflict,
    forbidden,
    invalid,
    not_found,
    unauthenticated,
    unavailable,
    unknown_tenant,
)
from shared.api.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PageArgs,
    cursor_key,
    decode_cursor,
    encode_cursor,
    page,
    paged,
)
from shared.api.tokens import TokenStore
from shared.tokens import TOKEN_ROLES, Principal, role_rank

__all__ = [
    "ANY",
    "API_PREFIX",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PLATFORM",
    "TENANT",
    "TENANT_OR_ALL",
    "TOKEN_ROLES",
    "Api",
    "ApiContext",
    "ApiError",
    "Blueprint",
    "ErrorSchema",
    "PageArgs",
    "Principal",
    "TokenStore",
    "audit",
    "conflict",
    "connection",
    "context",
    "create_api_app",
    "cursor_key",
    "decode_cursor",
    "encode_cursor",
    "forbidden",
    "invalid",
    "not_found",
    "page",
    "paged",
    "principal",
    "public",
    "require",
    "role_rank",
    "tenant_id",
    "unauthenticated",
    "unavailable",
    "unknown_tenant",
]
