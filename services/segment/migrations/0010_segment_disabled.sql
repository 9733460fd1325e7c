-- A segment whose rule fails while being evaluated is disabled instead of failing its tenant's
-- events (services/segment/segments.py): when, and the error. Saving the segment clears both.
ALTER TABLE segments
    ADD COLUMN disabled_at     timestamptz,
    ADD COLUMN disabled_reason text;
