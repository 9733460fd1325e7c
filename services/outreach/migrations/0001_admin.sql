-- The admin API's own tables (siyu api serve, /api/v1): tenants managed through the API, bearer
-- tokens of ops staff, and the audit log of every mutation.

-- Tenants as the admin API manages them. Seeded from the tenants YAML at API startup
-- (INSERT .. ON CONFLICT DO NOTHING): the YAML keeps channel secrets, this table what ops edit.
CREATE TABLE tenants (
    tenant_id       text PRIMARY KEY,
    name            text        NOT NULL,
    mode            text        NOT NULL CHECK (mode IN ('b2b', 'b2c')),
    lifecycle_model text        NOT NULL,
    timezone        text        NOT NULL DEFAULT 'Asia/Shanghai',
    settings        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens (`siyu token create`, POST /api/v1/tokens). Only the SHA-256 of a token is stored;
-- the token is shown once. token_id (tok_...) is the public handle used to list and revoke.
-- tenant_id NULL: a platform token (all tenants, `?tenant=ID` on tenant routes).
CREATE TABLE api_tokens (
    token_id     text PRIMARY KEY,
    token_hash   text        NOT NULL UNIQUE,
    tenant_id    text,
    role         text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at DESC, token_id DESC);

-- Who did what, when, in which tenant. actor is the token id (or "cli"); actor_name its name.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  text,
    actor      text        NOT NULL,
    actor_name text,
    action     text        NOT NULL,
    target     text,
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, id DESC);
