-- Group sends are staff tasks (docs/platform.md "Group sends are staff tasks"): a WeCom mass
-- message (msgid) leaves only when each sending member confirms their task. group_messages: one
-- per msgid, its reminders (at most 3 in 24 h) and a cancellation asked for by a pause or archive
-- (recorded in the campaign's transaction, carried out by the worker with retries).
CREATE TABLE group_messages (
    tenant_id          text        NOT NULL,
    msgid              text        NOT NULL,
    campaign_id        text        NOT NULL,
    run_id             bigint      NOT NULL,
    channel            text        NOT NULL,
    created_at         timestamptz NOT NULL,                 -- first delivery's sent_at
    reminded_at        timestamptz[] NOT NULL DEFAULT '{}',  -- every reminder sent or refused
    cancel             text        CHECK (cancel IN ('requested', 'done', 'refused')),
    cancel_reason      text,                                 -- "campaign paused" / "... archived"
    cancel_attempts    integer     NOT NULL DEFAULT 0,
    cancel_next_at     timestamptz,
    cancel_error       text,
    polled_at          timestamptz,
    PRIMARY KEY (tenant_id, msgid)
);
CREATE INDEX group_messages_campaign ON group_messages (tenant_id, campaign_id);
CREATE INDEX group_messages_cancel ON group_messages (cancel_next_at) WHERE cancel = 'requested';

-- Each member's task of a message, as get_groupmsg_task reports it (status 0 -> pending, 2 ->
-- sent); failed when every recipient failed; cancelled by cancel_groupmsg_send.
CREATE TABLE group_tasks (
    tenant_id     text        NOT NULL,
    msgid         text        NOT NULL,
    userid        text        NOT NULL,
    campaign_id   text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    created_at    timestamptz NOT NULL,
    confirmed_at  timestamptz,
    reminds       integer     NOT NULL DEFAULT 0,
    reminded_at   timestamptz[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, msgid, userid)
);
CREATE INDEX group_tasks_staff ON group_tasks (tenant_id, userid, status);

-- Each recipient (external_userid or chat_id) of a member's task, from get_groupmsg_send_result.
CREATE TABLE group_task_results (
    tenant_id   text        NOT NULL,
    msgid       text        NOT NULL,
    userid      text        NOT NULL,
    target      text        NOT NULL,
    status      text        NOT NULL
                CHECK (status IN ('pending', 'sent', 'not_friend', 'limit', 'failed')),
    sent_at     timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, msgid, userid, target)
);

-- A console user's own WeCom userid (docs/console.md "Group tasks"): their pending tasks first.
ALTER TABLE console_users ADD COLUMN wecom_userid text;
