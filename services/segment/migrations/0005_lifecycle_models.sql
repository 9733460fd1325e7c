-- Custom lifecycle models of a tenant (the document format of services/segment/rules/*.yaml,
-- validated by services/segment/lifecycle.py load_model before it is stored). A tenant whose
-- lifecycle_model names one of these is evaluated with it (derive.model_for).
CREATE TABLE lifecycle_models (
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    document    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
