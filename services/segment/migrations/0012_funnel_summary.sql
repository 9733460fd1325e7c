-- The funnel report (services/segment/funnel_query.py) reads per-subject summaries kept up to
-- date as the stage history is written, instead of walking a tenant's whole history per request.
-- What is stored does not depend on a model's funnel order or on a report's window:
-- * funnel_subjects: one row per (tenant, kind, model, subject) with history: where its chain
--   ends (stage and since when; see funnel._chain) and the distinct stages it ever entered.
-- * funnel_stays: the completed stays of each chain (stage, entered_at, duration), indexed by
--   stage and entry time for the medians.
-- Triggers on stage_history recompute the affected subjects' rows from their (small) histories
-- after every statement that writes it: the consumer's inserts, merges that re-key a history
-- onto the survivor (UPDATE), erasure (DELETE), recompute, TRUNCATE.
CREATE TABLE funnel_subjects (
    tenant_id     text        NOT NULL,
    subject_kind  text        NOT NULL,
    model         text        NOT NULL,
    subject_id    text        NOT NULL,
    end_stage     text,       -- NULL only inside the transaction that refreshes the row
    end_at        timestamptz,
    stages        text[],     -- every to_stage of the subject's history, once each
    PRIMARY KEY (tenant_id, subject_kind, model, subject_id)
);

CREATE TABLE funnel_stays (
    tenant_id     text        NOT NULL,
    subject_kind  text        NOT NULL,
    model         text        NOT NULL,
    subject_id    text        NOT NULL,
    stage         text        NOT NULL,
    entered_at    timestamptz NOT NULL,
    duration      interval    NOT NULL
);
CREATE INDEX funnel_stays_subject ON funnel_stays (tenant_id, subject_kind, model, subject_id);
CREATE INDEX funnel_stays_entered ON funnel_stays
    (tenant_id, subject_kind, model, stage, entered_at) INCLUDE (duration, subject_id);

-- A report for a period reads the transitions in it by time, with their stage, from the index.
DROP INDEX stage_history_time;
CREATE INDEX stage_history_time ON stage_history
    (tenant_id, subject_kind, model, changed_at) INCLUDE (subject_id, to_stage);

-- The chains of the given subjects (parallel arrays of keys), as funnel._chain walks them:
-- transitions in (changed_at, id) order; one that does not continue the chain (from_stage is
-- not the current stage, or the stage does not change) is skipped. One row per completed stay
-- (left_at set, stages NULL), then the open one ending the chain (left_at NULL, with stages).
CREATE FUNCTION funnel_walk(ts text[], ks text[], ms text[], ss text[])
RETURNS TABLE (tenant_id text, subject_kind text, model text, subject_id text, stage text,
               entered_at timestamptz, left_at timestamptz, stages text[])
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    r record;
    i integer;
    kt text;
    kk text;
    km text;
    ks1 text;
    st text;
    ent timestamptz;
    seen text[];
BEGIN
    -- Subject by subject: each query reads one history in the order of the covering index
    -- stage_history_funnel (0009), whatever the planner's statistics say.
    FOR i IN 1 .. coalesce(array_length(ss, 1), 0) LOOP
    -- scalars, not the arrays, are the query's parameters (an array would be copied per query)
    kt := ts[i]; kk := ks[i]; km := ms[i]; ks1 := ss[i];
    FOR r IN
        SELECT h.tenant_id AS t, h.subject_kind AS k, h.model AS m, h.subject_id AS s,
               h.from_stage, h.to_stage, h.changed_at
          FROM stage_history h
         WHERE h.tenant_id = kt AND h.subject_kind = kk AND h.model = km
           AND h.subject_id = ks1
         ORDER BY h.changed_at, h.id
    LOOP
        IF st IS NULL OR r.s <> subject_id OR r.m <> model OR r.k <> subject_kind
           OR r.t <> tenant_id THEN
            IF st IS NOT NULL THEN
                stage := st; entered_at := ent; left_at := NULL; stages := seen;
                RETURN NEXT;
            END IF;
            tenant_id := r.t; subject_kind := r.k; model := r.m; subject_id := r.s;
            st := NULL; ent := NULL; seen := '{}';
        END IF;
        IF NOT r.to_stage = ANY(seen) THEN
            seen := seen || r.to_stage;
        END IF;
        IF st IS NOT NULL THEN
            IF r.from_stage IS DISTINCT FROM st OR r.to_stage = st THEN
                CONTINUE;
            END IF;
            stage := st; entered_at := ent; left_at := r.changed_at; stages := NULL;
            RETURN NEXT;
        END IF;
        st := r.to_stage;
        ent := r.changed_at;
    END LOOP;
    END LOOP;
    IF st IS NOT NULL THEN
        stage := st; entered_at := ent; left_at := NULL; stages := seen;
        RETURN NEXT;
    END IF;
