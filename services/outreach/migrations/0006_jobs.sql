-- Background jobs of the admin API in this schema: campaign previews (api_campaigns.py).
-- Queued by a request (202 + a URL to poll), run by the admin API's job threads
-- (shared/jobs.py), at most one queued or running per tenant and kind. A job whose process died
-- stops heartbeating: it is queued again (or failed after its attempts). Results expire.
CREATE TABLE jobs (
    job_id        text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    kind          text        NOT NULL,
    subject       text        NOT NULL,              -- the model or campaign it is about
    params        jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress      real,                              -- 0..1 while running
    result        jsonb,
    error         text,
    attempts      integer     NOT NULL DEFAULT 0,
    created_by    text,                              -- token id
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    finished_at   timestamptz,
    expires_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX jobs_one_active ON jobs (tenant_id, kind) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_queued ON jobs (created_at) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_expiry ON jobs (expires_at);
