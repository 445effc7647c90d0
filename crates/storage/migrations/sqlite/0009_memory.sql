-- Conversations (`/v1/conversations`): an ordered list of items (OpenAI's shape) a response
-- continues from and appends to, with an optional summary of the turns before `summary_seq`.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    summary TEXT,
    summary_seq BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE conversation_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    item TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX conversation_items_by_conversation ON conversation_items (conversation_id, seq);
CREATE UNIQUE INDEX conversation_items_id ON conversation_items (conversation_id, id);

-- Long-term memory: facts about one end user of a tenant, with their embedding (a JSON
-- array), recalled by similarity.
CREATE TABLE memories (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX memories_by_user ON memories (tenant_id, user_id, id);
