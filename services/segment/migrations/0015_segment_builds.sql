-- A segment's membership is built in the background when it is created, when its rule changes
-- and when a disabled one is saved again (services/segment/backfill.py): the build's state and
-- progress. build_version counts the builds asked for: a build finds out it was superseded (a
-- newer rule saved meanwhile) by comparing it. Existing segments were filled by the consumer and
-- `siyu segment recompute` as before: ready. A failed rule shows as disabled_at/disabled_reason.
ALTER TABLE segments
    ADD COLUMN build_status  text    NOT NULL DEFAULT 'ready'
                             CHECK (build_status IN ('building', 'ready')),
    ADD COLUMN build_version integer NOT NULL DEFAULT 0,
    ADD COLUMN build_done    integer,            -- contacts evaluated by the current build
    ADD COLUMN build_total   integer;            -- the tenant's contacts when it started
