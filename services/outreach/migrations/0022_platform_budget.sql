-- The platform's budget of group sends (docs/platform.md "The platform's budget of group sends";
-- services/outreach/budget.py): every WeCom group-sent message a customer (external_userid) or
-- customer group (chat_id) received from the corp, Siyu's own and those the corp's admins and
-- members sent themselves (seen in externalcontact/get_groupmsg_list_v2). One row per recipient
-- and msgid, so a message polled again counts once; periods are counted over sent_at in China
-- time (WeCom's) at read time.
CREATE TABLE platform_sends (
    tenant_id  text        NOT NULL,
    recipient  text        NOT NULL,              -- external_userid or chat_id
    msgid      text        NOT NULL,
    sent_at    timestamptz NOT NULL,
    origin     text        NOT NULL CHECK (origin IN ('siyu', 'corp', 'staff')),
    PRIMARY KEY (tenant_id, recipient, msgid)
);
CREATE INDEX platform_sends_period ON platform_sends (tenant_id, recipient, sent_at);
-- The poll's prune (rows older than any period) and reads of a tenant's period.
CREATE INDEX platform_sends_at ON platform_sends (tenant_id, sent_at);

-- Where the leader's poll of get_groupmsg_list_v2 got to, per tenant.
CREATE TABLE platform_send_polls (
    tenant_id  text        PRIMARY KEY,
    polled_at  timestamptz NOT NULL
);

-- Temporary media (docs/platform.md "Temporary media"; services/outreach/media.py): the media_id
-- WeCom gave an image attachment's source URL and when it was uploaded (valid for 3 days).
CREATE TABLE wecom_media (
    tenant_id    text        NOT NULL,
    source_url   text        NOT NULL,
    media_id     text        NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, source_url)
);
