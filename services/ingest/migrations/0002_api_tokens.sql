-- Bearer tokens of the business-event API (POST /api/v1/events), one tenant each.
-- Only the SHA-256 of a token is stored; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    token_hash   text PRIMARY KEY,
    tenant_id    text        NOT NULL,
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
