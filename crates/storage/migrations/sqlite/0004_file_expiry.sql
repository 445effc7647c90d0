-- Expired files are found by the sweeper without scanning every file.
CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
