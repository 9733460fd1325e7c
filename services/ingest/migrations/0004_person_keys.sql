-- Crypto-shredding (docs/privacy.md): one AES-256-GCM key per person, by tenant and the keyed
-- hash (shared/privacy.py) of the platform identity that names them in an envelope. Ingest
-- encrypts each envelope's raw payload with it; erasing the person deletes the row, and every
-- copy of their raw payloads left on the topics (touchpoints, dead letters) becomes unreadable.
CREATE TABLE person_keys (
    tenant_id      text        NOT NULL,
    identity_hash  text        NOT NULL,
    key            bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, identity_hash)
);
