-- Lost customers (docs/domain.md "Lost customers"): the loss in force on a contact, derived from
-- its events (services/segment/lost.py); NULL when not lost. The console's overview lists the
-- tenant's recent losses: the partial index keeps that read to the lost contacts.
ALTER TABLE contacts ADD COLUMN lost jsonb;
CREATE INDEX contacts_lost ON contacts (tenant_id) WHERE lost IS NOT NULL;
