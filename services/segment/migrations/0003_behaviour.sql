-- B2C behaviour: the features the segment rules computed and the behaviour segments they imply.
ALTER TABLE contacts
    ADD COLUMN behaviour text[] NOT NULL DEFAULT '{}',
    ADD COLUMN features jsonb NOT NULL DEFAULT '{}';
