-- Tenants, API keys and the hourly usage ledger.
-- JSON columns hold serde_json of the model types; times are unix milliseconds.
-- Ids use the "C" collation so that lists are ordered by bytes, as in SQLite.

CREATE TABLE tenants (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    limits     JSONB  NOT NULL,
    budgets    JSONB  NOT NULL,
    metadata   JSONB  NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE api_keys (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    name          TEXT   NOT NULL,
    secret_sha256 BYTEA  NOT NULL,
    secret_hint   TEXT   NOT NULL,
    scopes        JSONB  NOT NULL,
    limits        JSONB  NOT NULL,
    budgets       JSONB  NOT NULL,
    metadata      JSONB  NOT NULL,
    expires_at    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

-- Serves both the foreign key and "keys of one tenant, ordered by id".
CREATE INDEX api_keys_tenant_id ON api_keys (tenant_id, id);

-- No foreign keys: the ledger must accept usage even for a record that later changes.
CREATE TABLE usage (
    tenant_id           TEXT   NOT NULL,
    key_id              TEXT   NOT NULL,
    model               TEXT   NOT NULL,
    target              TEXT   NOT NULL,
    hour                BIGINT NOT NULL,
    requests            BIGINT NOT NULL,
    cache_hits          BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id, model, target, hour)
);

CREATE INDEX usage_tenant_hour ON usage (tenant_id, hour);
CREATE INDEX usage_key_hour ON usage (key_id, hour);
