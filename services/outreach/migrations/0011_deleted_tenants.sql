-- Tenants deleted through DELETE /api/v1/tenants/<id> (docs/security.md "Safe defaults"): remembered
-- so that a tenants file still listing one is reported at API start and the tenant is not seeded
-- back; the outreach worker purges the tenant's rows from this schema in batches and sets
-- purged_at. POST /api/v1/tenants with the same id (an explicit decision) forgets the deletion.
CREATE TABLE deleted_tenants (
    tenant_id  text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    deleted_by text        NOT NULL,
    purged_at  timestamptz
);
CREATE INDEX deleted_tenants_pending ON deleted_tenants (deleted_at) WHERE purged_at IS NULL;
