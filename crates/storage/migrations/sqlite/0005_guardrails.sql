-- Answers held for review, and the versions of the rule set changed through the admin API.
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    hits TEXT NOT NULL,
    response TEXT NOT NULL,
    released TEXT,
    note TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX reviews_status ON reviews (status, id);

CREATE TABLE guardrail_versions (
    version BIGINT PRIMARY KEY,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
