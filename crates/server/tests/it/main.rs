//! Integration tests of the server over a real socket, against scripted upstreams.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: failing loudly is the point"
)]

mod accounting;
mod anthropic;
mod errors;
mod governance;
mod guardrails;
mod harness;
mod hub;
mod knowledge;
mod knowledge_models;
mod local_models;
mod memory;
mod prompts;
mod protection;
mod responses;
mod routing;
mod streaming;
mod tools;
