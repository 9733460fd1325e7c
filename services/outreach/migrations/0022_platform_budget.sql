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

-- Where the leader's poll of get_groupmsg_list_v2 got to, per tenant (services/outreach/
-- budget_sync.py): its last complete pass, and after a failure when to try again.
CREATE TABLE platform_send_polls (
    tenant_id  text        PRIMARY KEY,
    polled_at  timestamptz,                       -- NULL: no complete pass yet
    retry_at   timestamptz,                       -- backing off until then after a failure
    failures   integer     NOT NULL DEFAULT 0     -- failed passes in a row
);

-- The messages the poll read (the corp's and members' own, not Siyu's): when it last read one,
-- and whether every task and recipient of it had its final status (then never read again).
CREATE TABLE platform_send_msgs (
    tenant_id   text        NOT NULL,
    msgid       text        NOT NULL,
    checked_at  timestamptz NOT NULL,
    final       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, msgid)
);

-- Erased people (keyed identity hashes, docs/privacy.md: no identity), so the poll does not
-- write their external_userid back from a message it reads again; kept while a period can
-- still count a send (40 days).
CREATE TABLE platform_send_erased (
    tenant_id      text        NOT NULL,
    identity_hash  text        NOT NULL,
    erased_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, identity_hash)
);

-- Whether a listed message is Siyu's own (the poll skips those), and send results by message.
CREATE INDEX deliveries_msgid ON deliveries (tenant_id, msgid) WHERE msgid IS NOT NULL;

-- Siyu's own WeCom sends of the last 31 days before this migration (a month's period may
-- still count them); the worker's first poll of a tenant does the same for anything missed.
INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin)
SELECT tenant_id, address, msgid, sent_at, 'siyu' FROM deliveries
WHERE channel IN ('wecom_single', 'wecom_group') AND status IN ('sent', 'delivered')
  AND address IS NOT NULL AND msgid IS NOT NULL AND sent_at > now() - interval '31 days'
ON CONFLICT DO NOTHING;

-- Temporary media (docs/platform.md "Temporary media"; services/outreach/media.py): the media_id
-- WeCom gave an image attachment's source URL and when it was uploaded (valid for 3 days).
CREATE TABLE wecom_media (
    tenant_id    text        NOT NULL,
    source_url   text        NOT NULL,
    media_id     text        NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, source_url)
);
