//! Upstreams: where the gateway forwards calls.

pub mod stdio;
