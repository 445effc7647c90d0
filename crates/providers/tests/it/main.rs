//! The integration test binary of `landfall-providers`: adapters against real HTTP servers on
//! 127.0.0.1 scripted by `landfall-testkit`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: failing loudly is the point"
)]

mod anthropic;
mod proxy;
