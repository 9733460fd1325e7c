-- Named dynamic segments: a rule over stage, role, account, score, features, tags and events.
-- Membership is kept current as events are applied and can be recomputed in full.
CREATE TABLE segments (
    tenant_id    text        NOT NULL,
    segment_id   text        NOT NULL,     -- a slug, e.g. b2b-comparing-tech
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    rule         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, segment_id)
);

CREATE TABLE segment_members (
    tenant_id   text        NOT NULL,
    segment_id  text        NOT NULL,
    contact_id  text        NOT NULL,
    since       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, contact_id),
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments ON DELETE CASCADE
);
CREATE INDEX segment_members_contact ON segment_members (tenant_id, contact_id);
