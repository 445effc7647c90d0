//! Integration tests of the mock upstream over real sockets.

mod anthropic;
mod client;
mod openai;
mod scripted;
