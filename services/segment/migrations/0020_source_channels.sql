-- Source channels (docs/domain.md "Channel codes"): the first and latest channel a contact and an
-- account came through, derived from channel code states on their events
-- (services/segment/sources.py). The funnel's source_channel cut reads contacts' and accounts'
-- first_channel (services/segment/api_funnel.py scopes).
ALTER TABLE contacts
    ADD COLUMN IF NOT EXISTS first_channel text, ADD COLUMN IF NOT EXISTS first_channel_at timestamptz,
    ADD COLUMN IF NOT EXISTS latest_channel text, ADD COLUMN IF NOT EXISTS latest_channel_at timestamptz;
ALTER TABLE accounts
    ADD COLUMN IF NOT EXISTS first_channel text, ADD COLUMN IF NOT EXISTS first_channel_at timestamptz,
    ADD COLUMN IF NOT EXISTS latest_channel text, ADD COLUMN IF NOT EXISTS latest_channel_at timestamptz;
CREATE INDEX IF NOT EXISTS contacts_first_channel ON contacts (tenant_id, first_channel)
    WHERE first_channel IS NOT NULL;
CREATE INDEX IF NOT EXISTS accounts_first_channel ON accounts (tenant_id, first_channel)
    WHERE first_channel IS NOT NULL;
