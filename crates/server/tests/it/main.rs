//! Integration tests of the server over a real socket, against scripted upstreams.

mod errors;
mod harness;
mod routing;
mod streaming;
