-- Group sends are staff tasks (docs/platform.md "Group sends are staff tasks"): a WeCom mass
-- message (msgid) leaves only when each sending member confirms their task. group_messages: one
-- per msgid, its reminders (at most 3 in 24 h) and a cancellation asked for by a pause or archive
-- (recorded in the campaign's transaction, carried out by the worker with retries; a resume
-- withdraws one not yet carried out). next_poll_at / next_remind_at: when the worker next reads
-- WeCom's tasks / considers a reminder (claimed FOR UPDATE SKIP LOCKED, back-off while nothing
-- changes, NULL when nothing is left to do); poll_every_s is the current polling interval.
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
    cancel_sent_at     timestamptz,                          -- WeCom accepted the cancel
    polled_at          timestamptz,
    next_poll_at       timestamptz,
    poll_every_s       integer     NOT NULL DEFAULT 30,
    next_remind_at     timestamptz,
    PRIMARY KEY (tenant_id, msgid)
);
CREATE INDEX group_messages_campaign ON group_messages (tenant_id, campaign_id);
CREATE INDEX group_messages_run ON group_messages (tenant_id, run_id);
CREATE INDEX group_messages_cancel ON group_messages (cancel_next_at) WHERE cancel = 'requested';
CREATE INDEX group_messages_poll ON group_messages (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX group_messages_remind ON group_messages (next_remind_at)
    WHERE next_remind_at IS NOT NULL AND cancel IS NULL;
CREATE INDEX group_messages_created ON group_messages (created_at);
-- A message's deliveries are read by msgid through deliveries_msgid (migration 0022).

-- Each member's task of a message, as get_groupmsg_task reports it (status 0 -> pending, 2 ->
-- sent); failed when every recipient failed; cancelled by cancel_groupmsg_send; expired when
-- still pending at the end of the 3 days Siyu follows a message.
CREATE TABLE group_tasks (
    tenant_id     text        NOT NULL,
    msgid         text        NOT NULL,
    userid        text        NOT NULL,
    campaign_id   text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'failed', 'cancelled', 'expired')),
    created_at    timestamptz NOT NULL,
    confirmed_at  timestamptz,
    reminds       integer     NOT NULL DEFAULT 0,
    reminded_at   timestamptz[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, msgid, userid)
);
-- The list's order (newest first), whole and per member (services/outreach/group_tasks.py
-- task_rows reads a page from these, never sorting the tenant's set).
CREATE INDEX group_tasks_recent ON group_tasks (tenant_id, created_at DESC, msgid DESC, userid DESC);
CREATE INDEX group_tasks_staff ON group_tasks
    (tenant_id, userid, created_at DESC, msgid DESC);

-- Each recipient (external_userid or chat_id) of a member's task, from get_groupmsg_send_result.
-- Personal data (docs/privacy.md "Group task results"): an erased person's target is replaced by
-- an opaque one; rows are deleted with their message after the retention.
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
-- Two console users of a tenant cannot link the same userid.
ALTER TABLE console_users ADD COLUMN wecom_userid text;
CREATE UNIQUE INDEX console_users_wecom ON console_users (tenant_id, wecom_userid)
    WHERE wecom_userid IS NOT NULL;

-- WeCom group sends still in their 3-day window when this migration runs (handed over before
-- it, so never registered by services/outreach/group_tasks.py track): registered as track()
-- would have, so their tasks, results and the budget's count are followed like new ones.
INSERT INTO group_messages (tenant_id, msgid, campaign_id, run_id, channel, created_at,
                            next_poll_at)
SELECT tenant_id, msgid, min(campaign_id), min(run_id), min(channel), min(sent_at), '-infinity'
FROM deliveries
WHERE status = 'sent' AND channel LIKE 'wecom%' AND msgid IS NOT NULL AND msgid <> ''
  AND sent_at > now() - interval '3 days' AND campaign_id IS NOT NULL AND run_id IS NOT NULL
GROUP BY tenant_id, msgid
ON CONFLICT (tenant_id, msgid) DO NOTHING;
