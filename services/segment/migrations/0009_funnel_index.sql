-- The funnel report (services/segment/funnel_query.py) reads a model's stage history of a tenant
-- subject by subject in time order. This index hands the rows over in exactly that order
-- (subject, changed_at, id: the tie-break of equal times) with the columns the report needs,
-- so PostgreSQL neither sorts the tenant's history nor visits the table (index-only scan).
-- IF NOT EXISTS: on a big history an operator builds both CONCURRENTLY first (deploy/README.md).
CREATE INDEX IF NOT EXISTS stage_history_funnel ON stage_history
    (tenant_id, subject_kind, model, subject_id, changed_at, id) INCLUDE (from_stage, to_stage);

-- A report for a period walks the history of the subjects that moved in it only: this index
-- finds them by time without reading the rest of the tenant's history.
CREATE INDEX IF NOT EXISTS stage_history_time ON stage_history
    (tenant_id, subject_kind, model, changed_at) INCLUDE (subject_id);
