-- What the stages of each tenant's model mean, as its catalogue says (siyu.catalogue.v1,
-- services/outreach/catalogue.py): {"comparison": ["evaluating"], ...}, the stages declaring any
-- flag. The no-discount guard (services/outreach/policies.py) keeps B2B promotions from the
-- evaluating ones. NULL: the stored catalogue predates flags (the tenant's unflagged-model
-- default applies until segment publishes again, which it does at every start).
ALTER TABLE catalogue ADD COLUMN stage_flags jsonb;
