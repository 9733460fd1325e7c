-- Staff users of the web console (console/, `siyu user create`; docs/console.md): they log in with
-- a password instead of a bearer token, with the same roles as tokens. password_hash is
-- "scrypt$n$r$p$salt$hash" (console/passwords.py); failed_attempts and locked_until are the
-- lockout (docs/console.md "Lockout"); a session older than password_changed_at is ended.
CREATE TABLE console_users (
    user_id             bigserial PRIMARY KEY,
    tenant_id           text        NOT NULL,
    login               text        NOT NULL,
    role                text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash       text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    failed_attempts     integer     NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, login)
);
