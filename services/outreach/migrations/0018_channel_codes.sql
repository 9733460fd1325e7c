-- Channel codes (渠道活码, docs/domain.md "Channel codes"): WeCom "contact me" configs
-- (externalcontact/add_contact_way) and customer-group join codes (groupchat/add_join_way) that
-- Siyu created. WeCom's admin cannot see or edit API-created configs, so config_id is kept: without
-- it a code can never be changed or deleted. The state (shared/source_channels.py) is
-- "<channel>.<random>", unique per tenant, and comes back in the add callback.
CREATE TABLE channel_codes (
    tenant_id          text        NOT NULL,
    code_id            text        NOT NULL,              -- Siyu's slug, chosen by ops staff
    kind               text        NOT NULL CHECK (kind IN ('contact', 'group')),
    name               text        NOT NULL,
    channel            text        NOT NULL,              -- one of SOURCE_CHANNELS
    state              text        NOT NULL,
    config_id          text,                              -- WeCom's id (NULL until created there)
    qr_code            text,                              -- the QR code image URL WeCom returns
    staff              text[]      NOT NULL DEFAULT '{}', -- contact codes: staff userids, in turn
    chat_ids           text[]      NOT NULL DEFAULT '{}', -- group codes: at most 5 customer groups
    daily_cap          integer     CHECK (daily_cap IS NULL OR daily_cap > 0), -- adds per staff/day
    tags               text[]      NOT NULL DEFAULT '{}', -- corp tag ids marked on add (mark_tag)
    welcome_content    text[]      NOT NULL DEFAULT '{}', -- content ids, first that fits is sent
    status             text        NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'deleted')),
    created_by         text,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, code_id),
    UNIQUE (tenant_id, state)
);
