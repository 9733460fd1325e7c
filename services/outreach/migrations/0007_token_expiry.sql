-- Admin API tokens can expire (`siyu token create --expires`, POST /tokens expires_at): from
-- expires_at on, the token is refused with 401 token_expired (docs/security.md "Tokens").
-- NULL: the token does not expire.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
