-- Nonce replay cache of the OA and WeCom callbacks (docs/security.md "Webhooks"). A signed
-- (receiver, timestamp, nonce) is accepted for one body only: the same triple with another body
-- is a replay (403); with the same body it is the platform delivering again, answered "success"
-- without publishing twice once the first delivery was accepted. Rows are needed only while the
-- timestamp is inside the signature window (expires_at); expired rows are deleted in passing.
CREATE TABLE webhook_nonces (
    receiver    text        NOT NULL,  -- 'oa:<app_id>' or 'wecom:<corp_id>'
    timestamp   text        NOT NULL,
    nonce       text        NOT NULL,
    body_sha256 text        NOT NULL,
    accepted    boolean     NOT NULL DEFAULT false,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (receiver, timestamp, nonce)
);
CREATE INDEX webhook_nonces_expiry ON webhook_nonces (expires_at);

-- Event API tokens get a public id (to list and revoke them; existing ones derive theirs from the
-- hash, which reveals nothing of the token) and may expire (`--expires`): 401 token_expired.
ALTER TABLE api_tokens ADD COLUMN token_id text, ADD COLUMN expires_at timestamptz;
UPDATE api_tokens SET token_id = 'evt_' || substr(token_hash, 1, 12);
ALTER TABLE api_tokens ALTER COLUMN token_id SET NOT NULL,
    ALTER COLUMN token_id SET DEFAULT 'evt_' || substr(md5(random()::text), 1, 12);
CREATE UNIQUE INDEX api_tokens_token_id ON api_tokens (token_id);
CREATE INDEX api_tokens_tenant_created ON api_tokens (tenant_id, created_at DESC, token_id DESC);
