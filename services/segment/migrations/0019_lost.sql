-- Lost customers (docs/domain.md "Lost customers"): the loss in force on a contact, derived from
-- its events (services/segment/lost.py); NULL when not lost. ``lost_at`` is the loss's time as a
-- column, so the console's overview reads the tenant's newest losses from the index, in order.
-- Upgrading a populated database: the deploy guide's upgrade note pre-builds the index
-- CONCURRENTLY (IF NOT EXISTS then skips it here, so contacts are not locked while it builds).
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS lost jsonb, ADD COLUMN IF NOT EXISTS lost_at timestamptz;
CREATE INDEX IF NOT EXISTS contacts_lost ON contacts (tenant_id, lost_at DESC)
    WHERE lost_at IS NOT NULL;
