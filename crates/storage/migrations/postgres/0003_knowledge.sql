-- Knowledge bases: uploaded files and their bytes, vector stores, the files attached to them,
-- file batches, chunks (the source of truth every index is derived from) and the change log
-- that indexes replay. Times are unix milliseconds; JSON columns hold serde_json text.

CREATE TABLE files (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    filename   TEXT    NOT NULL,
    purpose    TEXT    NOT NULL,
    bytes      BIGINT NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX files_tenant ON files (tenant_id, id);
CREATE INDEX files_tenant_sha256 ON files (tenant_id, sha256);

CREATE TABLE file_contents (
    file_id TEXT NOT NULL PRIMARY KEY,
    content BYTEA NOT NULL
);

CREATE TABLE vector_stores (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    settings       TEXT    NOT NULL,
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    expires_at     BIGINT
);
CREATE INDEX vector_stores_tenant ON vector_stores (tenant_id, id);

CREATE TABLE vector_store_files (
    store_id    TEXT    NOT NULL,
    file_id     TEXT    NOT NULL,
    tenant_id   TEXT    NOT NULL,
    batch_id    TEXT,
    status      TEXT    NOT NULL,
    last_error  TEXT,
    attributes  TEXT    NOT NULL,
    chunking    TEXT    NOT NULL,
    usage_bytes BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (store_id, file_id)
);
CREATE INDEX vector_store_files_file ON vector_store_files (file_id);
CREATE INDEX vector_store_files_batch ON vector_store_files (batch_id);
CREATE INDEX vector_store_files_status ON vector_store_files (status, created_at);

CREATE TABLE file_batches (
    id         TEXT    NOT NULL PRIMARY KEY,
    store_id   TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    cancelled  BIGINT NOT NULL
);
CREATE INDEX file_batches_store ON file_batches (store_id);

CREATE TABLE chunks (
    id           BIGSERIAL PRIMARY KEY,
    store_id     TEXT    NOT NULL,
    file_id      TEXT    NOT NULL,
    position     BIGINT NOT NULL,
    text         TEXT    NOT NULL,
    page         BIGINT,
    char_start   BIGINT NOT NULL,
    char_end     BIGINT NOT NULL,
    heading_path TEXT    NOT NULL,
    token_count  BIGINT NOT NULL,
    embedding    BYTEA    NOT NULL
);
CREATE INDEX chunks_file ON chunks (store_id, file_id, position);

CREATE TABLE chunk_changes (
    seq      BIGSERIAL PRIMARY KEY,
    store_id TEXT NOT NULL,
    file_id  TEXT NOT NULL,
    op       TEXT NOT NULL
);
