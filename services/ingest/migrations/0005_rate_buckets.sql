-- Per-tenant request rate limits of the business events API and tracked links
-- (shared/ratelimit.py, docs/security.md "Rate limits"): one token bucket per tenant and
-- surface, shared by every ingest worker and replica.
CREATE TABLE rate_buckets (
    bucket     text PRIMARY KEY,            -- '<surface>:<tenant_id>', e.g. 'events:acme'
    tokens     double precision NOT NULL,   -- never below 0: a take that does not fit is refused
    updated_at timestamptz NOT NULL         -- the database's clock: every replica shares it
);
