-- Contacts, their identities and the touchpoints applied to them.
--
-- A contact's id is derived from its identities (the smallest hash of any identity linked to it),
-- so a replay of the topic from offset 0 rebuilds the same ids whatever order the partitions
-- interleave in. Linking a smaller identity re-keys the contact; merges keep the smaller id.
CREATE TABLE contacts (
    tenant_id       text        NOT NULL,
    contact_id      text        NOT NULL,
    created_at      timestamptz NOT NULL,          -- first evidence (event time, not processing time)
    last_event_at   timestamptz NOT NULL,
    name            text,
    title           text,
    profile_at      timestamptz,                -- event time of the name/title/corp_name shown
    corp_name       text,
    account_id      text,
    role            text,
    role_confidence real,
    role_source     text,
    stage           text,
    stage_since     timestamptz,
    score           double precision NOT NULL DEFAULT 0,
    score_at        timestamptz,
    tags            text[]      NOT NULL DEFAULT '{}',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    events_count    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, contact_id)
);
CREATE INDEX contacts_account ON contacts (tenant_id, account_id);
CREATE INDEX contacts_stage ON contacts (tenant_id, stage);

CREATE TABLE identities (
    tenant_id   text        NOT NULL,
    kind        text        NOT NULL,   -- openid | unionid | external_userid | crm_id
    value       text        NOT NULL,
    contact_id  text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
);
CREATE INDEX identities_contact ON identities (tenant_id, contact_id);

-- Merge history: two contacts found to be one person (e.g. a unionid joined them).
CREATE TABLE contact_merges (
    tenant_id     text        NOT NULL,
    from_contact  text        NOT NULL,
    into_contact  text        NOT NULL,
    cause         text        NOT NULL,
    event_id      text        NOT NULL,
    merged_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, from_contact, into_contact)
);

-- Each touchpoint applied to a contact, once: the primary key is the idempotency guard that makes
-- redelivery and replays harmless.
CREATE TABLE events (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    contact_id   text        NOT NULL,
    type         text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    attributes   jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, event_id, contact_id)
);
CREATE INDEX events_contact_time ON events (tenant_id, contact_id, occurred_at);

CREATE TABLE accounts (
    tenant_id    text        NOT NULL,
    account_id   text        NOT NULL,     -- the normalised company name (companies.account_key)
    name         text        NOT NULL,     -- the name as first seen
    created_at   timestamptz NOT NULL,
    stage        text,
    stage_since  timestamptz,
    score        double precision NOT NULL DEFAULT 0,
    attributes   jsonb       NOT NULL DEFAULT '{}',
    merged_into  text,
    PRIMARY KEY (tenant_id, account_id)
);

-- Every stage transition of a contact or an account, with time and cause.
CREATE TABLE stage_history (
    id            bigserial PRIMARY KEY,
    tenant_id     text        NOT NULL,
    subject_kind  text        NOT NULL,   -- contact | account
    subject_id    text        NOT NULL,
    model         text        NOT NULL,
    from_stage    text,
    to_stage      text        NOT NULL,
    cause         text        NOT NULL,
    event_id      text,
    changed_at    timestamptz NOT NULL,
    actor         text                    -- set for manual overrides (audited)
);
CREATE INDEX stage_history_subject ON stage_history (tenant_id, subject_kind, subject_id, changed_at);

-- Changes to publish (stage changes, profile snapshots), written in the same transaction as the
-- state; published after commit, deleted once the broker acknowledged.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    tenant_id   text        NOT NULL,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
