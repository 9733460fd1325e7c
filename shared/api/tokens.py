"""The admin API's token store: shared/tokens.py's store of admin tokens (``siyu_adm_...``), its
refusals turned into the API's errors. Its own module so that both the request context and the
request authentication (shared/api/auth.py) import it, and neither imports the other for it."""

from __future__ import annotations

from datetime import datetime

from psycopg_pool import ConnectionPool

from shared import tokens
from shared.api.errors import ApiError, unavailable
from shared.tokens import (
    ADMIN_TOKENS,
    DEFAULT_CACHE_TTL_S,
    Principal,
    TokenExpired,
    TokenStoreUnavailable,
)


def token_expired(expires_at: datetime) -> ApiError:
    return ApiError(401, "token_expired", f"token expired at {expires_at.isoformat()}")


class TokenStore(tokens.TokenStore):
    """Principal of an admin token, from ``api_tokens`` (on ``pool``'s search_path), read per
    request; ``ttl_s`` (0..60 s) only spaces out the ``last_used_at`` writes."""

    def __init__(
        self, pool: ConnectionPool, *, ttl_s: float = DEFAULT_CACHE_TTL_S, max_entries=10_000
    ):
        super().__init__(pool, ADMIN_TOKENS, ttl_s=ttl_s, max_entries=max_entries)

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal; None if unknown or revoked; 401 ``token_expired`` if expired,
        503 if the database cannot be reached."""
        try:
            return super().authenticate(token)
        except TokenStoreUnavailable:
            raise unavailable("token store unavailable; retry later") from None
        except TokenExpired as exc:
            raise token_expired(exc.expires_at) from None
