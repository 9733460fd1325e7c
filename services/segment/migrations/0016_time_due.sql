-- Time-driven evaluation (docs/architecture.md "Time-driven evaluation"): each derivation stores
-- the first instant time alone may change what it derived; the tick re-derives what is due.
-- Null: nothing is due (or the row predates this migration: `siyu segment recompute` once after
-- upgrading gives every contact its due time). Adding nullable columns rewrites nothing.
ALTER TABLE contacts ADD COLUMN due_at timestamptz;
ALTER TABLE accounts ADD COLUMN due_at timestamptz;
CREATE INDEX contacts_due ON contacts (tenant_id, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX accounts_due ON accounts (tenant_id, due_at) WHERE due_at IS NOT NULL;

-- What moved a stage: a touchpoint, time alone, a recompute, or staff (services/segment/derive.py
-- MOVED_BY). Null on transitions recorded before this migration.
ALTER TABLE stage_history ADD COLUMN moved_by text
    CHECK (moved_by IN ('event', 'time', 'recompute', 'staff'));
