-- Each tenant's catalogue as the segment service last published it on siyu.catalogue.v1
-- (services/outreach/catalogue.py): the lifecycle model it stages with and its segments, the
-- names campaigns are checked against (services/outreach/names.py). One row per tenant, the
-- newest published_at wins, so a replayed or redelivered message changes nothing.
CREATE TABLE catalogue (
    tenant_id         text        PRIMARY KEY,
    model             text        NOT NULL,
    model_builtin     boolean     NOT NULL,
    stages            text[]      NOT NULL,   -- funnel stages in order
    side_stages       text[]      NOT NULL,
    segments          jsonb       NOT NULL,   -- [{"segment_id": ..., "name": ...}] by segment_id
    published_at      timestamptz NOT NULL,   -- segment's clock when it queued this catalogue
    received_at       timestamptz NOT NULL DEFAULT now()
);
