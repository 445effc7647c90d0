//! The in-process backend: counters behind one mutex, the cache in `moka`.

mod cache;
mod limiter;

pub use cache::MemoryCache;
pub use limiter::MemoryLimiter;
