-- Failed console logins per client address (console/throttle.py; docs/console.md "Login
-- throttling"): one row per address and fixed window, so that every gunicorn worker and replica
-- counts the same failures. A row whose window has ended is stale; the next failure from that
-- address starts a new window, and failures delete stale rows of other addresses as they go.
CREATE TABLE console_login_throttle (
    address      text        PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL
);
CREATE INDEX console_login_throttle_window ON console_login_throttle (window_start);
