-- Events accepted while the broker was unreachable. The replayer publishes them in order of
-- arrival and deletes them once the broker has acknowledged; consumers dedupe by event_id, so a
-- crash between publish and delete only causes a harmless redelivery.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    tenant_id   text        NOT NULL,
    event_id    text        NOT NULL,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_tenant ON outbox (tenant_id);
