-- What the domain rules derive for an account: engaged buying roles and risk flags with reasons.
ALTER TABLE accounts
    ADD COLUMN roles_engaged text[] NOT NULL DEFAULT '{}',
    ADD COLUMN members integer NOT NULL DEFAULT 0,
    ADD COLUMN risk_flags jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN refreshed_at timestamptz;
