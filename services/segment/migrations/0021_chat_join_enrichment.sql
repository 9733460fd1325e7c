-- Group joins through a join code (docs/domain.md "Channel codes"): WeCom gives a joining
-- member's state (and join_time, join_scene) only in externalcontact/groupchat/get's member_list.
-- The consumer queues (chat, member) here, in its batch transaction, when it applies
-- wecom.chat.member_joined; the Enricher (services/segment/enrichment.py) calls groupchat/get and
-- publishes a wecom.chat.member_enriched touchpoint per member whose entry carries a state.
CREATE TABLE IF NOT EXISTS chat_join_queue (
    tenant_id        text        NOT NULL,
    chat_id          text        NOT NULL,
    external_userid  text        NOT NULL,
    requested_at     timestamptz NOT NULL,   -- event time of the newest member_joined
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,            -- NULL: given up (last_error says why)
    last_error       text,
    PRIMARY KEY (tenant_id, chat_id, external_userid)
);
CREATE INDEX IF NOT EXISTS chat_join_queue_due ON chat_join_queue (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
