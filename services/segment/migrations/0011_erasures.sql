-- Erasure (docs/privacy.md). A person erased is deleted from every table; what stays is what a
-- replay of the topics needs to not bring them back, and none of it names the person:
-- * erased_identities: the keyed hash (shared/privacy.py) of each identity of an erased person,
--   with the time of the erasure. Touchpoints of these identities received before it are dropped;
--   one received after (the person follows again) is a new person.
-- * erasures: which contact ids were erased, when, by whom and why (a second DELETE of the same
--   contact answers "already erased", an unknown id 404).
CREATE TABLE erased_identities (
    tenant_id      text        NOT NULL,
    identity_hash  text        NOT NULL,
    erased_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, identity_hash)
);

CREATE TABLE erasures (
    tenant_id    text        NOT NULL,
    contact_id   text        NOT NULL,
    erased_at    timestamptz NOT NULL,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    identities   integer     NOT NULL,   -- how many identities were erased (not which)
    PRIMARY KEY (tenant_id, contact_id)
);

-- A Kafka tombstone (null value) removes the erased profile from the compacted profiles topic.
ALTER TABLE outbox ALTER COLUMN value DROP NOT NULL;
