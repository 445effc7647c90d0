-- The audit log: one hash-chained line of records (see src/audit/chain.rs), and its head and
-- anchor in a one-row table updated in the same transaction as every append and prune.
-- `record` is the JSON text exactly as hashed; `hash` is SHA-256, 32 bytes.

CREATE TABLE audit_records (
    seq        INTEGER NOT NULL PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    tenant_id  TEXT,
    key_id     TEXT,
    route      TEXT    NOT NULL,
    model      TEXT,
    status     INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    hash       BLOB    NOT NULL
) STRICT;

CREATE INDEX audit_records_time ON audit_records (time_ms);
CREATE INDEX audit_records_tenant_time ON audit_records (tenant_id, time_ms);
CREATE INDEX audit_records_key_time ON audit_records (key_id, time_ms);

-- `pruning` is 1 only inside a prune transaction, the one time audit rows may be deleted.
CREATE TABLE audit_chain (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    head_seq    INTEGER NOT NULL,
    head_hash   BLOB    NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash BLOB    NOT NULL,
    pruning     INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO audit_chain (id, head_seq, head_hash, anchor_seq, anchor_hash)
VALUES (1, 0, zeroblob(32), 0, zeroblob(32));

-- These catch mistakes; someone with write access to the file can drop them, which is why the
-- hash chain, not these, is what verification relies on.
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN (SELECT pruning FROM audit_chain WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
