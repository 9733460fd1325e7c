-- WeCom contact enrichment (services/segment/enrichment.py). The consumer queues an external
-- contact here, in its batch transaction, when it applies wecom.contact.added/half_added/edited;
-- the Enricher worker calls externalcontact/get outside any consumer transaction and publishes
-- the detail as a wecom.contact.enriched touchpoint, which the consumer applies like any other.
CREATE TABLE enrichment_queue (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    requested_at     timestamptz NOT NULL,   -- event time of the newest triggering touchpoint
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,            -- NULL: given up (last_error says why)
    last_error       text,
    PRIMARY KEY (tenant_id, external_userid)
);
CREATE INDEX enrichment_queue_due ON enrichment_queue (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- Event time of the tag set in contacts.tags (WeCom follow-user tags): the latest set wins.
ALTER TABLE contacts
    ADD COLUMN tags_at timestamptz;
