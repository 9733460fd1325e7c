-- The effect report (docs/domain.md "Effect report"). A campaign's holdout share: its held-out
-- contacts get a delivery row (status excluded, reason held_out) and are never sent to.
ALTER TABLE campaigns ADD COLUMN holdout_percent integer NOT NULL DEFAULT 0
    CHECK (holdout_percent BETWEEN 0 AND 50);

-- The report reads a campaign's contact rows (every decision to send, and the held out) by
-- contact, with what it needs of each, in an index-only scan (effect_report.py REPORT: its
-- WHERE clause repeats this predicate so the planner can use the index).
CREATE INDEX deliveries_effect ON deliveries (tenant_id, campaign_id, recipient_id)
    INCLUDE (status, content_id, created_at, run_id)
    WHERE recipient_kind = 'contact' AND (status <> 'excluded' OR reason = 'held_out');

-- A contact's stage advances (forward in the tenant's model order, judged when the change
-- arrived), from siyu.stage-changes.v1. Keyed by the change itself, so a redelivered or replayed
-- message is stored once.
CREATE TABLE stage_advances (
    tenant_id   text        NOT NULL,
    contact_id  text        NOT NULL,
    to_stage    text        NOT NULL,
    changed_at  timestamptz NOT NULL,
    from_stage  text        NOT NULL,
    model       text        NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, to_stage, changed_at)
);
CREATE INDEX stage_advances_time ON stage_advances (tenant_id, contact_id, changed_at);

-- Clicks on tracked links (link.clicked names campaign, content and contact) and replies
-- (oa.message from a contact outreach knows), from siyu.signals.v1 (group
-- siyu-outreach-effects), one row per signal: its event id makes it idempotent.
CREATE TABLE effect_events (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('click', 'reply')),
    contact_id   text        NOT NULL,
    campaign_id  text,                             -- clicks: the link's campaign
    content_id   text,                             -- clicks: the link's content item
    at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX effect_events_contact ON effect_events (tenant_id, contact_id, kind, at);
CREATE INDEX audience_openids ON audience USING gin (openids);
