//! Read-only SQL (filled in by the sql work).