END
$$;

-- Recomputes the summaries of the given subjects from their history. The funnel_subjects row
-- is also the subject's lock (inserted, or cleared, first): a concurrent writer of the same
-- subject waits for this transaction, then walks the history with what it committed (each
-- statement of a READ COMMITTED function sees what was committed before it started).
CREATE FUNCTION funnel_refresh(ts text[], ks text[], ms text[], ss text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO funnel_subjects (tenant_id, subject_kind, model, subject_id)
    SELECT * FROM unnest(ts, ks, ms, ss) AS x(t, k, m, s) ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING;
    UPDATE funnel_subjects f SET end_stage = NULL, end_at = NULL, stages = NULL
      FROM unnest(ts, ks, ms, ss) AS x(t, k, m, s)
     WHERE f.tenant_id = x.t AND f.subject_kind = x.k AND f.model = x.m AND f.subject_id = x.s;
    DELETE FROM funnel_stays f USING unnest(ts, ks, ms, ss) AS x(t, k, m, s)
     WHERE f.tenant_id = x.t AND f.subject_kind = x.k AND f.model = x.m AND f.subject_id = x.s;
    WITH w AS MATERIALIZED (SELECT * FROM funnel_walk(ts, ks, ms, ss)),
    stays AS (
        INSERT INTO funnel_stays (tenant_id, subject_kind, model, subject_id, stage,
                                  entered_at, duration)
        SELECT w.tenant_id, w.subject_kind, w.model, w.subject_id, w.stage, w.entered_at,
               w.left_at - w.entered_at
          FROM w WHERE w.left_at IS NOT NULL
    )
    UPDATE funnel_subjects f
       SET end_stage = w.stage, end_at = w.entered_at, stages = w.stages
      FROM w
     WHERE w.left_at IS NULL AND f.tenant_id = w.tenant_id AND f.subject_kind = w.subject_kind
       AND f.model = w.model AND f.subject_id = w.subject_id;
    -- subjects left without history (erased, or merged into another)
    DELETE FROM funnel_subjects f USING unnest(ts, ks, ms, ss) AS x(t, k, m, s)
     WHERE f.tenant_id = x.t AND f.subject_kind = x.k AND f.model = x.m AND f.subject_id = x.s
       AND f.end_stage IS NULL;
END
$$;

CREATE FUNCTION stage_history_funnel_refresh() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    ts text[];
    ks text[];
    ms text[];
    ss text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM funnel_stays;
        DELETE FROM funnel_subjects;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(t), array_agg(k), array_agg(m), array_agg(s) INTO ts, ks, ms, ss
          FROM (SELECT DISTINCT tenant_id AS t, subject_kind AS k, model AS m, subject_id AS s
                  FROM new_rows) x;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(t), array_agg(k), array_agg(m), array_agg(s) INTO ts, ks, ms, ss
          FROM (SELECT DISTINCT tenant_id AS t, subject_kind AS k, model AS m, subject_id AS s
                  FROM old_rows) x;
    ELSE
        SELECT array_agg(t), array_agg(k), array_agg(m), array_agg(s) INTO ts, ks, ms, ss
          FROM (SELECT tenant_id AS t, subject_kind AS k, model AS m, subject_id AS s
                  FROM new_rows
                UNION
                SELECT tenant_id, subject_kind, model, subject_id FROM old_rows) x;
    END IF;
    IF ts IS NOT NULL THEN
        PERFORM funnel_refresh(ts, ks, ms, ss);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stage_history_funnel_insert AFTER INSERT ON stage_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stage_history_funnel_refresh();
CREATE TRIGGER stage_history_funnel_update AFTER UPDATE ON stage_history
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stage_history_funnel_refresh();
CREATE TRIGGER stage_history_funnel_delete AFTER DELETE ON stage_history
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stage_history_funnel_refresh();
CREATE TRIGGER stage_history_funnel_truncate AFTER TRUNCATE ON stage_history
    FOR EACH STATEMENT EXECUTE FUNCTION stage_history_funnel_refresh();

-- The history written so far.
SELECT funnel_refresh(array_agg(t), array_agg(k), array_agg(m), array_agg(s))
  FROM (SELECT DISTINCT tenant_id AS t, subject_kind AS k, model AS m, subject_id AS s
          FROM stage_history) x;
