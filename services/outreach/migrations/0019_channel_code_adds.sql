-- Channel codes' daily cap per staff member (docs/domain.md "Channel codes"): adds per code,
-- staff member and tenant-local day (services/outreach/channel_codes.py record_add). A member
-- who reached the code's daily_cap is left out of the code's WeCom config for the rest of the
-- day; ``config_users`` is what the WeCom config holds now (NULL: all of ``staff``), so the
-- worker's periodic step knows what to change and the console can show it.
CREATE TABLE channel_code_adds (
    tenant_id     text    NOT NULL,
    code_id       text    NOT NULL,
    staff_userid  text    NOT NULL,
    day           date    NOT NULL,     -- in the tenant's time zone
    adds          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, code_id, day, staff_userid)
);
ALTER TABLE channel_codes
    ADD COLUMN skip_verify  boolean NOT NULL DEFAULT true,
    ADD COLUMN config_users text[],
    ADD COLUMN cap_status   text NOT NULL DEFAULT 'ok' CHECK (cap_status IN ('ok', 'all_capped'));
CREATE INDEX channel_codes_capped ON channel_codes (tenant_id)
    WHERE status = 'active' AND daily_cap IS NOT NULL;
-- A code is inserted ``pending`` (config_id NULL) and committed before WeCom is called, then
-- filled in and made active: a create killed half-way leaves a row the leader settles
-- (services/outreach/channel_codes.py settle_pending). ``config_missing_at``: when WeCom answered
-- that it no longer knows the code's config (deleted there, or a delete whose commit failed);
-- the cap step skips such codes.
ALTER TABLE channel_codes
    DROP CONSTRAINT channel_codes_status_check,
    ADD CONSTRAINT channel_codes_status_check CHECK (status IN ('pending', 'active', 'deleted')),
    ADD COLUMN config_missing_at timestamptz;
CREATE INDEX channel_codes_pending ON channel_codes (created_at) WHERE status = 'pending';
