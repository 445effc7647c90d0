-- The audit log: one hash-chained line of records (see src/audit/chain.rs), and its head and
-- anchor in a one-row table, locked by every append and prune so that replicas append in turn.
-- `record` is TEXT, not JSONB: it must keep the exact JSON text that was hashed.

CREATE TABLE audit_records (
    seq        BIGINT  NOT NULL PRIMARY KEY,
    time_ms    BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    tenant_id  TEXT,
    key_id     TEXT,
    route      TEXT    NOT NULL,
    model      TEXT,
    status     INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    hash       BYTEA   NOT NULL
);

CREATE INDEX audit_records_time ON audit_records (time_ms);
CREATE INDEX audit_records_tenant_time ON audit_records (tenant_id, time_ms);
CREATE INDEX audit_records_key_time ON audit_records (key_id, time_ms);

CREATE TABLE audit_chain (
    id          SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    head_seq    BIGINT   NOT NULL,
    head_hash   BYTEA    NOT NULL,
    anchor_seq  BIGINT   NOT NULL,
    anchor_hash BYTEA    NOT NULL
);

INSERT INTO audit_chain (id, head_seq, head_hash, anchor_seq, anchor_hash)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));

-- Refuses changes to audit rows, except deletes by a prune, which sets `landfall.audit_prune`
-- for its own transaction. This catches mistakes; someone with write access to the database
-- can set the flag or drop the trigger, which is why the hash chain, not this, is what
-- verification relies on.
CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('landfall.audit_prune', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit records are append-only';
END
$$;

CREATE TRIGGER audit_records_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_records
FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
