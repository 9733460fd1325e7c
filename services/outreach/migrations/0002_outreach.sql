-- Outreach: its audience projection, WeCom customer groups, the content library, campaigns, runs,
-- deliveries and exposures. Outreach never reads the segment schema: the audience is built from
-- siyu.profiles.v1, groups are synced from WeCom.

-- One row per contact, from the newest profile snapshot (updated_at: an older one never wins).
CREATE TABLE audience (
    tenant_id          text        NOT NULL,
    contact_id         text        NOT NULL,
    mode               text        NOT NULL,
    stage              text,
    role               text,
    account_id         text,
    account_stage      text,
    risk_flags         text[]      NOT NULL DEFAULT '{}',
    segments           text[]      NOT NULL DEFAULT '{}',
    tags               text[]      NOT NULL DEFAULT '{}',
    behaviour          text[]      NOT NULL DEFAULT '{}',
    score              double precision NOT NULL DEFAULT 0,
    openids            text[]      NOT NULL DEFAULT '{}',
    external_userids   text[]      NOT NULL DEFAULT '{}',
    oa_follower        boolean,
    wecom_contact      boolean,
    oa_last_message_at timestamptz,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);
CREATE INDEX audience_stage ON audience (tenant_id, stage);
CREATE INDEX audience_account ON audience (tenant_id, account_id);
CREATE INDEX audience_segments ON audience USING gin (segments);
CREATE INDEX audience_external ON audience USING gin (external_userids);

-- WeCom customer groups (客户群): owner (the staff member who sends to it) and customer members.
CREATE TABLE groups (
    tenant_id   text        NOT NULL,
    chat_id     text        NOT NULL,
    name        text,
    owner       text        NOT NULL,
    members     text[]      NOT NULL DEFAULT '{}',   -- external_userids of customer members
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dismissed')),
    synced_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, chat_id)
);
CREATE INDEX groups_members ON groups USING gin (members);

CREATE TABLE content (
    tenant_id    text        NOT NULL,
    content_id   text        NOT NULL,
    title        text        NOT NULL,
    format       text        NOT NULL,
    promotional  boolean     NOT NULL,
    stages       text[]      NOT NULL DEFAULT '{}',
    roles        text[]      NOT NULL DEFAULT '{}',
    topics       text[]      NOT NULL DEFAULT '{}',
    industries   text[]      NOT NULL DEFAULT '{}',
    payloads     jsonb       NOT NULL,
    status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, content_id)
);

CREATE TABLE campaigns (
    tenant_id        text        NOT NULL,
    campaign_id      text        NOT NULL,
    name             text        NOT NULL,
    channel          text        NOT NULL,
    status           text        NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'active', 'paused', 'ended', 'archived')),
    audience         jsonb       NOT NULL,
    content          jsonb       NOT NULL,
    trigger          jsonb       NOT NULL,
    quiet_hours      jsonb,
    allow_b2b_promotion boolean  NOT NULL DEFAULT false,
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    launched_at      timestamptz,
    scheduled_until  timestamptz,                 -- the last schedule time materialised as a run
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaigns_active ON campaigns (status) WHERE status = 'active';

-- A run: one due time of a schedule, or one triggering event (restricted to its subject).
CREATE TABLE campaign_runs (
    run_id        bigserial   PRIMARY KEY,
    tenant_id     text        NOT NULL,
    campaign_id   text        NOT NULL,
    trigger_key   text        NOT NULL,           -- at:<iso time> | event:<kind>:<subject>:<time>
    subject_kind  text,                           -- event runs: contact | account
    subject_id    text,
    step          integer     NOT NULL DEFAULT 0, -- the position of the run in its schedule
    due_at        timestamptz NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    lease_until   timestamptz,                    -- a running run whose lease passed is resumed
    stats         jsonb       NOT NULL DEFAULT '{}',
    error         text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (tenant_id, campaign_id, trigger_key)
);
CREATE INDEX campaign_runs_due ON campaign_runs (due_at) WHERE status IN ('pending', 'running');
CREATE INDEX campaign_runs_campaign ON campaign_runs (tenant_id, campaign_id, run_id DESC);

-- One delivery per run and recipient (a contact or a group): the unique key makes a resumed run
-- skip what it already planned, so nothing is sent twice.
CREATE TABLE deliveries (
    delivery_id     bigserial   PRIMARY KEY,
    tenant_id       text        NOT NULL,
    run_id          bigint      NOT NULL REFERENCES campaign_runs (run_id),
    campaign_id     text        NOT NULL,
    recipient_kind  text        NOT NULL CHECK (recipient_kind IN ('contact', 'group')),
    recipient_id    text        NOT NULL,
    channel         text        NOT NULL,
    address         text,                         -- external_userid, openid or chat_id
    sender          text,                         -- WeCom staff userid (group owner)
    content_id      text,
    status          text        NOT NULL
                    CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed',
                                      'excluded', 'unknown')),
    reason          text,                         -- why excluded / failed
    errcode         integer,
    msgid           text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    reached         integer     NOT NULL DEFAULT 0, -- people reached (group members, or 1)
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at         timestamptz,
    UNIQUE (tenant_id, run_id, recipient_kind, recipient_id)
);
CREATE INDEX deliveries_run_status ON deliveries (run_id, status);
CREATE INDEX deliveries_tenant ON deliveries (tenant_id, delivery_id DESC);
CREATE INDEX deliveries_recipient ON deliveries (tenant_id, recipient_kind, recipient_id);

-- What frequency caps count: every person a sent delivery reached (a group send: each member).
CREATE TABLE exposures (
    tenant_id    text        NOT NULL,
    subject_kind text        NOT NULL CHECK (subject_kind IN ('contact', 'group')),
    subject_id   text        NOT NULL,
    channel      text        NOT NULL,
    delivery_id  bigint      NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subject_kind, subject_id, delivery_id)
);
CREATE INDEX exposures_time ON exposures (tenant_id, subject_kind, subject_id, at);
