-- The account a contact's stage was last settled with (docs/domain.md "Event time and replay").
-- A contact that joins an account (or moves to another) brings evidence the account has not
-- been settled on: its stored events then re-settle the account from the earliest of them.
ALTER TABLE contacts ADD COLUMN settled_account text;
-- Existing contacts were settled with the account they have.
UPDATE contacts SET settled_account = account_id;
