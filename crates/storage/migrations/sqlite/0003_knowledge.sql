-- Knowledge bases: uploaded files and their bytes, vector stores, the files attached to them,
-- file batches, chunks (the source of truth every index is derived from) and the change log
-- that indexes replay. Times are unix milliseconds; JSON columns hold serde_json text.

CREATE TABLE files (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    filename   TEXT    NOT NULL,
    purpose    TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;
CREATE INDEX files_tenant ON files (tenant_id, id);
CREATE INDEX files_tenant_sha256 ON files (tenant_id, sha256);

CREATE TABLE file_contents (
    file_id TEXT NOT NULL PRIMARY KEY,
    content BLOB NOT NULL
) STRICT;

CREATE TABLE vector_stores (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    settings       TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_at     INTEGER
) STRICT;
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
    usage_bytes INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (store_id, file_id)
) STRICT;
CREATE INDEX vector_store_files_file ON vector_store_files (file_id);
CREATE INDEX vector_store_files_batch ON vector_store_files (batch_id);
CREATE INDEX vector_store_files_status ON vector_store_files (status, created_at);

CREATE TABLE file_batches (
    id         TEXT    NOT NULL PRIMARY KEY,
    store_id   TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    cancelled  INTEGER NOT NULL
) STRICT;
CREATE INDEX file_batches_store ON file_batches (store_id);

CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id     TEXT    NOT NULL,
    file_id      TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    page         INTEGER,
    char_start   INTEGER NOT NULL,
    char_end     INTEGER NOT NULL,
    heading_path TEXT    NOT NULL,
    token_count  INTEGER NOT NULL,
    embedding    BLOB    NOT NULL
) STRICT;
CREATE INDEX chunks_file ON chunks (store_id, file_id, position);

CREATE TABLE chunk_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id TEXT NOT NULL,
    file_id  TEXT NOT NULL,
    op       TEXT NOT NULL
) STRICT;
