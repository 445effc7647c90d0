-- Tool calls held for a person's approval (`require_approval`): the waiting run polls its
-- row; reviewers decide through `/admin/v1/approvals`.
CREATE TABLE tool_approvals (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    entry TEXT NOT NULL,
    arguments TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX tool_approvals_status ON tool_approvals (status, id);
