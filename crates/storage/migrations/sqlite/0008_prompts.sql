-- Prompt templates: every saved version of each, immutable once written. The latest version
-- of a prompt is its highest; deleting a prompt deletes every version.
CREATE TABLE prompt_versions (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    template TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
