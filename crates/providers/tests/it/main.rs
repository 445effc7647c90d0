//! The integration test binary of `landfall-providers`: adapters against real HTTP servers on
//! 127.0.0.1 scripted by `landfall-testkit`.

mod anthropic;
