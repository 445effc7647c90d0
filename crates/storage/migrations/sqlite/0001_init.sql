-- Tenants, API keys and the hourly usage ledger.
-- JSON columns hold serde_json of the model types; times are unix milliseconds.

CREATE TABLE tenants (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    limits     TEXT    NOT NULL,
    budgets    TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL,
    secret_sha256 BLOB    NOT NULL,
    secret_hint   TEXT    NOT NULL,
    scopes        TEXT    NOT NULL,
    limits        TEXT    NOT NULL,
    budgets       TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;

-- Serves both the foreign key and "keys of one tenant, ordered by id".
CREATE INDEX api_keys_tenant_id ON api_keys (tenant_id, id);

-- No foreign keys: the ledger must accept usage even for a record that later changes.
CREATE TABLE usage (
    tenant_id           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    target              TEXT    NOT NULL,
    hour                INTEGER NOT NULL,
    requests            INTEGER NOT NULL,
    cache_hits          INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cost_nanos          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_id, model, target, hour)
) STRICT;

CREATE INDEX usage_tenant_hour ON usage (tenant_id, hour);
CREATE INDEX usage_key_hour ON usage (key_id, hour);
