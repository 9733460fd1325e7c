-- Lost-customer alerts (docs/domain.md "Lost customers"): one row per loss (the profile's
-- lost.event_id, unique in the tenant: a merge moves events to the surviving contact with the
-- same ids, so keying by contact too would announce the same loss twice), so a redelivered,
-- replayed or merged profile never notifies twice; the outreach worker
-- sends it to the staff member through WeCom message/send and records the result here.
CREATE TABLE lost_notices (
    tenant_id     text        NOT NULL,
    contact_id    text        NOT NULL,
    loss_key      text        NOT NULL,     -- the loss's event id (its time when it has none)
    reason        text        NOT NULL,     -- customer_deleted_staff | staff_deleted_customer
    staff_userid  text,
    lost_at       timestamptz NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'failed')),
    attempts      integer     NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    errcode       integer,
    error         text,
    msgid         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    PRIMARY KEY (tenant_id, loss_key)
);
CREATE INDEX lost_notices_due ON lost_notices (next_at) WHERE status = 'pending';
