-- Platform rate limits shared by every outreach worker (services/outreach/rate_limits.py): one
-- token bucket per WeCom corp or OA app, because the platform counts a corp's calls whatever
-- process makes them (N workers with a bucket each sent N times the rate and earned 45009).
CREATE TABLE rate_buckets (
    bucket     text PRIMARY KEY,            -- 'wecom:<corp_id>' or 'oa:<app_id>'
    tokens     double precision NOT NULL,   -- below 0: slots already promised to waiting callers
    updated_at timestamptz NOT NULL         -- the database's clock: every worker shares it
);
