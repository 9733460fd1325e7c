-- Welcome on add (docs/domain.md "Welcome on add"): one row per WeCom welcome_code, claimed before
-- send_welcome_msg is called, so a redelivered or duplicated add callback never sends twice (the
-- code is single-use and valid 20 s: a crash between claim and result loses that welcome, never
-- doubles it; the worker's sweep then records it missed, lost_after_claim). The row records what happened: the outcome, the content chosen, the callback ->
-- call latency and WeCom's errcode (the code's tags are the add's work: welcome_adds below).
CREATE TABLE welcomes (
    tenant_id        text        NOT NULL,
    welcome_code     text        NOT NULL,
    event_id         text        NOT NULL,              -- the add touchpoint
    external_userid  text        NOT NULL,
    identity_hash    text,                              -- keyed hash of external_userid (erasure)
    staff_userid     text,
    state            text,                              -- the add's State (a channel code's)
    code_id          text,                              -- the channel code it matched, if any
    contact_id       text,                              -- known to outreach's audience, if any
    content_id       text,                              -- the welcome chosen (NULL: none fits)
    status           text        NOT NULL DEFAULT 'claimed'
                     CHECK (status IN ('claimed', 'sent', 'already_sent', 'missed', 'failed',
                                       'no_content')),
    reason           text,                              -- why no content / missed / failed
    errcode          integer,
    error            text,
    attempts         integer     NOT NULL DEFAULT 0,
    callback_at      timestamptz NOT NULL,              -- the callback's CreateTime
    called_at        timestamptz,                       -- the last send_welcome_msg call
    latency_ms       integer,                           -- callback_at -> called_at
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, welcome_code)
);
CREATE INDEX welcomes_recent ON welcomes (tenant_id, created_at DESC);
CREATE INDEX welcomes_claimed ON welcomes (created_at) WHERE status = 'claimed';
CREATE INDEX welcomes_identity ON welcomes (tenant_id, identity_hash);
CREATE INDEX welcomes_created ON welcomes (created_at);

-- Every add through a code's state (with or without a WelcomeCode), keyed by the touchpoint's
-- event id, counted once for its channel code's daily cap: a half-add (add_half_external_contact)
-- and its full add are one add (the same code, member, customer and tenant-local day: add_key).
-- The code's tags are marked per add, whether or not a welcome went out; kept 30 days like
-- welcomes.
CREATE TABLE welcome_adds (
    tenant_id        text        NOT NULL,
    event_id         text        NOT NULL,
    state            text,                              -- the add's State
    staff_userid     text,
    external_userid  text,
    identity_hash    text,                              -- keyed hash of external_userid (erasure)
    day              date,                              -- the add's tenant-local day
    tags             text[]      NOT NULL DEFAULT '{}', -- the code's tags to mark
    tag_status       text        CHECK (tag_status IN ('pending', 'marked', 'failed')),
    tag_errcode      integer,
    tag_attempts     integer     NOT NULL DEFAULT 0,
    tag_next_at      timestamptz,                       -- the worker loop's next mark_tag try
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, event_id),
    CONSTRAINT welcome_adds_add_key UNIQUE (tenant_id, state, staff_userid, external_userid, day)
);
CREATE INDEX welcome_adds_tags_due ON welcome_adds (tag_next_at) WHERE tag_status = 'pending';
CREATE INDEX welcome_adds_identity ON welcome_adds (tenant_id, identity_hash);
CREATE INDEX welcome_adds_created ON welcome_adds (created_at);

-- Group welcome templates (入群欢迎语素材): WeCom keeps them under its template_id, at most 100
-- per corp; Siyu keeps the same fields to list, edit and delete them.
CREATE TABLE group_welcome_templates (
    tenant_id    text        NOT NULL,
    template_id  text        NOT NULL,              -- WeCom's id
    name         text        NOT NULL,              -- Siyu's label, unique per tenant
    text         text,
    attachment   jsonb,                             -- {"msgtype": "image"|"link"|..., ...}
    notify       boolean     NOT NULL DEFAULT true,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, template_id),
    UNIQUE (tenant_id, name)
);
