-- Stored responses of `/v1/responses`: the response object the client saw, and the
-- conversation after it, which `previous_response_id` continues.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    previous_response_id TEXT,
    response TEXT NOT NULL,
    conversation TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX responses_tenant ON responses (tenant_id, created_at);
