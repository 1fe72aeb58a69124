//! Test support shared by turnpike's crates.

pub mod redis;
